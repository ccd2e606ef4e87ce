import ConfigKit
import Detectors
import Events
import Logging
import PacketCore

/// Counters of one host-level stage (a shard's detectors and what reached them).
public struct HostStageCounters: Sendable, Equatable {
    /// Fact records applied.
    public var facts: UInt64 = 0
    /// Records that did not decode (never expected: both ends are this program; counted, not trusted).
    public var undecodable: UInt64 = 0
    /// Rule sets applied (SIGHUP).
    public var reloads: UInt64 = 0
    public init() {}
}

/// The host detectors of one shard, fed with decoded fact records in the order given (the caller
/// merges workers by packet time). The same set runs inline in replay and behind the per-worker rings
/// live, on what the records carry, so both decide alike. Single-threaded: one owner thread.
public final class HostDetectorSet {
    public let detectors: [any HostDetector]
    /// Their factories' names (a checkpoint's tags).
    let names: [String]
    /// Per fact kind, the detectors that read it (in registration order).
    let readers: [[any HostDetector]]
    public internal(set) var counters = HostStageCounters()
    /// The next packet-clock second the detectors tick at (`tick` records before it are ignored).
    var nextTick: Int64 = .min
    /// A DNS message's lower-cased name (the tunnelling detector reads both spellings).
    let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: HostFactCodec.maxDNSName, alignment: 8)

    public init(factories: [HostDetectorFactory], emitter: EventEmitter) {
        detectors = factories.map { $0.make(emitter) }
        names = factories.map(\.name)
        var readers = Array(repeating: [any HostDetector](), count: Int(HostFactKind.allCases.map(\.rawValue).max()!) + 1)
        for d in detectors {
            for k in HostFactKind.allCases where type(of: d).facts.contains(k) { readers[Int(k.rawValue)].append(d) }
        }
        self.readers = readers
    }

    deinit { scratch.deallocate() }

    /// Applies one record (stamp, kind, fields).
    public func apply(_ record: UnsafeRawBufferPointer) {
        guard let (_, fact) = HostFactCodec.decode(record, scratch: scratch) else {
            counters.undecodable &+= 1
            return
        }
        apply(fact)
    }

    /// Applies one fact: a decoded record, or inline one its record would carry whole
    /// (`HostFactCodec.carriesWhole`), so the detectors decide on the same values either way.
    public func apply(_ fact: HostFact) {
        counters.facts &+= 1
        // The kind is read from the tag in place; taking a payload out (the tick's) copies the whole fact.
        let kind = fact.kind
        if kind == .tick {
            tickRecord(fact)
            return
        }
        for d in readers[Int(kind.rawValue)] { d.apply(fact) }
    }

    /// A worker's tick: the detectors tick at the first one past each packet-clock second.
    @inline(never) func tickRecord(_ fact: HostFact) {
        guard case .tick(let t) = fact, t.nanoseconds >= nextTick else { return }
        nextTick = (t.seconds &+ 1) &* 1_000_000_000
        tick(t)
    }

    /// Once per packet-clock second.
    public func tick(_ now: Timestamp) {
        for d in detectors { d.tick(now) }
    }

    public func finish(_ now: Timestamp) {
        for d in detectors { d.finish(now) }
    }

    /// What this stage applied and each detector's figures (`spanwatch.stats.host_stage`).
    public var statistics: HostStageStatistics {
        var s = HostStageStatistics()
        s.facts = counters.facts
        s.undecodable = counters.undecodable
        s.reloads = counters.reloads
        s.detectors = detectors.map(\.statistics)
        return s
    }

    /// Hands an accepted rule set to the detectors, on the stage's thread, between two records. The
    /// set was loaded and checked whole before it was posted, so every detector takes it.
    public func reload(_ rules: RulesSet, logger: Logger, shard: Int) {
        for d in detectors {
            if let note = d.reload(rules) { logger.notice("\(note)", metadata: ["shard": "\(shard)"]) }
        }
        counters.reloads &+= 1
    }
}

extension HostDetectorSet {
    /// Every detector's state, each tagged with its factory's name and length-prefixed, then the tick clock.
    public func saveState(_ w: inout StateWriter) {
        w.count(detectors.count)
        for (name, d) in zip(names, detectors) {
            w.string(name)
            var inner = StateWriter()
            d.saveState(&inner)
            w.raw(inner.bytes)
        }
        w.i64(nextTick)
    }

    /// Restores a fresh set (same detectors, in the same order); a detector whose state does not
    /// decode whole is an error (the caller rebuilds the partition from the log).
    public func restoreState(_ r: inout StateReader) throws(StateDecodeError) {
        guard try r.count(max: detectors.count) == detectors.count else { throw .invalid("detector set") }
        for (name, d) in zip(names, detectors) {
            guard try r.string() == name else { throw .invalid("detector \(name) missing") }
            var inner = StateReader(try r.raw(max: Self.maxDetectorState))
            try d.restoreState(&inner)
            guard inner.isAtEnd else { throw .invalid("\(name): trailing bytes") }
        }
        nextTick = try r.i64()
    }

    /// Largest state one detector may have in a checkpoint.
    public static let maxDetectorState = 32 << 20

    /// The detector of type `D`, if registered (tests and statistics).
    public func detector<D: HostDetector>(_ type: D.Type) -> D? {
        detectors.lazy.compactMap { $0 as? D }.first
    }
}
