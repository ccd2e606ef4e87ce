import ConfigKit
import PacketCore

/// Readers for the value shapes the C2 and beaconing rules share (port lists with ranges, networks,
/// directions), on top of ConfigKit's `ConfigReader` so every mistake is reported with its line.
enum RuleReading {
    /// A port list: integers and `low-high` ranges, e.g. `[80, 8080, 49152-65535]`.
    static func ports(_ v: ConfigValue?, _ r: inout ConfigReader) -> PortSet? {
        guard let v else { return nil }
        var set = PortSet()
        for item in v.items ?? [v] {
            guard let text = r.string(item) else { continue }
            let parts = text.split(separator: "-", maxSplits: 1).map { $0.trimmingCharacters(in: " ") }
            if parts.count == 2, let lo = Int(parts[0]), let hi = Int(parts[1]), 0...65535 ~= lo, 0...65535 ~= hi, lo <= hi {
                set.insert(UInt16(lo)...UInt16(hi))
            } else if parts.count == 1, let p = Int(parts[0]), 0...65535 ~= p {
                set.insert(UInt16(p)...UInt16(p))
            } else {
                r.report(item, "'\(text)' is not a port or a port range (expected e.g. 443 or 49152-65535)")
            }
        }
        return set
    }

    /// A list of addresses or CIDR networks.
    static func networks(_ v: ConfigValue?, _ r: inout ConfigReader) -> [IPNetwork]? {
        guard let v else { return nil }
        var out: [IPNetwork] = []
        for item in v.items ?? [v] {
            guard let s = r.string(item) else { continue }
            if let n = IPNetwork(s) { out.append(n) } else { r.report(item, "'\(s)' is not an address or network (expected e.g. 203.0.113.7 or 10.0.0.0/8)") }
        }
        return out
    }

    static func directions(_ v: ConfigValue?, _ r: inout ConfigReader) -> Set<NetworkDirection>? {
        guard let list = r.stringList(v) else { return nil }
        var out = Set<NetworkDirection>()
        for (i, name) in list.enumerated() {
            if let d = NetworkDirection(name: name) { out.insert(d) } else {
                let names = NetworkDirection.allCases.map { "\($0.name)" }.joined(separator: ", ")
                r.report(v!.items?[i] ?? v!, "'\(name)' is not a direction (one of \(names))")
            }
        }
        return out
    }
}

extension Substring {
    func trimmingCharacters(in set: Character) -> String {
        var s = self
        while s.first == set { s.removeFirst() }
        while s.last == set { s.removeLast() }
        return String(s)
    }
}

/// A set of TCP/UDP ports as a 65,536-bit bitmap (8 kB): membership is one load, whatever the ranges.
public struct PortSet: Sendable, Equatable {
    @usableFromInline var words = [UInt64](repeating: 0, count: 1024)
    public init() {}
    public init(_ ranges: [ClosedRange<UInt16>]) { for r in ranges { insert(r) } }
    public mutating func insert(_ r: ClosedRange<UInt16>) {
        for p in r { words[Int(p) >> 6] |= 1 << UInt64(p & 63) }
    }
    @inlinable public func contains(_ p: UInt16) -> Bool { words[Int(p) >> 6] & (1 << UInt64(p & 63)) != 0 }
    public var isEmpty: Bool { words.allSatisfy { $0 == 0 } }
    /// The ports in the set, ascending (one pass over the set bits, not over all 65,536 ports).
    public var members: [UInt16] {
        var out: [UInt16] = []
        for (i, w) in words.enumerated() where w != 0 {
            var bits = w
            while bits != 0 {
                out.append(UInt16(truncatingIfNeeded: i &<< 6 | bits.trailingZeroBitCount))
                bits &= bits &- 1
            }
        }
        return out
    }
}

/// A rule's `directions` as four bits (one per `NetworkDirection` raw value), so a session's direction
/// is tested with a shift and a mask.
struct DirectionMask {
    let bits: UInt8

    init(_ directions: Set<NetworkDirection>) {
        var b: UInt8 = 0
        for d in directions { b |= 1 << d.rawValue }
        bits = b
    }

    /// Whether the direction from `s` to `d` is one of them.
    func contains(_ homes: NetworkSet, from s: IPAddress, to d: IPAddress) -> Bool {
        bits & 1 << NetworkDirection(homes, from: s, to: d).rawValue != 0
    }
}
