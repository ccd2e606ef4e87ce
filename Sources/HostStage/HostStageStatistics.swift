import Detectors
import Events
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// One host-level stage's figures for `spanwatch.stats.host_stage`: the records it applied and each
/// detector's `DetectorStatistics`. Stages add up (`add`): with several shards the event carries their sum.
public struct HostStageStatistics: Sendable {
    public var shards = 1
    public var facts: UInt64 = 0
    public var undecodable: UInt64 = 0
    public var reloads: UInt64 = 0
    public var detectors: [DetectorStatistics] = []

    public init() {}

    /// The figures of the detector named `name` (`beaconing`, `dns_tunneling`, …).
    public subscript(_ name: String) -> DetectorStatistics? { detectors.first { $0.name.description == name } }

    /// Adds another shard's stage (the same detectors, registered in the same order).
    public mutating func add(_ o: HostStageStatistics) {
        shards += o.shards
        facts &+= o.facts
        undecodable &+= o.undecodable
        reloads &+= o.reloads
        guard detectors.count == o.detectors.count else { return }
        for i in detectors.indices { detectors[i].add(o.detectors[i]) }
    }

    /// This stage's figures followed by a later stage's that took over from it (`sensor aggregate`
    /// starts a partition's detectors afresh for each producer stream): counters add up, the state is the
    /// later one's, and it is still one stage.
    public mutating func extend(with later: HostStageStatistics) {
        facts &+= later.facts
        undecodable &+= later.undecodable
        reloads &+= later.reloads
        guard detectors.count == later.detectors.count else { return }
        for i in detectors.indices { detectors[i].extend(with: later.detectors[i]) }
    }

    /// The sum of several stages (nil for none).
    public static func sum(_ stages: some Sequence<HostStageStatistics>) -> HostStageStatistics? {
        var total: HostStageStatistics?
        for s in stages {
            if total == nil { total = s } else { total!.add(s) }
        }
        return total
    }

    public func write(into w: inout JSONWriter) {
        w.beginObject("host_stage")
        w.field("shards", shards)
        w.field("facts", facts)
        w.field("undecodable", undecodable)
        w.field("reloads", reloads)
        for d in detectors { d.write(into: &w) }
        w.endObject()
    }
}

/// Where the shards' aggregators leave their stages' figures (about once a second, and once more when they
/// have concluded) for the one `spanwatch.stats` event that carries their sum: worker 0's. Shared by threads:
/// a lock taken once a second per shard and per statistics event, never on a packet.
public final class HostStageBoard: Sendable {
    struct Slots: Sendable {
        var latest: [HostStageStatistics?]
        var concluded: [Bool]
    }
    let slots: Mutex<Slots>
    public let shards: Int
    /// How long worker 0 waits at the end for the shards to conclude: longer than an aggregator waits
    /// for the workers to finish (`HostAggregatorService.stopGrace`, 10 s).
    public static let concludeWait: Duration = .seconds(15)

    public init(shards: Int) {
        self.shards = shards
        slots = Mutex(Slots(latest: Array(repeating: nil, count: shards), concluded: Array(repeating: false, count: shards)))
    }

    /// Shard `shard`'s figures now; `concluded` after its detectors concluded at the end of input.
    public func post(_ s: HostStageStatistics, shard: Int, concluded: Bool) {
        slots.withLock { b in
            guard shard >= 0, shard < b.latest.count else { return }
            b.latest[shard] = s
            if concluded { b.concluded[shard] = true }
        }
    }

    public var allConcluded: Bool { slots.withLock { $0.concluded.allSatisfy { $0 } } }

    /// The sum of the latest figures (nil before any shard posted).
    public var sum: HostStageStatistics? {
        slots.withLock { HostStageStatistics.sum($0.latest.compactMap { $0 }) }
    }

    /// Waits (polling every 10 ms, at most `timeout`) until every shard has concluded: the final
    /// statistics come after the detectors' last alerts. A shard that does not conclude in time leaves
    /// its latest figures.
    public func waitUntilConcluded(timeout: Duration) {
        let deadline = ContinuousClock.now + timeout
        while !allConcluded && ContinuousClock.now < deadline { usleep(10_000) }
    }
}
