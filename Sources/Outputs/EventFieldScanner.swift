/// Reads chosen fields out of one event's JSON bytes in place: a validating RFC 8259 scanner that
/// allocates nothing per event and builds no tree.
///
/// A sink that re-shapes events (the Zeek logs) needs a dozen of an event's fifty fields. Parsing into a
/// tree (`JSONSerialization`, ThreatIntel's reader) allocates per member and costs microseconds; this walks
/// the bytes once, keeps a hash of the dotted path per depth, and records where each wanted leaf's JSON
/// token sits. Array elements share their array's path (`dns.answers.data` for every answer).
struct EventFieldScanner {
    enum Kind: UInt8 { case string, number, bool, null }

    struct Hit {
        var slot: Int
        var start: Int
        var end: Int
        var kind: Kind
    }

    static let maxDepth = 32
    /// Hits kept per event; more are counted as dropped (an event is bounded, but be explicit).
    static let maxHits = 256

    /// Path hash → slot.
    let wanted: [UInt64: Int]
    private(set) var hits: [Hit] = []
    /// Per slot, the index in `hits` of its first value (-1: absent).
    private(set) var firstHit: [Int32]
    private(set) var droppedHits = 0
    private var pathHash: [UInt64]

    init(paths: [String]) {
        var w: [UInt64: Int] = [:]
        for (i, p) in paths.enumerated() {
            var h = Self.seed
            for (n, part) in p.split(separator: ".").enumerated() {
                if n > 0 { h = Self.mix(h, 46) }
                for b in part.utf8 { h = Self.mix(h, b) }
            }
            precondition(w[h] == nil, "two wanted paths hash alike: \(p)")
            w[h] = i
        }
        wanted = w
        firstHit = Array(repeating: -1, count: paths.count)
        hits.reserveCapacity(Self.maxHits)
        pathHash = Array(repeating: 0, count: Self.maxDepth + 1)
    }

