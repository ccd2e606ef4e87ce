import Analyzers
import PacketCore

/// Resolver search suffixes (`corp.local`, `ns.svc.cluster.local`): what a stub resolver appends to a
/// name, so that `<data>.evil.com.corp.local` must be judged as `evil.com`, not as the internal zone.
///
/// Suffixes come from the rules (`search_suffixes`) and from traffic: a client asking for a name both
/// with and without a tail (`x.example.com` and `x.example.com.corp.local`, in either order within
/// `learn_search_suffixes.window`) shows that tail is one of its search suffixes; `evidence` such pairings
/// make it learned, and only tails whose head stands on its own (a registered domain under a listed
/// top-level domain) count. Recent names sit in two fixed direct-mapped tables (an
/// entry may be overwritten under load: a pairing missed, never memory grown); suffixes are kept as hashes
/// of their lower-case text, compared on up to `maxLabels` trailing labels of a name. A learned suffix
/// belongs to the client it was learned from (search lists are per host, and a client's facts all reach
/// one shard, so one shard or several decide alike).
struct DNSSearchSuffixes {
    /// Trailing labels a search suffix may have (Kubernetes' `ns.svc.cluster.local` has four).
    static let maxLabels = 4
    static let tableSize = 8192
    /// (client, suffix) pairs learned per detector; pairings for more are counted and dropped.
    static let maxLearned = 4096
    /// Candidate suffixes awaiting more evidence; the table is cleared when full.
    static let maxCandidates = 1024

    struct Entry {
        var key: UInt64 = 0
        var time: Int64 = .min
        var suffix: UInt64 = 0
    }

    var configured: Set<UInt64> = []
    var learned: Set<UInt64> = []
    var candidates: [UInt64: Int] = [:]
    /// Names asked as they are, and names asked with a tail (keyed by the name without it).
    var plain: [Entry]
    var suffixed: [Entry]
    var window: Int64
    var evidence: Int
    var learning: Bool
    var learnedDropped: UInt64 = 0
    var candidatesCleared: UInt64 = 0

    init(rules: DNSTunnelRules) {
        plain = Array(repeating: Entry(), count: DNSSearchSuffixes.tableSize)
        suffixed = Array(repeating: Entry(), count: DNSSearchSuffixes.tableSize)
        window = 0
        evidence = 1
        learning = false
        apply(rules)
    }

    mutating func apply(_ rules: DNSTunnelRules) {
        configured = Set(rules.searchSuffixes.map { s in Array(s.utf8).withUnsafeBytes { DNSSearchSuffixes.hash($0, 0, $0.count) } })
        window = Timestamp.Duration.seconds(rules.searchSuffixWindowSeconds).nanoseconds
        evidence = rules.searchSuffixEvidence
        learning = rules.learnSearchSuffixes
    }

    var isEmpty: Bool { configured.isEmpty && learned.isEmpty }

    func contains(_ h: UInt64, client: IPAddress) -> Bool {
        configured.contains(h) || (!learned.isEmpty && learned.contains(DNSSearchSuffixes.key(client, h)))
    }

    /// FNV-1a of `b[from..<to]`.
    static func hash(_ b: UnsafeRawBufferPointer, _ from: Int, _ to: Int) -> UInt64 {
        var h = fnvOffset
        var i = from
        while i < to { h = (h ^ UInt64(b[i])) &* fnvPrime; i += 1 }
        return h
    }
    static let fnvOffset: UInt64 = 0xcbf2_9ce4_8422_2325
    static let fnvPrime: UInt64 = 0x100_0000_01b3

    /// The hashes of the heads left by the `count` cuts (`heads.k-1`: cut `k`) and of the whole name,
    /// in one pass: every head is a prefix of the name, and FNV-1a of a prefix is the state reached there.
    static func prefixHashes(_ name: UnsafeRawBufferPointer, _ c: (Int, Int, Int, Int), _ count: Int) -> (heads: (UInt64, UInt64, UInt64, UInt64), whole: UInt64) {
        var heads: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        var h = fnvOffset
        var i = 0
        // Cut `count` is the leftmost dot, cut 1 the rightmost.
        for k in stride(from: count, through: 1, by: -1) {
            let end = cut(c, k)
            while i < end { h = (h ^ UInt64(name[i])) &* fnvPrime; i += 1 }
            switch k { case 1: heads.0 = h; case 2: heads.1 = h; case 3: heads.2 = h; default: heads.3 = h }
        }
        while i < name.count { h = (h ^ UInt64(name[i])) &* fnvPrime; i += 1 }
        return (heads, h)
    }

