import Detectors
import Events
import PacketCore

/// The Kafka offsets of one input's records, for checkpoints. The merge applies records across
/// producers in stamp order, not offset order, so what a partition has applied is not an offset
/// prefix; per producer it is (a producer's records are in offset order and its ring is FIFO). The
/// ledger keeps the offset of every record still in the ring and the producer's watermark before it.
struct InputLedger {
    var offsets: [Int64] = []
    var watermarks: [Int64] = []
    /// First live entry of the arrays, and how many records were dropped from them before it (applied).
    var head = 0
    var dropped: UInt64 = 0
    /// The last record of this producer read (any type).
    var lastOffset: Int64 = -1
    /// Restored: this producer's records up to here were applied by the checkpoint's writer.
    var skipThrough: Int64 = -1

    mutating func wrote(offset: Int64, watermark: Int64) {
        offsets.append(offset)
        watermarks.append(watermark)
    }

    /// Forgets the records the aggregator has applied (`applied` of this input so far).
    mutating func trim(applied: UInt64) {
        while dropped < applied, head < offsets.count {
            head += 1
            dropped &+= 1
        }
        if head > 1024 && head * 2 > offsets.count {
            offsets.removeFirst(head)
            watermarks.removeFirst(head)
            head = 0
        }
    }

    /// The oldest record not applied yet: its offset and the producer's watermark before it.
    var firstPending: (offset: Int64, watermark: Int64)? { head < offsets.count ? (offsets[head], watermarks[head]) : nil }
}

/// When a partition checkpoints: every so many seconds of its merged packet clock, or records applied.
public enum CheckpointInterval: Sendable, Equatable {
    case packetSeconds(Int64)
    case records(UInt64)
}

/// A partition's checkpoint for `sensor aggregate`: where a new owner resumes reading and the state it
/// resumes with, consistent with each other — every record before `resumeOffset` is applied, and of
/// those after it, exactly each producer's records up to its `skipThrough` are.
///
/// Value layout (little-endian; `StateWriter`): magic `HC`, version, partition, resume offset, replay-until
/// offset, the merge's counters and clock, its producers (name, session, worker, skip-through offset,
/// watermark, ended, lifted), the detector set's state; then an FNV-1a 64 of all that. At most
/// `maxBytes`.
public struct PartitionCheckpoint {
    public static let magic: (UInt8, UInt8) = (0x48, 0x43)
    public static let version: UInt8 = 1
    /// Largest checkpoint written or read (the topic's `max.message.bytes` must allow it).
    public static let maxBytes = 32 << 20
    public var partition: Int
    /// Where the new owner starts reading.
    public var resumeOffset: Int64
    public var bytes: [UInt8]

    /// The frame's checksum (FNV-1a 64 of everything before it).
    public static func fnv(_ b: ArraySlice<UInt8>) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for x in b { h = (h ^ UInt64(x)) &* 0x100_0000_01b3 }
        return h
    }

    /// Checks the frame (magic, version, size, checksum) and reads the header; the body is read by
    /// `HostFactPartitionMerge(restoring:)`.
    public static func open(_ bytes: [UInt8]) throws(StateDecodeError) -> (partition: Int, resumeOffset: Int64, body: StateReader) {
        guard bytes.count <= maxBytes else { throw .invalid("checkpoint larger than \(maxBytes) bytes") }
        guard bytes.count >= 11 + 8 else { throw .truncated }
        var tail = StateReader(bytes, offset: bytes.count - 8)
        guard try tail.u64() == fnv(bytes[..<(bytes.count - 8)]) else { throw .invalid("checkpoint checksum") }
        var r = StateReader(Array(bytes[..<(bytes.count - 8)]))
        guard try r.u8() == magic.0, try r.u8() == magic.1 else { throw .invalid("not a checkpoint") }
        guard try r.u8() == version else { throw .invalid("checkpoint version") }
        let partition = try r.int(in: 0...Int(Int32.max))
        let resume = try r.i64()
        guard resume >= 0 else { throw .invalid("resume offset") }
        return (partition, resume, r)
    }
}

extension HostFactPartitionMerge {
    /// Whether `interval` has passed since the last checkpoint and something was applied since (a
    /// stream that concluded since is checkpointed at once: its fresh state is cheap to resume from).
    public func checkpointDue(_ interval: CheckpointInterval) -> Bool {
        let applied = facts
        guard applied != checkpointApplied else { return false }
        if isIdle { return true }
        switch interval {
        case .packetSeconds(let s): return checkpointClock == .min || aggregator.clock >= checkpointClock &+ s &* 1_000_000_000
        case .records(let n): return applied &- checkpointApplied >= n
        }
    }