    static let seed: UInt64 = 0xcbf2_9ce4_8422_2325
    @inline(__always) static func mix(_ h: UInt64, _ b: UInt8) -> UInt64 { (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }

    /// Scans one JSON object; false (and no hits) when the bytes are not one well-formed object.
    mutating func scan(_ b: UnsafeRawBufferPointer) -> Bool {
        hits.removeAll(keepingCapacity: true)
        for k in firstHit.indices { firstHit[k] = -1 }
        droppedHits = 0
        let i = skipSpace(b, 0)
        guard i < b.count, b[i] == 123 else { return false }
        guard let end = object(b, i, depth: 0, hash: Self.seed, isRoot: true), skipSpace(b, end) == b.count else {
            hits.removeAll(keepingCapacity: true)
            for k in firstHit.indices { firstHit[k] = -1 }
            return false
        }
        return true
    }

    @inline(__always) func skipSpace(_ b: UnsafeRawBufferPointer, _ from: Int) -> Int {
        var i = from
        while i < b.count, b[i] == 32 || b[i] == 10 || b[i] == 13 || b[i] == 9 { i &+= 1 }
        return i
    }

    /// `{ … }` starting at `i`; returns the index after `}`.
    mutating func object(_ b: UnsafeRawBufferPointer, _ start: Int, depth: Int, hash: UInt64, isRoot: Bool) -> Int? {
        guard depth < Self.maxDepth else { return nil }
        var i = skipSpace(b, start + 1)
        guard i < b.count else { return nil }
        if b[i] == 125 { return i + 1 }
        while true {
            guard i < b.count, b[i] == 34, let keyEnd = string(b, i) else { return nil }
            var h = isRoot ? Self.seed : Self.mix(hash, 46)
            for k in (i + 1)..<(keyEnd - 1) { h = Self.mix(h, b[k]) }
            i = skipSpace(b, keyEnd)
            guard i < b.count, b[i] == 58 else { return nil }
            i = skipSpace(b, i + 1)
            guard let after = value(b, i, depth: depth + 1, hash: h) else { return nil }
            i = skipSpace(b, after)
            guard i < b.count else { return nil }
            if b[i] == 44 { i = skipSpace(b, i + 1); continue }
            if b[i] == 125 { return i + 1 }
            return nil
        }
    }

    mutating func array(_ b: UnsafeRawBufferPointer, _ start: Int, depth: Int, hash: UInt64) -> Int? {
        guard depth < Self.maxDepth else { return nil }
        var i = skipSpace(b, start + 1)
        guard i < b.count else { return nil }
        if b[i] == 93 { return i + 1 }
        while true {
            guard let after = value(b, i, depth: depth + 1, hash: hash) else { return nil }
            i = skipSpace(b, after)
            guard i < b.count else { return nil }
            if b[i] == 44 { i = skipSpace(b, i + 1); continue }
            if b[i] == 93 { return i + 1 }
            return nil
        }
    }

    mutating func value(_ b: UnsafeRawBufferPointer, _ i: Int, depth: Int, hash: UInt64) -> Int? {
        guard i < b.count else { return nil }
        let c = b[i]
        let end: Int
        let kind: Kind
        switch c {
        case 123: return object(b, i, depth: depth, hash: hash, isRoot: false)
        case 91: return array(b, i, depth: depth, hash: hash)
        case 34:
            guard let e = string(b, i) else { return nil }
            end = e; kind = .string
        case 116: guard literal(b, i, "true") else { return nil }; end = i + 4; kind = .bool
        case 102: guard literal(b, i, "false") else { return nil }; end = i + 5; kind = .bool
        case 110: guard literal(b, i, "null") else { return nil }; end = i + 4; kind = .null
        default:
            guard let e = number(b, i) else { return nil }
            end = e; kind = .number
        }
        if let slot = wanted[hash] {
            if hits.count < Self.maxHits {
                if firstHit[slot] < 0 { firstHit[slot] = Int32(hits.count) }
                hits.append(Hit(slot: slot, start: i, end: end, kind: kind))
            } else {
                droppedHits &+= 1
            }
        }
        return end
    }

    /// A string token from its opening quote; returns the index after the closing quote.
    func string(_ b: UnsafeRawBufferPointer, _ start: Int) -> Int? {
        var i = start + 1
        while i < b.count {
            let c = b[i]
            if c == 34 { return i + 1 }
            if c == 92 {
                guard i + 1 < b.count else { return nil }
                let e = b[i + 1]
                if e == 117 {
                    guard i + 5 < b.count else { return nil }
                    for k in (i + 2)...(i + 5) where EventFieldScanner.hexValue(b[k]) == nil { return nil }
                    i += 6
                    continue
                }
                guard e == 34 || e == 92 || e == 47 || e == 98 || e == 102 || e == 110 || e == 114 || e == 116 else { return nil }
                i += 2
                continue
            }
            if c < 0x20 { return nil }
            i += 1
        }
        return nil
    }

    func number(_ b: UnsafeRawBufferPointer, _ start: Int) -> Int? {
        var i = start
        if i < b.count, b[i] == 45 { i += 1 }
        let intStart = i
        while i < b.count, b[i] >= 48, b[i] <= 57 { i += 1 }
        guard i > intStart, b[intStart] != 48 || i == intStart + 1 else { return nil }
        if i < b.count, b[i] == 46 {
            i += 1
            let f = i
            while i < b.count, b[i] >= 48, b[i] <= 57 { i += 1 }
            guard i > f else { return nil }
        }
        if i < b.count, b[i] == 101 || b[i] == 69 {
            i += 1
            if i < b.count, b[i] == 43 || b[i] == 45 { i += 1 }
            let e = i
            while i < b.count, b[i] >= 48, b[i] <= 57 { i += 1 }
            guard i > e else { return nil }
        }
        return i
    }

    func literal(_ b: UnsafeRawBufferPointer, _ i: Int, _ text: StaticString) -> Bool {
        let n = text.utf8CodeUnitCount
        guard i + n <= b.count else { return false }
        let p = text.utf8Start
        for k in 0..<n where b[i + k] != p[k] { return false }
        return true
    }

    static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case 48...57: return c - 48
        case 65...70: return c - 55
        case 97...102: return c - 87
        default: return nil
        }
    }
}
