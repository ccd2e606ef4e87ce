import Capture
import HostStage
import PacketCore

/// `--flow-shard I/N`: this process handles only the flows whose symmetric address-pair hash
/// (`FlowKey.addressPairHash`, the one `--workers` hands packets to workers by) falls in shard I of N.
/// Both directions and every fragment of a datagram hash alike, so N processes over the same file see
/// disjoint flows whose union is every flow; packets that are not IP go to shard 0.
public struct FlowShard: Sendable, Equatable, CustomStringConvertible {
    public let index: Int
    public let count: Int

    /// Parses `I/N` with 0 ≤ I < N ≤ 1024.
    public init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let i = Int(parts[0]), let n = Int(parts[1]), (1...1024).contains(n), (0..<n).contains(i) else { return nil }
        index = i
        count = n
    }

    public init(index: Int, count: Int) {
        precondition(count > 0 && (0..<count).contains(index))
        self.index = index
        self.count = count
    }

    public var description: String { "\(index)/\(count)" }

    /// The hash shards and offline workers are chosen by: `FlowKey.addressPairHash`, 0 when the packet
    /// shows no IP addresses.
    @inline(__always) public static func hash(of p: DecodedPacket) -> UInt64 {
        p.ipVersion == 0 ? 0 : FlowKey.addressPairHash(p)
    }

    @inline(__always) public func contains(_ p: DecodedPacket) -> Bool {
        count == 1 || contains(hash: Self.hash(of: p))
    }

    /// Whether a packet of `hash` (`FlowShard.hash`) is this shard's: the hash's remainder by N
    /// (`--workers` within a shard take the quotient, so they split the shard evenly).
    @inline(__always) public func contains(hash: UInt64) -> Bool {
        Int(truncatingIfNeeded: hash % UInt64(count)) == index
    }
}

/// A one-worker replay's shard filter in front of its pipeline: packets of other shards only move the
/// packet clock, so idle timeouts and detector windows fall when they do in a full run. Decodes the
/// headers once more for the packets it passes on (offline only).
final class FlowShardFilter: PacketConsumer {
    let pipeline: Pipeline
    let shard: FlowShard
    /// Packets left to the other shards.
    private(set) var skipped: UInt64 = 0

    /// Told the input's first packet time, so the host stage's clock starts where a full run's does.
    let publisher: HostFactPublisher?

    init(pipeline: Pipeline, shard: FlowShard) {
        self.pipeline = pipeline
        self.shard = shard
        publisher = pipeline.analyzers.lazy.compactMap { ($0 as? HostFactTap)?.publisher }.first
    }

    override func consume(_ raw: RawPacket) {
        var p = DecodedPacket()
        _ = PacketDecoder.decode(raw.bytes, linkType: raw.linkType, into: &p)
        if shard.contains(p) { pipeline.process(raw); return }
        skipped &+= 1
        guard !raw.timestampOutOfRange else { return }
        pipeline.advanceClock(to: raw.timestamp)
        publisher?.clockStarted(at: raw.timestamp)
    }
}
