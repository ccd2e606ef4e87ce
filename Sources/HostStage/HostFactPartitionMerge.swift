import ConfigKit
import Events
import Logging
import PacketCore

/// Counters of `sensor aggregate`'s merge, over every partition it owned (`spanwatch.stats`).
public struct HostMergeCounters: Sendable, Equatable {
    /// Kafka records read (every type).
    public var records: UInt64 = 0
    /// Records refused: not an envelope (garbage), or an envelope of a schema version this build does not read.
    public var garbage: UInt64 = 0
    public var unknownVersion: UInt64 = 0
    /// Fact records that did not decode (counted by the detector sets too; never trusted).
    public var undecodable: UInt64 = 0
    /// Records applied behind the merged clock (a producer came back after its bound was lifted, or a
    /// buffer was full and the merge went on without waiting).
    public var late: UInt64 = 0
    /// Times a quiet producer's bound was lifted after the lateness bound.
    public var quietProducers: UInt64 = 0
    /// Records applied out of order because a producer's buffer was full.
    public var forced: UInt64 = 0
    /// Records of a producer after its end record (never expected: counted and skipped).
    public var afterEnd: UInt64 = 0
    /// Records of a new producer refused because the partition already merges `maxProducers`.
    public var tooManyProducers: UInt64 = 0
    /// Producer streams concluded (every producer on a partition ended: its windows closed).
    public var concluded: UInt64 = 0
    public init() {}
}

/// One partition's merge for `sensor aggregate`: the producers found on it (sensor, session, worker),
/// each with a bounded ring and a watermark taken from its records, merged in stamp order by the same
/// `HostAggregator` live shards use, with that partition's own detectors.
///
/// Bounded lateness: a producer that has sent nothing for `lateness` (wall time) while the merge waits
/// on it stops holding the merge back (its bound is lifted); if it comes back, its records are applied
/// at once and counted late. A full ring (`ringBytes`, real memory) makes the merge apply the earliest
/// record without waiting (counted). When every producer on the partition has ended, the detectors
/// conclude (as at the end of a replay) and the partition starts afresh for the next producers.
///
/// Single-threaded: the consumer's thread owns it.
public final class HostFactPartitionMerge {
    public let partition: Int
    /// The detectors a new producer stream starts with (replaced on a rules reload).
    var detectors: [HostDetectorFactory]
    let emitter: EventEmitter
    let ringBytes: Int
    let lateness: Duration
    public internal(set) var aggregator: HostAggregator
    var inputs: [HostFactEnvelope.Producer: Int] = [:]
    var lastHeard: [ContinuousClock.Instant] = []
    var lifted: [Bool] = []
    /// Nothing is applied before this: producers whose records are already in the log show up first.
    var holdUntil: ContinuousClock.Instant?
    /// Ended producers (their records are refused after the end).
    var ended: Set<HostFactEnvelope.Producer> = []
    /// The next offset to read.
    public var nextOffset: Int64 = 0
    /// Per input: the Kafka offsets of the records in its ring, for checkpoints (`InputLedger`).
    var ledgers: [InputLedger] = []
    /// Records below this offset were read by the owner whose checkpoint this merge restored: they
    /// are not counted again, and a producer's records up to its `skipThrough` are already applied.
    var replayUntil: Int64 = 0
    /// Taken over (restored, or given back after a rebalance): the producers' lateness clocks restart
    /// at the next drain and stay there until this member has read what the previous owner had read.
    var resuming = false
    /// Records read again after a restore (below `replayUntil`); per process, not checkpointed.
    public private(set) var reread: UInt64 = 0
    /// The merged clock and records applied at the last checkpoint (`checkpointDue`).
    var checkpointClock: Int64 = .min
    var checkpointApplied: UInt64 = 0
    public internal(set) var counters = HostMergeCounters()
    /// Detector-set counters of the streams already concluded (the current set's are read live).
    var concludedFacts: UInt64 = 0
    var concludedStage: HostStageStatistics?