    static func key(_ client: IPAddress, _ name: UInt64) -> UInt64 {
        var h = name ^ (client.high &* 0x9E37_79B9_7F4A_7C15)
        h = (h ^ (h >> 31)) &* 0xBF58_476D_1CE4_E5B9
        h ^= client.low &* 0x94D0_49BB_1331_11EB
        return h ^ (h >> 29)
    }

    /// The dots that end a name's candidate heads, right to left: `cuts[k-1]` ends the head left when
    /// the last `k` labels are taken as a suffix. Only cuts that leave a head of two labels or more.
    static func cuts(_ name: UnsafeRawBufferPointer) -> (positions: (Int, Int, Int, Int), count: Int) {
        var p = (-1, -1, -1, -1)
        var dots = 0
        var i = name.count
        // One dot more than the cuts, so every head keeps a dot of its own.
        while i > 0 && dots <= maxLabels {
            i -= 1
            if name[i] == 0x2E {
                switch dots {
                case 0: p.0 = i
                case 1: p.1 = i
                case 2: p.2 = i
                case 3: p.3 = i
                default: break
                }
                dots += 1
            }
        }
        // Cuts with no dot left of them would leave a single label.
        let usable = dots > maxLabels ? maxLabels : max(0, dots - 1)
        return (p, usable)
    }

    static func cut<T>(_ c: (T, T, T, T), _ k: Int) -> T {
        switch k { case 1: return c.0; case 2: return c.1; case 3: return c.2; default: return c.3 }
    }

    /// Records a query and learns from a with-and-without pairing. `judges` says whether a head would be
    /// judged on its own (has a registered domain under a listed top-level domain).
    mutating func observe(_ name: UnsafeRawBufferPointer, client: IPAddress, at t: Timestamp, judges: (Int) -> Bool) -> Bool {
        guard learning else { return false }
        let now = t.nanoseconds
        let (c, count) = DNSSearchSuffixes.cuts(name)
        let (heads, wholeHash) = DNSSearchSuffixes.prefixHashes(name, c, count)
        var learnedNow = false
        let mask = DNSSearchSuffixes.tableSize - 1
        for k in stride(from: 1, through: count, by: 1) {
            let end = DNSSearchSuffixes.cut(c, k)
            let head = DNSSearchSuffixes.key(client, DNSSearchSuffixes.cut(heads, k))
            let tail = DNSSearchSuffixes.hash(name, end + 1, name.count)
            // The name without this tail was asked recently: the tail was appended.
            let p = plain[Int(head & UInt64(mask))]
            if p.key == head, p.time != .min, now >= p.time, now &- p.time <= window, judges(end) { learnedNow = credit(tail, client: client) || learnedNow }
            suffixed[Int(head & UInt64(mask))] = Entry(key: head, time: now, suffix: tail)
        }
        let whole = DNSSearchSuffixes.key(client, wholeHash)
        // This name was asked recently with a tail appended.
        let s = suffixed[Int(whole & UInt64(mask))]
        if s.key == whole, s.time != .min, now >= s.time, now &- s.time <= window, judges(name.count) { learnedNow = credit(s.suffix, client: client) || learnedNow }
        plain[Int(whole & UInt64(mask))] = Entry(key: whole, time: now, suffix: 0)
        return learnedNow
    }

    /// One more pairing for `suffix` from `client`; true when it became learned.
    mutating func credit(_ suffix: UInt64, client: IPAddress) -> Bool {
        guard !contains(suffix, client: client) else { return false }
        let key = DNSSearchSuffixes.key(client, suffix)
        guard learned.count < DNSSearchSuffixes.maxLearned else { learnedDropped &+= 1; return false }
        if candidates.count >= DNSSearchSuffixes.maxCandidates && candidates[key] == nil {
            candidates.removeAll(keepingCapacity: true)
            candidatesCleared &+= 1
        }
        let n = (candidates[key] ?? 0) + 1
        guard n >= evidence else { candidates[key] = n; return false }
        candidates[key] = nil
        learned.insert(key)
        return true
    }
}