    /// The partition's checkpoint now; marks it as the last one taken.
    public func checkpoint() -> PartitionCheckpoint {
        var w = StateWriter()
        w.u8(PartitionCheckpoint.magic.0)
        w.u8(PartitionCheckpoint.magic.1)
        w.u8(PartitionCheckpoint.version)
        w.int(partition)
        var resume = nextOffset
        for i in ledgers.indices {
            ledgers[i].trim(applied: aggregator.applied[i])
            if let p = ledgers[i].firstPending { resume = min(resume, p.offset) }
        }
        w.i64(resume)
        w.i64(nextOffset)
        let c = counters
        for v in [c.records, c.garbage, c.unknownVersion, c.undecodable, c.late, c.quietProducers, c.forced, c.afterEnd,
                  c.tooManyProducers, c.concluded, concludedFacts, aggregator.stage.counters.facts, aggregator.stage.counters.undecodable,
                  aggregator.late] { w.u64(v) }
        w.i64(aggregator.clock)
        let producers = inputs.sorted { $0.value < $1.value }
        w.count(producers.count)
        for (p, i) in producers {
            w.string(p.sensor)
            w.u64(p.session)
            w.u16(p.worker)
            let mark = aggregator.marks[i]
            if let pending = ledgers[i].firstPending {
                // Its records from the first unapplied one on are read again, the end record too.
                w.i64(pending.offset &- 1)
                w.i64(pending.watermark)
                w.bool(false)
                w.bool(false)
            } else {
                w.i64(ledgers[i].lastOffset)
                w.i64(lifted[i] ? .min : mark.value)
                w.bool(mark.isFinished && ended.contains(p))
                w.bool(lifted[i])
            }
        }
        aggregator.stage.saveState(&w)
        var bytes = w.bytes
        withUnsafeBytes(of: PartitionCheckpoint.fnv(bytes[...]).littleEndian) { bytes.append(contentsOf: $0) }
        checkpointClock = aggregator.clock
        checkpointApplied = facts
        return PartitionCheckpoint(partition: partition, resumeOffset: resume, bytes: bytes)
    }

    /// Restores a checkpoint into this fresh merge (nothing offered yet); throws when the bytes are not
    /// a checkpoint of this partition, this build and these rules could have written. After an error
    /// the merge is unusable: the caller makes a new one and rebuilds the partition from the log.
    public func restore(_ bytes: [UInt8], now: ContinuousClock.Instant) throws(StateDecodeError) -> Int64 {
        precondition(inputs.isEmpty && nextOffset == 0, "restore into a fresh merge")
        var (p, resume, r) = try PartitionCheckpoint.open(bytes)
        guard p == partition else { throw .invalid("checkpoint of partition \(p)") }
        let readUntil = try r.i64()
        guard readUntil >= resume else { throw .invalid("replay offset") }
        var v: [UInt64] = []
        for _ in 0..<14 { v.append(try r.u64()) }
        var c = HostMergeCounters()
        (c.records, c.garbage, c.unknownVersion, c.undecodable, c.late) = (v[0], v[1], v[2], v[3], v[4])
        (c.quietProducers, c.forced, c.afterEnd, c.tooManyProducers, c.concluded) = (v[5], v[6], v[7], v[8], v[9])
        let clock = try r.i64()
        let n = try r.count(max: Self.maxProducers, minBytes: 32)
        for _ in 0..<n {
            let producer = HostFactEnvelope.Producer(sensor: try r.string(max: 255), session: try r.u64(), worker: try r.u16())
            guard inputs[producer] == nil else { throw .invalid("producer twice") }
            let skip = try r.i64(), mark = try r.i64(), finished = try r.bool(), wasLifted = try r.bool()
            guard skip < readUntil else { throw .invalid("producer offset") }
            let w = input(producer)
            lastHeard[w] = now
            ledgers[w].skipThrough = skip
            ledgers[w].lastOffset = skip
            lifted[w] = wasLifted
            aggregator.marks[w].clock.store(wasLifted ? .max : mark, ordering: .relaxed)
            if finished {
                aggregator.marks[w].finished.store(true, ordering: .relaxed)
                ended.insert(producer)
            }
        }
        try aggregator.stage.restoreState(&r)
        guard r.isAtEnd else { throw .invalid("checkpoint: trailing bytes") }
        counters = c
        concludedFacts = v[10]
        aggregator.stage.counters.facts = v[11]
        aggregator.stage.counters.undecodable = v[12]
        aggregator.restore(clock: clock, late: v[13])
        nextOffset = resume
        replayUntil = readUntil
        // The previous owner gathered the producers already; their marks keep the merge in order.
        if !inputs.isEmpty { holdUntil = now }
        resumeReading()
        checkpointClock = clock
        checkpointApplied = facts
        return resume
    }
}
