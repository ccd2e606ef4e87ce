import Events
import PacketCore
import Synchronization

/// One worker's connection to the host-level aggregators: its ring to each shard (index = shard) and
/// its watermark.
public struct HostShardLink {
    public let rings: [SPSCByteRing]
    public let watermark: WorkerWatermark
    /// Offline (replay with several workers): the worker waits for room instead of dropping a record,
    /// and stamps records with the reader's input sequence (`HostFactPublisher.sequence`).
    public let waitsWhenFull: Bool
    public init(rings: [SPSCByteRing], watermark: WorkerWatermark, waitsWhenFull: Bool = false) {
        self.rings = rings
        self.watermark = watermark
        self.waitsWhenFull = waitsWhenFull
    }
}

/// One shard's aggregator: merges its N rings (one per worker) in stamp order, runs that shard's
/// host-level detectors on the records (ticking them on the workers' `tick` records), and emits their
/// alerts through its own emitter (the sinks are shared and lock inside).
///
/// The merge is the k-way merge `MergedFileSource` does for files, with one difference: a ring that is
/// empty may still receive an earlier record, so a record is taken only when it sorts before every other
/// worker's bound — its next record's stamp, or while its ring is empty, its published watermark (or +∞
/// once it has finished); equal stamps sort by worker. Workers publish their watermark every 10 ms of
/// packet time while packets flow and at every block timeout on a quiet link, so the merge trails the
/// slowest worker by that much and never stalls.
public final class HostAggregator {
    public let shard: Int
    /// One input per worker (live, replay), or per producer found on a partition (`sensor aggregate`,
    /// which adds inputs as producers appear).
    private(set) var rings: [SPSCByteRing]
    /// The rings' consumer handles (the merge reads through them: no ring's reference count per record).
    private(set) var consumers: [SPSCByteRing.Consumer]
    private(set) var marks: [WorkerWatermark]
    public let stage: HostDetectorSet
    public let emitter: EventEmitter
    /// The merged packet clock (ns), or offline the merged input sequence (`stampsAreSequences`).
    public private(set) var clock: Int64 = .min
    /// Offline: stamps and watermarks are input sequence numbers; the stage ends at the workers' end time.
    public let stampsAreSequences: Bool
    var heads: [Int64?]
    var bounds: [Int64]
    /// Records applied with a stamp behind the merged clock: only when an input's bound was lifted
    /// (`sensor aggregate`'s lateness) or the merge was forced (`applyEarliest`); never live.
    public private(set) var late: UInt64 = 0
    /// Records applied per input (`sensor aggregate` maps them back to Kafka offsets for its checkpoints).
    private(set) var applied: [UInt64]

    public init(shard: Int, rings: [SPSCByteRing], marks: [WorkerWatermark], detectors: [HostDetectorFactory], emitter: EventEmitter,
                stampsAreSequences: Bool = false) {
        self.shard = shard
        self.stampsAreSequences = stampsAreSequences
        self.rings = rings
        consumers = rings.map(\.consumer)
        self.marks = marks
        self.emitter = emitter
        stage = HostDetectorSet(factories: detectors, emitter: emitter)
        heads = Array(repeating: nil, count: rings.count)
        bounds = Array(repeating: .min, count: rings.count)
        applied = Array(repeating: 0, count: rings.count)
    }

    /// The merged clock and late count of a checkpoint (on a fresh aggregator).
    func restore(clock: Int64, late: UInt64) {
        self.clock = clock
        self.late = late
    }

    /// Adds an input (a producer first seen); returns its index.
    @discardableResult
    public func addInput(ring: SPSCByteRing, mark: WorkerWatermark) -> Int {
        rings.append(ring)
        consumers.append(ring.consumer)
        marks.append(mark)
        heads.append(nil)
        bounds.append(.min)
        applied.append(0)
        exhausted = false
        return rings.count - 1
    }

    /// Applies the record with the earliest stamp of any input, whatever the bounds (a bounded buffer
    /// is full and the merge may not wait any longer); false when every input is empty.
    public func applyEarliest() -> Bool {
        var best = -1
        var bestStamp = Int64.max
        for w in rings.indices {
            guard let r = consumers[w].peek() else { continue }
            let s = r.load(as: Int64.self)
            if best < 0 || s < bestStamp { best = w; bestStamp = s }
        }
        guard best >= 0 else { return false }
        apply(best, stamp: bestStamp)
        return true
    }

    @inline(__always) func apply(_ w: Int, stamp: Int64) {
        if stamp < clock { late &+= 1 }
        advance(to: stamp)
        stage.apply(consumers[w].peek()!)
        consumers[w].pop()
        applied[w] &+= 1
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
                if let r = consumers[w].peek() {
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
            guard best >= 0, orderable(best) else {
                // Nothing orderable: still let the clock follow the slowest worker (quiet links).
                if low != .max { advance(to: low) }
                return applied
            }
            apply(best, stamp: heads[best]!)
            applied += 1
        }
    }

    /// Whether `best`'s head (the lowest stamp queued, lowest input on ties) can go now: no input with
    /// nothing queued may still push a record that sorts before it. Equal stamps sort by input, so the
    /// order the detectors see (and what they report) does not depend on which worker published first.
    @inline(__always) func orderable(_ best: Int) -> Bool {
        let s = heads[best]!
        for w in rings.indices where w != best && heads[w] == nil {
            let b = bounds[w]
            if b < s || (b == s && w < best) { return false }
        }
        return true
    }

    /// The merged clock (the detectors tick on the workers' `tick` records, which the merge orders).
    func advance(to t: Int64) {
        if t > clock { clock = t }
    }

    /// Applies whatever is still in the rings, ring by ring (a worker that never finished: shutdown only).
    public func drainUnordered() {
        for w in rings.indices {
            while let r = consumers[w].peek() { apply(w, stamp: r.load(as: Int64.self)) }
        }
    }

    /// End of input: every worker finished and every ring drained. The clock ends at the latest watermark.
    public func finish() {
        advance(to: marks.map(\.value).max() ?? clock)
        let end = stampsAreSequences ? marks.map(\.endTime).max() ?? 0 : clock
        stage.finish(Timestamp(nanoseconds: max(end, 0)))
    }
}
