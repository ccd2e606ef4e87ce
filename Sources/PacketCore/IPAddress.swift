/// An IPv4 or IPv6 address held as two integers in network order (numeric order equals byte order).
///
/// A value type of 17 bytes: no allocation to create, compare or hash it on the packet path.
/// IPv4 addresses keep `high == 0` and the address in the low 32 bits of `low`.
public struct IPAddress: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var high: UInt64
    public var low: UInt64
    public var isIPv6: Bool

    @inlinable public init(high: UInt64, low: UInt64, isIPv6: Bool) {
        self.high = high; self.low = low; self.isIPv6 = isIPv6
    }
    @inlinable public init(ipv4 value: UInt32) { self.init(high: 0, low: UInt64(value), isIPv6: false) }

    /// Loads 4 (IPv4) or 16 (IPv6) bytes at `offset`; the caller has checked the bounds.
    @inlinable public static func load(_ buf: UnsafeRawBufferPointer, at offset: Int, ipv6: Bool) -> IPAddress {
        if ipv6 {
            let h = buf.loadUnaligned(fromByteOffset: offset, as: UInt64.self).bigEndian
            let l = buf.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self).bigEndian
            return IPAddress(high: h, low: l, isIPv6: true)
        }
        return IPAddress(ipv4: buf.loadUnaligned(fromByteOffset: offset, as: UInt32.self).bigEndian)
    }

    @inlinable public var ipv4Value: UInt32 { UInt32(truncatingIfNeeded: low) }

    @inlinable public static func < (a: IPAddress, b: IPAddress) -> Bool {
        if a.isIPv6 != b.isIPv6 { return !a.isIPv6 }
        return a.high != b.high ? a.high < b.high : a.low < b.low
    }

    /// The address bytes in network order (4 or 16), for hashing (Community ID) and for C APIs.
    @inlinable public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        if isIPv6 {
            var t = (high.bigEndian, low.bigEndian)
            return try withUnsafeBytes(of: &t) { try body($0) }
        }
        var v = ipv4Value.bigEndian
        return try withUnsafeBytes(of: &v) { try body($0) }
    }

    /// Appends the text form (dotted quad, or RFC 5952 for IPv6) without allocating.
    @inlinable
    public func append<O: ByteOutput>(to out: inout O) {
        @inline(__always) func dec(_ v: UInt32, _ out: inout O) {
            if v >= 100 { out.append(UInt8(48 + v / 100)) }
            if v >= 10 { out.append(UInt8(48 + (v / 10) % 10)) }
            out.append(UInt8(48 + v % 10))
        }
        if !isIPv6 {
            let v = ipv4Value
            dec(v >> 24, &out); out.append(46)
            dec((v >> 16) & 0xff, &out); out.append(46)
            dec((v >> 8) & 0xff, &out); out.append(46)
            dec(v & 0xff, &out)
            return
        }
        var groups: (UInt16, UInt16, UInt16, UInt16, UInt16, UInt16, UInt16, UInt16) = (0, 0, 0, 0, 0, 0, 0, 0)
        withUnsafeMutableBytes(of: &groups) { g in
            let p = g.bindMemory(to: UInt16.self)
            for i in 0..<4 { p[i] = UInt16(truncatingIfNeeded: high >> (48 - 16 * UInt64(i))) }
            for i in 0..<4 { p[4 + i] = UInt16(truncatingIfNeeded: low >> (48 - 16 * UInt64(i))) }
        }
        withUnsafeBytes(of: &groups) { g in
            let p = g.bindMemory(to: UInt16.self)
            // IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible (::a.b.c.d) keep the dotted tail, exactly
            // when glibc's inet_ntop does, so our text matches other tools' for the same address.
            let compatible = high == 0 && (low >> 32) == 0 && (low >> 16) & 0xffff != 0
            let mapped = (high == 0 && (low >> 32) == 0xffff) || compatible
            let lastGroup = mapped ? 6 : 8
            // Longest run of zero groups (length >= 2), first one on ties (RFC 5952 4.2).
            var bestStart = -1, bestLen = 0, i = 0
            while i < lastGroup {
                if p[i] == 0 {
                    var j = i
                    while j < lastGroup && p[j] == 0 { j += 1 }
                    if j - i > bestLen && j - i >= 2 { bestStart = i; bestLen = j - i }
                    i = j
                } else { i += 1 }
            }
            var k = 0
            var needColon = false
            while k < lastGroup {
                if k == bestStart {
                    out.append(58); out.append(58)
                    k += bestLen
                    needColon = false
                    continue
                }
                if needColon { out.append(58) }
                let v = p[k]
                var started = false
                for s in stride(from: 12, through: 0, by: -4) {
                    let nib = Int((v >> UInt16(s)) & 0xf)
                    if nib != 0 || started || s == 0 { out.append(IPAddress.hexDigits[nib]); started = true }
                }
                needColon = true
                k += 1
            }
            if mapped {
                if needColon { out.append(58) }
                let v = UInt32(truncatingIfNeeded: low)
                dec(v >> 24, &out); out.append(46)
                dec((v >> 16) & 0xff, &out); out.append(46)
                dec((v >> 8) & 0xff, &out); out.append(46)
                dec(v & 0xff, &out)
            }
        }
    }

    @usableFromInline static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    public var description: String {
        var b: [UInt8] = []
        b.reserveCapacity(40)
        append(to: &b)
        return String(decoding: b, as: UTF8.self)
    }

    /// Parses dotted-quad IPv4 or IPv6 text (with `::` compression and an optional dotted IPv4 tail).
    public init?(_ text: Substring) {
        if !text.contains(":") {
            guard let v = IPAddress.parseIPv4(text) else { return nil }
            self.init(ipv4: v)
            return
        }
        // At most one "::": groups before it, groups after it, zeros in between.
        var head: [UInt16] = [], tail: [UInt16] = []
        let halves = text.components(separatedByDoubleColon: ())
        guard halves.count <= 2 else { return nil }
        func groups(_ part: Substring, allowIPv4Tail: Bool, into out: inout [UInt16]) -> Bool {
            if part.isEmpty { return true }
            let items = part.split(separator: ":", omittingEmptySubsequences: false)
            for (idx, item) in items.enumerated() {
                if allowIPv4Tail && idx == items.count - 1 && item.contains(".") {
                    guard let v4 = IPAddress.parseIPv4(item) else { return false }
                    out.append(UInt16(v4 >> 16)); out.append(UInt16(v4 & 0xffff))
                    continue
                }
                guard !item.isEmpty, item.count <= 4, let v = UInt16(item, radix: 16) else { return false }
                out.append(v)
            }
            return true
        }
        let seenDouble = halves.count == 2
        guard groups(halves[0], allowIPv4Tail: !seenDouble, into: &head) else { return nil }
        if seenDouble { guard groups(halves[1], allowIPv4Tail: true, into: &tail) else { return nil } }
        let total = head.count + tail.count
        if seenDouble ? total > 7 : total != 8 { return nil }
        let groups = head + Array(repeating: 0, count: 8 - total) + tail
        var h: UInt64 = 0, l: UInt64 = 0
        for i in 0..<4 { h = h << 16 | UInt64(groups[i]) }
        for i in 4..<8 { l = l << 16 | UInt64(groups[i]) }
        self.init(high: h, low: l, isIPv6: true)
    }

    public init?(_ text: String) { self.init(text[...]) }

    static func parseIPv4(_ s: Substring) -> UInt32? {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var v: UInt32 = 0
        for p in parts {
            guard !p.isEmpty, p.count <= 3, p.allSatisfy({ $0.isASCII && $0.isNumber }), let o = UInt32(p), o <= 255 else { return nil }
            v = v << 8 | o
        }
        return v
    }
}

