import Events
import Foundation
import Logging
import PacketCore
import ServiceLifecycle
import Synchronization

/// One worker's connection to the host-level aggregators: its ring to each shard (index = shard) and
/// its watermark.
public struct HostShardLink {
    public let rings: [SPSCByteRing]
    public let watermark: WorkerWatermark
    public init(rings: [SPSCByteRing], watermark: WorkerWatermark) {
        self.rings = rings
        self.watermark = watermark
    }
}

/// Builds the worker side of the host-level stage for `AnalyzerFactory`.
enum HostStageWiring {
    static func publisher(configuration c: SensorConfiguration, emitter: EventEmitter, logger: Logger,
                          link: HostShardLink?) throws -> HostFactPublisher {
        let plan = try HostDetectorPlan.load(c, logger: logger)
        if let link { return HostFactPublisher(route: .rings(link.rings, link.watermark), plan: plan) }
        return HostFactPublisher(route: .inline(HostDetectorSet(plan: plan, emitter: emitter)), plan: plan)
    }
}

/// One shard's aggregator: merges its N rings (one per worker) in stamp order, runs that shard's
/// host-level detectors on the records (ticking them on the workers' `tick` records), and emits their
/// alerts through its own emitter (the sinks are shared and lock inside).
///
/// The merge is the k-way merge `MergedFileSource` does for files, with one difference: a ring that is
/// empty may still receive an earlier record, so a record is taken only when its stamp is at most every
/// other worker's bound — its next record's stamp, or while its ring is empty, its published watermark
/// (or +∞ once it has finished). Workers publish their watermark every 10 ms of packet time while
/// packets flow and at every block timeout on a quiet link, so the merge trails the slowest worker by
/// that much and never stalls.
public final class HostAggregator {
    public let shard: Int
    let rings: [SPSCByteRing]
    let marks: [WorkerWatermark]
    public let stage: HostDetectorSet
    public let emitter: EventEmitter
    /// The merged packet clock (ns).
    public private(set) var clock: Int64 = .min
    var heads: [Int64?]
    var bounds: [Int64]

    init(shard: Int, rings: [SPSCByteRing], marks: [WorkerWatermark], plan: HostDetectorPlan, emitter: EventEmitter) {
        self.shard = shard
        self.rings = rings
        self.marks = marks
        self.emitter = emitter
        stage = HostDetectorSet(plan: plan, emitter: emitter)
        heads = Array(repeating: nil, count: rings.count)
        bounds = Array(repeating: .min, count: rings.count)
    }

    /// True once every worker has finished and every ring is drained.
    public private(set) var exhausted = false

    /// Applies every record that can be ordered now; returns how many.
    @discardableResult
    public func drain() -> Int {
        var applied = 0
        while true {
            var allDone = true
            var best = -1
            for w in rings.indices {
                // The watermark (and finished flag) first, then the ring: a record pushed before the
                // watermark was published is then visible, and one pushed later is stamped no earlier.
                let mark = marks[w].value
                let done = marks[w].isFinished
                if let r = rings[w].peek() {
                    let s = r.load(as: Int64.self)
                    heads[w] = s
                    bounds[w] = s
                    if best < 0 || s < heads[best]! { best = w }
                    allDone = false
                } else {
                    heads[w] = nil
                    bounds[w] = done ? .max : mark
                    if !done { allDone = false }
                }
            }
            if allDone { exhausted = true; return applied }
            let low = bounds.min()!
            guard best >= 0, heads[best]! <= low else {
                // Nothing orderable: still let the clock follow the slowest worker (quiet links).
                if low != .max { advance(to: low) }
                return applied
            }
            let r = rings[best].peek()!
            advance(to: heads[best]!)
            stage.apply(r)
            rings[best].pop()
            applied += 1
        }
    }

    /// The merged clock (the detectors tick on the workers' `tick` records, which the merge orders).
    func advance(to t: Int64) {
        if t > clock { clock = t }
    }

    /// Applies whatever is still in the rings, ring by ring (a worker that never finished: shutdown only).
    func drainUnordered() {
        for ring in rings {
            while let r = ring.peek() {
                advance(to: r.load(as: Int64.self))
                stage.apply(r)
                ring.pop()
            }
        }
    }

    /// End of input: every worker finished and every ring drained. The clock ends at the latest watermark.
    public func finish() {
        advance(to: marks.map(\.value).max() ?? clock)
        stage.finish(Timestamp(nanoseconds: max(clock, 0)))
    }
}

/// Runs one aggregator on its own thread for the life of the capture.
///
/// Listed in the service group after the outputs and before the workers, so on shutdown the workers stop
/// first (their last flows' facts go through the rings), then this drains what is left, lets the
/// detectors conclude, and only then do the outputs close: no alert is lost.
final class HostAggregatorService: Service, @unchecked Sendable {
    let aggregator: HostAggregator
    let mailbox: ReloadMailbox?
    let logger: Logger
    let metrics: HostStageMetrics?
    var appliedRules = 0
    /// Set when the group shuts down or is cancelled: from then on the loop waits at most
    /// `stopGrace` for the workers to finish (they normally have: they stop first), then concludes.
    let stopRequested = Atomic<Bool>(false)
    static let stopGrace: Duration = .seconds(10)

    init(aggregator: HostAggregator, mailbox: ReloadMailbox?, metrics: HostStageMetrics?, logger: Logger) {
        self.aggregator = aggregator
        self.mailbox = mailbox
        self.metrics = metrics
        self.logger = logger
    }

    func run() async throws {
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await withCheckedContinuation { (cont: CheckedContinuation<Void, Never>) in
                    let t = Thread { [self] in
                        loop()
                        cont.resume()
                    }
                    t.name = "sensor-hosts-\(aggregator.shard)"
                    t.stackSize = 8 << 20
                    t.start()
                }
            } onGracefulShutdown: { [self] in
                stopRequested.store(true, ordering: .releasing)
            }
        } onCancel: { [self] in
            stopRequested.store(true, ordering: .releasing)
        }
        // Done when every worker has finished, which happens only during shutdown: wait for our turn so
        // the group is not ended early.
        try? await gracefulShutdown()
    }

    /// The aggregation loop: drain, housekeeping about once a second, a short nap when nothing came.
    /// Polling with a 1 ms nap costs ~1000 wake-ups a second on a busy link and adds at most a
    /// millisecond of delay, well below the second the merge waits for watermarks anyway.
    func loop() {
        var lastPeriodic = ContinuousClock.now
        var stopDeadline: ContinuousClock.Instant?
        while true {
            let n = aggregator.drain()
            if aggregator.exhausted { break }
            let now = ContinuousClock.now
            if stopDeadline == nil && stopRequested.load(ordering: .acquiring) { stopDeadline = now + Self.stopGrace }
            if let stopDeadline, now >= stopDeadline {
                logger.error("host-level aggregator stopped before every worker finished", metadata: ["shard": "\(aggregator.shard)"])
                aggregator.drainUnordered()
                break
            }
            if now - lastPeriodic >= .seconds(1) {
                lastPeriodic = now
                periodic()
            }
            if n == 0 { usleep(1000) }
        }
        aggregator.finish()
        periodic()
    }

    func periodic() {
        if let mailbox, let rules = mailbox.take(newerThan: appliedRules) {
            appliedRules = rules.generation
            aggregator.stage.reload(rules, logger: logger, shard: aggregator.shard)
        }
        metrics?.publish(aggregator)
        do { try aggregator.emitter.flush() } catch {
            logger.error("output flush failed", metadata: ["error": "\(error)"])
        }
    }
}
