import PacketCore

/// A path-compressed binary (Patricia) trie of IP prefixes: longest-prefix match in at most one node
/// visit per distinct branching bit, O(address bits) worst case, independent of how many prefixes it holds.
///
/// Nodes live in one flat array and refer to each other by index (no per-node allocation, no reference
/// counting on lookup). Every insert adds at most two nodes, so n prefixes take at most 2n + 1 nodes.
/// IPv4 and IPv6 are kept in separate tries (an IPv4 address is the top 32 bits of a 128-bit key).
public struct PrefixTrie: Sendable {
    @usableFromInline struct Node: Sendable {
        @usableFromInline var high: UInt64
        @usableFromInline var low: UInt64
        @usableFromInline var length: Int32
        @usableFromInline var value: Int32
        @usableFromInline var left: Int32
        @usableFromInline var right: Int32
    }

    @usableFromInline var v4: [Node] = [Node(high: 0, low: 0, length: 0, value: -1, left: -1, right: -1)]
    @usableFromInline var v6: [Node] = [Node(high: 0, low: 0, length: 0, value: -1, left: -1, right: -1)]
    public private(set) var count = 0

    public init() {}

    @inlinable static func key(_ a: IPAddress) -> (UInt64, UInt64) {
        a.isIPv6 ? (a.high, a.low) : (UInt64(a.ipv4Value) << 32, 0)
    }

    @inlinable static func bit(_ h: UInt64, _ l: UInt64, _ i: Int32) -> Int {
        i < 64 ? Int((h >> UInt64(63 - i)) & 1) : Int((l >> UInt64(127 - i)) & 1)
    }

    /// Number of leading bits two keys share.
    @inlinable static func common(_ ah: UInt64, _ al: UInt64, _ bh: UInt64, _ bl: UInt64) -> Int32 {
        let x = ah ^ bh
        if x != 0 { return Int32(x.leadingZeroBitCount) }
        return 64 + Int32((al ^ bl).leadingZeroBitCount)
    }

    static func masked(_ h: UInt64, _ l: UInt64, _ len: Int32) -> (UInt64, UInt64) {
        let hm: UInt64 = len >= 64 ? ~0 : (len == 0 ? 0 : ~UInt64(0) << UInt64(64 - len))
        let lm: UInt64 = len <= 64 ? 0 : (len >= 128 ? ~0 : ~UInt64(0) << UInt64(128 - len))
        return (h & hm, l & lm)
    }

    /// Adds `network` with `value`; an existing equal prefix keeps the value `keep` prefers.
    public mutating func insert(_ network: IPNetwork, value: Int32, keep: (Int32, Int32) -> Int32 = { _, new in new }) {
        let (kh0, kl0) = Self.key(network.address)
        let len = Int32(network.prefixLength)
        let (kh, kl) = Self.masked(kh0, kl0, len)
        if network.address.isIPv6 { Self.insert(&v6, kh, kl, len, value, keep, &count) } else { Self.insert(&v4, kh, kl, len, value, keep, &count) }
    }

    static func insert(_ nodes: inout [Node], _ kh: UInt64, _ kl: UInt64, _ len: Int32, _ value: Int32,
                       _ keep: (Int32, Int32) -> Int32, _ count: inout Int) {
        var n: Int32 = 0
        while true {
            if nodes[Int(n)].length == len {
                let old = nodes[Int(n)].value
                if old < 0 { count += 1; nodes[Int(n)].value = value } else { nodes[Int(n)].value = keep(old, value) }
                return
            }
            let b = bit(kh, kl, nodes[Int(n)].length)
            let c = b == 0 ? nodes[Int(n)].left : nodes[Int(n)].right
            if c < 0 {
                nodes.append(Node(high: kh, low: kl, length: len, value: value, left: -1, right: -1))
                count += 1
                setChild(&nodes, n, b, Int32(nodes.count - 1))
                return
            }
            let m = nodes[Int(c)]
            let cpl = min(common(kh, kl, m.high, m.low), len, m.length)
            if cpl == m.length { n = c; continue }
            // Split: a node for the shared prefix takes `m` on one side and the new prefix on the other
            // (or is the new prefix itself when the new prefix is the shorter one).
            let (sh, sl) = masked(kh, kl, cpl)
            var split = Node(high: sh, low: sl, length: cpl, value: -1, left: -1, right: -1)
            if bit(m.high, m.low, cpl) == 0 { split.left = c } else { split.right = c }
            if cpl == len {
                split.value = value
                count += 1
                nodes.append(split)
            } else {
                nodes.append(split)
                let s = Int32(nodes.count - 1)
                nodes.append(Node(high: kh, low: kl, length: len, value: value, left: -1, right: -1))
                count += 1
                setChild(&nodes, s, bit(kh, kl, cpl), Int32(nodes.count - 1))
            }
            setChild(&nodes, n, b, Int32(nodes.count - (cpl == len ? 1 : 2)))
            return
        }
    }

    static func setChild(_ nodes: inout [Node], _ n: Int32, _ b: Int, _ c: Int32) {
        if b == 0 { nodes[Int(n)].left = c } else { nodes[Int(n)].right = c }
    }

    /// The value of the longest prefix containing `address`, or nil.
    @inlinable public func longestMatch(_ address: IPAddress) -> Int32? {
        let (h, l) = Self.key(address)
        return address.isIPv6 ? Self.lookup(v6, h, l, 128) : Self.lookup(v4, h, l, 32)
    }

    @inlinable static func lookup(_ nodes: [Node], _ h: UInt64, _ l: UInt64, _ bits: Int32) -> Int32? {
        nodes.withUnsafeBufferPointer { nodes in
            var best: Int32 = nodes[0].value
            var n = 0
            while nodes[n].length < bits {
                let c = bit(h, l, nodes[n].length) == 0 ? nodes[n].left : nodes[n].right
                if c < 0 { break }
                let m = nodes[Int(c)]
                if common(h, l, m.high, m.low) < m.length { break }
                if m.value >= 0 { best = m.value }
                n = Int(c)
            }
            return best >= 0 ? best : nil
        }
    }
}