    public init(partition: Int, detectors: [HostDetectorFactory], emitter: EventEmitter, ringBytes: Int, lateness: Duration) {
        self.partition = partition
        self.detectors = detectors
        self.emitter = emitter
        self.ringBytes = ringBytes
        self.lateness = lateness
        aggregator = HostAggregator(shard: partition, rings: [], marks: [], detectors: detectors, emitter: emitter)
    }

    /// A reloaded rule set: the running detectors take it between two records (their state stays), and
    /// the streams started after a conclusion are made from `detectors`, built from the same set.
    public func reload(_ rules: RulesSet, detectors: [HostDetectorFactory], logger: Logger) {
        self.detectors = detectors
        aggregator.stage.reload(rules, logger: logger, shard: partition)
    }

    /// Fact records applied so far on this partition.
    public var facts: UInt64 { concludedFacts &+ aggregator.stage.counters.facts }

    /// The partition's detector figures: the concluded streams' counters and the current stage's.
    public var stageStatistics: HostStageStatistics {
        guard var s = concludedStage else { return aggregator.stage.statistics }
        s.extend(with: aggregator.stage.statistics)
        return s
    }

    /// Takes one record off the partition (the bytes are valid only during the call).
    public func offer(_ bytes: UnsafeRawBufferPointer, offset: Int64, now: ContinuousClock.Instant) {
        let replayed = offset < replayUntil
        if replayed { reread &+= 1 } else { counters.records &+= 1 }
        nextOffset = max(nextOffset, offset &+ 1)
        let d: HostFactEnvelope.Decoded
        switch HostFactEnvelope.decode(bytes) {
        case .success(let e): d = e
        case .failure(.garbage): if !replayed { counters.garbage &+= 1 }; return
        case .failure(.unknownVersion): if !replayed { counters.unknownVersion &+= 1 }; return
        }
        // Read before the checkpoint this merge restored: only a known producer's records after those
        // it had applied are new to the detectors (per producer, records are in offset order).
        if replayed {
            guard let w = inputs[d.producer], !ended.contains(d.producer), offset > ledgers[w].skipThrough else { return }
        }
        if ended.contains(d.producer) { counters.afterEnd &+= 1; return }
        if inputs[d.producer] == nil && inputs.count >= Self.maxProducers {
            counters.tooManyProducers &+= 1
            return
        }
        if holdUntil == nil { holdUntil = now + lateness }
        let w = input(d.producer)
        lastHeard[w] = now
        let mark = aggregator.marks[w]
        let before = lifted[w] ? d.watermark : mark.value
        ledgers[w].lastOffset = offset
        if lifted[w] {
            // Back after its bound was lifted: its watermark is its own again (its records may be late).
            lifted[w] = false
            mark.clock.store(d.watermark, ordering: .relaxed)
        } else if d.watermark > mark.value {
            mark.clock.store(d.watermark, ordering: .relaxed)
        }
        switch d.type {
        case .fact:
            let ring = aggregator.rings[w]
            let none = UnsafeRawBufferPointer(start: nil, count: 0)
            while !ring.write(d.record, none) {
                // Full: what can be ordered first, then the earliest record regardless.
                if isHolding(now) || aggregator.drain() == 0 {
                    // Every ring empty and still no room: larger than a ring record can be.
                    if aggregator.applyEarliest() { counters.forced &+= 1 } else { counters.garbage &+= 1; return }
                }
            }
            ring.publish()
            ledgers[w].wrote(offset: offset, watermark: before)
        case .watermark:
            break
        case .end:
            mark.finished.store(true, ordering: .relaxed)
            ended.insert(d.producer)
        }
    }

    func isHolding(_ now: ContinuousClock.Instant) -> Bool { holdUntil.map { now < $0 } ?? true }

    /// Producers one partition merges at once (workers × sensors): a bound on what a topic's writers
    /// can make this process hold (`ended` is cleared with them when the partition concludes).
    static let maxProducers = 1024

