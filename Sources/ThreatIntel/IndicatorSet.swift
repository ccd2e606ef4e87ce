import PacketCore

/// An immutable, indexed set of indicators: built once per (re)load, then shared read-only by every
/// pipeline worker (a class so workers hold one reference, not a copy of a million entries).
///
/// Lookups are hash probes and one trie walk: exact addresses in a hash table, CIDRs in a Patricia trie,
/// domains by hashing each label suffix of a name (`a.b.evil.example` probes `a.b.evil.example`,
/// `b.evil.example`, `evil.example`, `example`), everything else exact. Duplicate values keep the
/// entry with the highest confidence.
public final class IndicatorSet: Sendable {
    public let indicators: [Indicator]
    let addresses: [IPAddress: Int32]
    let networks: PrefixTrie
    /// One bit per IPv4 /24 that holds a listed address or lies in a listed network (2 MiB): most
    /// addresses of real traffic are in no listed /24, and this answers for them with one memory read
    /// instead of a hash probe and a trie walk into a table of a million entries.
    let v4Filter: [UInt64]
    let domains: [String: Int32]
    let exact: [IndicatorType: [String: Int32]]
    /// Entries per type, for logs and `check-rules`.
    public let countsByType: [IndicatorType: Int]
    public var count: Int { indicators.count }
    public var isEmpty: Bool { indicators.isEmpty }
    public var hasAddresses: Bool { !addresses.isEmpty || networks.count > 0 }
    public var hasDomains: Bool { !domains.isEmpty }

    public static let empty = IndicatorSet([])

    public init(_ input: [Indicator]) {
        var list: [Indicator] = []
        list.reserveCapacity(input.count)
        var addresses: [IPAddress: Int32] = [:]
        var networks = PrefixTrie()
        var domains: [String: Int32] = [:]
        var exact: [IndicatorType: [String: Int32]] = [:]
        var counts: [IndicatorType: Int] = [:]
        func better(_ old: Int32, _ new: Int32) -> Bool {
            (list[Int(new)].confidence ?? 50) > (list[Int(old)].confidence ?? 50)
        }
        for ind in input {
            let i = Int32(list.count)
            list.append(ind)
            var duplicateOf: Int32?
            switch ind.type {
            case .ip:
                let a = Self.address(ind.value)
                if let old = addresses[a] { duplicateOf = old; if better(old, i) { addresses[a] = i } } else { addresses[a] = i }
            case .cidr:
                let n = IPNetwork(ind.value)!
                var dup: Int32?
                networks.insert(n, value: i) { old, new in dup = old; return better(old, new) ? new : old }
                duplicateOf = dup
            case .domain:
                if let old = domains[ind.value] { duplicateOf = old; if better(old, i) { domains[ind.value] = i } } else { domains[ind.value] = i }
            default:
                if let old = exact[ind.type]?[ind.value] { duplicateOf = old; if better(old, i) { exact[ind.type]![ind.value] = i } }
                else { exact[ind.type, default: [:]][ind.value] = i }
            }
            if duplicateOf == nil { counts[ind.type, default: 0] += 1 }
        }
        var filter = [UInt64](repeating: 0, count: (1 << 24) / 64)
        func mark(_ first: UInt32, _ count: UInt32) {
            for p in first..<(first + count) { filter[Int(p >> 6)] |= 1 << UInt64(p & 63) }
        }
        for a in addresses.keys where !a.isIPv6 { mark(a.ipv4Value >> 8, 1) }
        for ind in list where ind.type == .cidr {
            guard let n = IPNetwork(ind.value), !n.address.isIPv6 else { continue }
            mark(n.address.ipv4Value >> 8, n.prefixLength >= 24 ? 1 : UInt32(1) << UInt32(24 - n.prefixLength))
        }
        self.v4Filter = filter
        self.indicators = list
        self.addresses = addresses
        self.networks = networks
        self.domains = domains
        self.exact = exact
        self.countsByType = counts
    }

    /// A normalised address value (IPv4 from its bytes, the rest through the general parser).
    static func address(_ s: String) -> IPAddress {
        var s = s
        if let a = s.withUTF8({ b -> IPAddress? in
            let r = UnsafeRawBufferPointer(b)
            guard let (v, i) = FastValue.ipv4(r, 0, r.count), i == r.count else { return nil }
            return IPAddress(ipv4: v)
        }) { return a }
        return IPAddress(s)!
    }

    /// Distinct indicators (duplicates folded).
    public var distinctCount: Int { countsByType.values.reduce(0, +) }

    // MARK: Lookups (each returns an index into `indicators`, live at `time`)

    /// An exact address first (more specific), then the longest CIDR containing it.
    public func match(address a: IPAddress, at time: Timestamp) -> Int32? {
        if !a.isIPv6 {
            let p = Int(a.ipv4Value >> 8)
            if v4Filter[p >> 6] & (1 << UInt64(p & 63)) == 0 { return nil }
        }
        if let i = addressIndex(a), indicators[Int(i)].isLive(at: time) { return i }
        if let i = networks.longestMatch(a), indicators[Int(i)].isLive(at: time) { return i }
        return nil
    }

    func addressIndex(_ a: IPAddress) -> Int32? { addresses.isEmpty ? nil : addresses[a] }

    /// The most specific domain indicator covering `name` (the name itself or a parent domain).
    public func match(domain name: String, at time: Timestamp) -> Int32? {
        guard !domains.isEmpty, let n = Indicator.normaliseDomain(name) else { return nil }
        var rest = Substring(n)
        while true {
            if let i = domains[String(rest)], indicators[Int(i)].isLive(at: time) { return i }
            guard let dot = rest.firstIndex(of: ".") else { return nil }
            rest = rest[rest.index(after: dot)...]
        }
    }

    /// An exact-value indicator of `type` (SNI, JA3, JA4, hashes, URLs); `value` is normalised here.
    public func match(_ type: IndicatorType, _ value: String, at time: Timestamp) -> Int32? {
        guard let table = exact[type] else { return nil }
        let v: String
        switch type {
        case .url: guard let u = Indicator.normaliseURL(value) else { return nil }; v = u
        case .sni: guard let d = Indicator.normaliseDomain(value) else { return nil }; v = d
        default: v = value.lowercased()
        }
        if let i = table[v], indicators[Int(i)].isLive(at: time) { return i }
        return nil
    }
}