/// An address prefix such as `10.0.0.0/8` or `fd00::/8`.
public struct IPNetwork: Hashable, Sendable, CustomStringConvertible {
    public var address: IPAddress
    public var prefixLength: Int

    public init(address: IPAddress, prefixLength: Int) {
        self.prefixLength = prefixLength
        self.address = IPNetwork.masked(address, prefixLength)
    }

    public init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1)
        guard let first = parts.first, let a = IPAddress(first) else { return nil }
        let maxLen = a.isIPv6 ? 128 : 32
        var len = maxLen
        if parts.count == 2 {
            guard let l = Int(parts[1]), l >= 0, l <= maxLen else { return nil }
            len = l
        }
        self.init(address: a, prefixLength: len)
    }

    @inlinable static func masked(_ a: IPAddress, _ len: Int) -> IPAddress {
        if !a.isIPv6 {
            let mask: UInt32 = len == 0 ? 0 : ~UInt32(0) << UInt32(32 - len)
            return IPAddress(ipv4: a.ipv4Value & mask)
        }
        let hm: UInt64 = len >= 64 ? ~0 : (len == 0 ? 0 : ~UInt64(0) << UInt64(64 - len))
        let lm: UInt64 = len <= 64 ? 0 : (len >= 128 ? ~0 : ~UInt64(0) << UInt64(128 - len))
        return IPAddress(high: a.high & hm, low: a.low & lm, isIPv6: true)
    }

    @inlinable public func contains(_ a: IPAddress) -> Bool {
        a.isIPv6 == address.isIPv6 && IPNetwork.masked(a, prefixLength) == address
    }

    public var description: String { "\(address)/\(prefixLength)" }
}

/// A set of networks, e.g. the home networks that decide `network.direction`.
public struct NetworkSet: Sendable {
    public private(set) var networks: [IPNetwork]

    public init(_ networks: [IPNetwork]) { self.networks = networks.sorted { $0.prefixLength > $1.prefixLength } }

    /// RFC 1918, RFC 6598 shared space, loopback, link-local and IPv6 unique-local / link-local.
    public static let privateDefaults = NetworkSet(
        ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
         "fc00::/7", "fe80::/10", "::1/128"].compactMap(IPNetwork.init)
    )

    @inlinable public func contains(_ a: IPAddress) -> Bool {
        for n in networks where n.contains(a) { return true }
        return false
    }
}

extension Substring {
    /// Splits on the first "::" (a second one yields three parts, which callers reject).
    func components(separatedByDoubleColon: ()) -> [Substring] {
        var parts: [Substring] = []
        var rest = self[...]
        while let r = rest.range(of: "::") {
            parts.append(rest[rest.startIndex..<r.lowerBound])
            rest = rest[r.upperBound...]
        }
        parts.append(rest)
        return parts
    }
}

extension Substring {
    func range(of needle: String) -> Range<Index>? {
        let n = Array(needle.utf8)
        var i = startIndex
        while i < endIndex {
            var j = i, k = 0
            while k < n.count, j < endIndex, self.utf8[j] == n[k] { j = self.utf8.index(after: j); k += 1 }
            if k == n.count { return i..<j }
            i = index(after: i)
        }
        return nil
    }
}