    func input(_ p: HostFactEnvelope.Producer) -> Int {
        if let w = inputs[p] { return w }
        let w = aggregator.addInput(ring: SPSCByteRing(capacity: ringBytes), mark: WorkerWatermark())
        inputs[p] = w
        lastHeard.append(.now)
        lifted.append(false)
        ledgers.append(InputLedger())
        return w
    }

    /// This member reads the partition again from `nextOffset` (given back after a rebalance): time
    /// away does not count towards a producer's lateness bound.
    public func resumeReading() { resuming = true }

    /// Applies what can be ordered; lifts the bound of producers quiet for longer than the lateness
    /// bound; concludes the partition once every producer has ended. Returns records applied.
    @discardableResult
    public func drain(now: ContinuousClock.Instant) -> Int {
        guard !inputs.isEmpty, !isHolding(now) else { return 0 }
        if resuming {
            // A producer is quiet when nothing of it comes while this member reads, not while the
            // partition was restored (others' checkpoints are read one after another) or owned by
            // another member; and every record the previous owner had read is in the log.
            for w in lastHeard.indices { lastHeard[w] = now }
            if nextOffset >= replayUntil { resuming = false }
        }
        for i in ledgers.indices { ledgers[i].trim(applied: aggregator.applied[i]) }
        var n = aggregator.drain()
        if aggregator.exhausted {
            conclude()
            return n
        }
        // Something waits behind a producer with nothing buffered: is that producer quiet?
        for w in aggregator.rings.indices where !lifted[w] && !aggregator.marks[w].isFinished && aggregator.rings[w].peek() == nil
            && now - lastHeard[w] >= lateness {
            lifted[w] = true
            counters.quietProducers &+= 1
            aggregator.marks[w].clock.store(.max, ordering: .relaxed)
        }
        n += aggregator.drain()
        // Every producer ended or went quiet, and nothing is buffered: the stream is over (a quiet
        // producer that comes back starts a new one).
        if !aggregator.exhausted, aggregator.rings.indices.allSatisfy({ (aggregator.marks[$0].isFinished || lifted[$0]) && aggregator.rings[$0].peek() == nil }) {
            for w in aggregator.rings.indices where lifted[w] { aggregator.marks[w].finished.store(true, ordering: .relaxed) }
            n += aggregator.drain()
        }
        if aggregator.exhausted { conclude() }
        return n
    }

    /// Every producer ended and every record applied: the detectors conclude and the partition starts
    /// afresh for later producers (a new session of a sensor is a new producer).
    func conclude() {
        // A lifted bound is not a watermark: the clock ends at the merged clock, not at +∞.
        for w in aggregator.marks.indices where lifted[w] { aggregator.marks[w].clock.store(aggregator.clock, ordering: .relaxed) }
        aggregator.finish()
        counters.late &+= aggregator.late
        counters.concluded &+= 1
        concludedFacts &+= aggregator.stage.counters.facts
        counters.undecodable &+= aggregator.stage.counters.undecodable
        concludedStage = stageStatistics
        aggregator = HostAggregator(shard: partition, rings: [], marks: [], detectors: detectors, emitter: emitter)
        inputs = [:]
        ended = []
        lastHeard = []
        lifted = []
        ledgers = []
        holdUntil = nil
    }

    /// Shutdown (SIGTERM): applies everything buffered in stamp order as far as it goes, then the
    /// rest, and lets the detectors conclude.
    public func finish() {
        guard !inputs.isEmpty else { return }
        aggregator.drain()
        while aggregator.applyEarliest() {}
        conclude()
    }

    /// No producer stream open (none yet, or every one concluded).
    public var isIdle: Bool { inputs.isEmpty }

    /// Counters including the current stream's.
    public var currentCounters: HostMergeCounters {
        var c = counters
        c.late &+= aggregator.late
        c.undecodable &+= aggregator.stage.counters.undecodable
        return c
    }
}
