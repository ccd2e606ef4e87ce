import Events
import Foundation
import HostStage
import Logging
import ServiceLifecycle
import Synchronization

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
    /// Where the stage's figures go for worker 0's `spanwatch.stats` (nil: nobody writes them).
    let board: HostStageBoard?
    /// Beaten at every periodic pass (the systemd watchdog's view of this loop).
    let heartbeat: Heartbeat
    var appliedRules = 0
    /// Set when the group shuts down or is cancelled: from then on the loop waits at most
    /// `stopGrace` for the workers to finish (they normally have: they stop first), then concludes.
    let stopRequested = Atomic<Bool>(false)
    static let stopGrace: Duration = .seconds(10)
    /// Offline (`replay --workers N`): the thread runs at a lower priority (`offlineNice`), so on a machine
    /// with fewer cores than busy threads the reader and the workers, which the whole replay waits on, get
    /// the cores first, and the merge, which can lag by its rings' worth, takes the gaps and runs in longer
    /// stretches. Live it keeps the workers' priority: its rings drop when full.
    let yieldsToWorkers: Bool
    static let offlineNice: Int32 = 5

    init(aggregator: HostAggregator, mailbox: ReloadMailbox?, metrics: HostStageMetrics?, board: HostStageBoard?, logger: Logger,
         yieldsToWorkers: Bool = false) {
        self.aggregator = aggregator
        self.yieldsToWorkers = yieldsToWorkers
        self.mailbox = mailbox
        self.metrics = metrics
        self.board = board
        self.logger = logger
        heartbeat = Heartbeat(name: "hosts-\(aggregator.shard)")
    }

    func run() async throws {
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await DedicatedThread.run(name: "sensor-hosts-\(aggregator.shard)") { [self] in loop() }
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
        // Linux: PRIO_PROCESS with 0 is the calling thread. Failure (a seccomp filter) leaves it as it was.
        if yieldsToWorkers { _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, Self.offlineNice) }
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
        periodic(concluded: true)
    }

    func periodic(concluded: Bool = false) {
        heartbeat.beat()
        if let mailbox, let rules = mailbox.take(newerThan: appliedRules) {
            appliedRules = rules.generation
            aggregator.stage.reload(rules, logger: logger, shard: aggregator.shard)
        }
        // One reading of the detectors' figures for the metrics and for worker 0's statistics event.
        let statistics = aggregator.stage.statistics
        metrics?.publish(aggregator, statistics: statistics)
        board?.post(statistics, shard: aggregator.shard, concluded: concluded)
        do { try aggregator.emitter.flush() } catch {
            logger.error("output flush failed", metadata: ["error": "\(error)"])
        }
    }
}
