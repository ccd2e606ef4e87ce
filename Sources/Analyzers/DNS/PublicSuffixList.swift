#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The Public Suffix List (https://publicsuffix.org/list/): which part of a name is the public suffix
/// (`co.uk`, `github.io`) and which is the registered domain (`example.co.uk`) an organisation owns.
///
/// Implements the list's algorithm exactly: normal rules, wildcard rules (`*.ck`), exception rules
/// (`!www.ck`, which win over everything), the implicit `*` rule for unlisted top-level domains, and
/// both the ICANN and PRIVATE sections (the latter can be left out). Rules written in Unicode are
/// converted to their ASCII (punycode `xn--`) form at load, since names on the wire are in that form.
///
/// Lookups allocate nothing: each suffix of the name is hashed from the right, one label at a time,
/// and the hash finds candidate rules whose bytes are then compared. The list is immutable after
/// load and shared read-only by every pipeline worker.
public final class PublicSuffixList: @unchecked Sendable {
    /// Where Debian's `publicsuffix` package installs the list.
    public static let systemPath = "/usr/share/publicsuffix/public_suffix_list.dat"

    struct Rule {
        var offset: Int32
        var length: Int32
        var flags: UInt8
        var next: Int32
    }
    static let normal: UInt8 = 1, wildcard: UInt8 = 2, exception: UInt8 = 4

    /// Rule texts (the part after `*.` / `!`), concatenated.
    let text: [UInt8]
    let rules: [Rule]
    /// Hash of a rule's text → first rule index in a chain.
    let index: [UInt64: Int32]
    public let ruleCount: Int

    public enum LoadError: Error, CustomStringConvertible {
        case unreadable(String, String)
        case empty(String)
        public var description: String {
            switch self {
            case let .unreadable(p, why): return "cannot read public suffix list \(p): \(why)"
            case let .empty(p): return "public suffix list \(p) holds no rules"
            }
        }
    }

    /// Parses the list's text format: one rule per line, `//` comments, the first whitespace ends a rule.
    public convenience init(text: String, includePrivate: Bool = true) {
        self.init(bytes: Array(text.utf8), includePrivate: includePrivate)
    }

    /// Parses the list from its UTF-8 bytes. Works on bytes (the list is loaded at every start, so this
    /// stays in the low milliseconds); only the few Unicode rules take the String path for punycode.
    public init(bytes: [UInt8], includePrivate: Bool = true) {
        var text: [UInt8] = []
        text.reserveCapacity(bytes.count / 2)
        var rules: [Rule] = []
        rules.reserveCapacity(16384)
        var index: [UInt64: Int32] = [:]
        index.reserveCapacity(16384)
        var inPrivate = false
        var rule: [UInt8] = []
        rule.reserveCapacity(256)
        let privateBegin = Array("===BEGIN PRIVATE DOMAINS===".utf8), privateEnd = Array("===END PRIVATE DOMAINS===".utf8)
        func contains(_ hay: ArraySlice<UInt8>, _ needle: [UInt8]) -> Bool {
            guard hay.count >= needle.count else { return false }
            var i = hay.startIndex
            while i <= hay.endIndex - needle.count {
                if hay[i..<(i + needle.count)].elementsEqual(needle) { return true }
                i += 1
            }
            return false
        }
        var lineStart = 0
        let n = bytes.count
        while lineStart < n {
            var lineEnd = lineStart
            while lineEnd < n && bytes[lineEnd] != 0x0A && bytes[lineEnd] != 0x0D { lineEnd += 1 }
            defer { lineStart = lineEnd + 1 }
            let line = bytes[lineStart..<lineEnd]
            if line.count >= 2 && line[lineStart] == 0x2F && line[lineStart + 1] == 0x2F {
                if contains(line, privateBegin) { inPrivate = true }
                if contains(line, privateEnd) { inPrivate = false }
                continue
            }
            var e = lineStart
            while e < lineEnd && bytes[e] != 0x20 && bytes[e] != 0x09 { e += 1 }
            if e == lineStart || (inPrivate && !includePrivate) { continue }
            var s = lineStart
            var flags = PublicSuffixList.normal
            if bytes[s] == 0x21 { flags = PublicSuffixList.exception; s += 1 }
            else if e - s >= 2 && bytes[s] == 0x2A && bytes[s + 1] == 0x2E { flags = PublicSuffixList.wildcard; s += 2 }
            guard s < e else { continue }
            rule.removeAll(keepingCapacity: true)
            var ascii = true
            for i in s..<e {
                let b = bytes[i]
                if b >= 0x80 { ascii = false; break }
                rule.append(b >= 0x41 && b <= 0x5A ? b | 0x20 : b)
            }
            if !ascii {
                guard let converted = PublicSuffixList.asciiForm(String(decoding: bytes[s..<e], as: UTF8.self)), !converted.isEmpty else { continue }
                rule = converted
            }
            let h = rule.withUnsafeBytes { PublicSuffixList.hashSuffix($0, from: 0) }
            // Merge flags with an identical rule text already present.
            var i = index[h] ?? -1
            var merged = false
            while i >= 0 {
                let r = rules[Int(i)]
                if Int(r.length) == rule.count && text[Int(r.offset)..<Int(r.offset + r.length)].elementsEqual(rule) {
                    rules[Int(i)].flags |= flags
                    merged = true
                    break
                }
                i = r.next
            }
            if merged { continue }
            rules.append(Rule(offset: Int32(text.count), length: Int32(rule.count), flags: flags, next: index[h] ?? -1))
            index[h] = Int32(rules.count - 1)
            text.append(contentsOf: rule)
        }
        self.text = text
        self.rules = rules
        self.index = index
        self.ruleCount = rules.count
    }

    /// Lower-case ASCII form of a rule; Unicode labels become `xn--` punycode. Nil if a label cannot be encoded.
    static func asciiForm(_ rule: String) -> [UInt8]? {
        var out: [UInt8] = []
        for (i, label) in rule.lowercased().split(separator: ".", omittingEmptySubsequences: false).enumerated() {
            if i > 0 { out.append(0x2E) }
            let scalars = Array(label.unicodeScalars)
            if scalars.allSatisfy({ $0.isASCII }) {
                out.append(contentsOf: label.utf8)
            } else {
                guard let p = Punycode.encode(scalars.map { $0.value }) else { return nil }
                out.append(contentsOf: Array("xn--".utf8))
                out.append(contentsOf: p)
            }
        }
        return out
    }

    /// FNV-1a over the bytes of `name[from...]` taken right to left, so a suffix one label longer
    /// continues the hash of the shorter one.
    @inlinable
    static func hashSuffix(_ name: UnsafeRawBufferPointer, from start: Int) -> UInt64 {
        extend(0xcbf2_9ce4_8422_2325, name, from: start, to: name.count)
    }

    @inlinable
    static func extend(_ seed: UInt64, _ name: UnsafeRawBufferPointer, from start: Int, to end: Int) -> UInt64 {
        var h = seed
        var i = end
        while i > start {
            i -= 1
            h = (h ^ UInt64(name[i])) &* 0x100_0000_01b3
        }
        return h
    }

    /// Flags of the rule whose text equals `name[start...]`, or 0.
    func flags(_ name: UnsafeRawBufferPointer, from start: Int, hash: UInt64) -> UInt8 {
        var i = index[hash] ?? -1
        let n = name.count - start
        while i >= 0 {
            let r = rules[Int(i)]
            if Int(r.length) == n {
                let same = text.withUnsafeBufferPointer { t -> Bool in
                    for k in 0..<n where t[Int(r.offset) + k] != name[start + k] { return false }
                    return true
                }
                if same { return r.flags }
            }
            i = r.next
        }
        return 0
    }

    /// Where the public suffix and the registered domain begin within `name` (lower-case ASCII, no trailing
    /// dot). `registered` is nil when the name is itself a public suffix. Nil for names the list cannot
    /// judge (empty, empty labels, more than 127 labels).
    public func split(_ name: UnsafeRawBufferPointer) -> (suffix: Int, registered: Int?)? {
        let n = name.count
        guard n > 0, name[0] != 0x2E, name[n - 1] != 0x2E else { return nil }
        // Label starts, right to left, kept on the stack (a name has at most 127 labels).
        return withUnsafeTemporaryAllocation(of: Int.self, capacity: 128) { starts -> (Int, Int?)? in
            var count = 0
            var i = n
            var labelEnd = n
            while i > 0 {
                i -= 1
                if name[i] == 0x2E {
                    guard i + 1 < labelEnd, count < 127 else { return nil }
                    starts[count] = i + 1
                    count += 1
                    labelEnd = i
                }
            }
            guard labelEnd > 0, count < 128 else { return nil }
            starts[count] = 0
            count += 1
            // starts[0] is the top-level label, starts[count-1] the whole name.
            var matched = 1  // the implicit "*" rule
            var h: UInt64 = 0xcbf2_9ce4_8422_2325
            var prevStart = n
            var prevFlags: UInt8 = 0
            for k in 0..<count {
                let s = starts[k]
                h = PublicSuffixList.extend(h, name, from: s, to: prevStart)
                let f = flags(name, from: s, hash: h)
                if f & PublicSuffixList.exception != 0 {
                    // The exception's public suffix is the rule minus its leftmost label.
                    let suffix = k > 0 ? starts[k - 1] : s
                    return (suffix, k > 0 ? s : nil)
                }
                if f & PublicSuffixList.normal != 0 { matched = max(matched, k + 1) }
                if k > 0 && prevFlags & PublicSuffixList.wildcard != 0 { matched = max(matched, k + 1) }
                prevFlags = f
                // Keep the "." between labels in the hashed suffix.
                prevStart = s
                if s > 0 { h = (h ^ 0x2E) &* 0x100_0000_01b3; prevStart = s - 1 }
            }
            let suffix = starts[matched - 1]
            return (suffix, matched < count ? starts[matched] : nil)
        }
    }

    /// Whether the name's top-level label has a rule of its own in the list (`com`, `uk`, `ck`), as
    /// opposed to being judged by the implicit `*` rule only (`local`, `lan`, `corp`, or a random label
    /// a tunnel sends straight to its server). `name` is lower-case ASCII without a trailing dot.
    public func listsTopLevel(of name: UnsafeRawBufferPointer) -> Bool {
        let n = name.count
        guard n > 0 else { return false }
        var s = n
        while s > 0 && name[s - 1] != 0x2E { s -= 1 }
        guard s < n else { return false }
        return flags(name, from: s, hash: PublicSuffixList.hashSuffix(name, from: s)) != 0
    }

    /// The registered domain of a name (`www.example.co.uk` → `example.co.uk`), or nil.
    public func registeredDomain(_ name: String) -> String? {
        var bytes = Array(name.lowercased().utf8)
        if bytes.last == 0x2E { bytes.removeLast() }
        return bytes.withUnsafeBytes { b in
            guard let r = split(b)?.registered else { return nil }
            return String(decoding: b[r...], as: UTF8.self)
        }
    }

    /// The public suffix of a name (`www.example.co.uk` → `co.uk`), or nil.
    public func publicSuffix(_ name: String) -> String? {
        var bytes = Array(name.lowercased().utf8)
        if bytes.last == 0x2E { bytes.removeLast() }
        return bytes.withUnsafeBytes { b in
            guard let s = split(b)?.suffix else { return nil }
            return String(decoding: b[s...], as: UTF8.self)
        }
    }
}

/// Punycode (RFC 3492) encoding of one label, for the list's Unicode rules.
enum Punycode {
    static func encode(_ input: [UInt32]) -> [UInt8]? {
        let base: UInt32 = 36, tMin: UInt32 = 1, tMax: UInt32 = 26, skew: UInt32 = 38, damp: UInt32 = 700
        var n: UInt32 = 128, delta: UInt32 = 0, bias: UInt32 = 72
        var out: [UInt8] = input.filter { $0 < 128 }.map { UInt8($0) }
        let b = UInt32(out.count)
        var h = b
        if b > 0 { out.append(0x2D) }
        func digit(_ d: UInt32) -> UInt8 { d < 26 ? UInt8(d + 97) : UInt8(d - 26 + 48) }
        func adapt(_ delta: UInt32, _ numPoints: UInt32, _ first: Bool) -> UInt32 {
            var d = first ? delta / damp : delta / 2
            d += d / numPoints
            var k: UInt32 = 0
            while d > ((base - tMin) * tMax) / 2 { d /= base - tMin; k += base }
            return k + (base - tMin + 1) * d / (d + skew)
        }
        while h < UInt32(input.count) {
            guard let m = input.filter({ $0 >= n }).min() else { return nil }
            let (mul, o1) = (m - n).multipliedReportingOverflow(by: h + 1)
            guard !o1 else { return nil }
            let (d2, o2) = delta.addingReportingOverflow(mul)
            guard !o2 else { return nil }
            delta = d2
            n = m
            for c in input {
                if c < n { delta &+= 1 }
                if c == n {
                    var q = delta
                    var k = base
                    while true {
                        let t = k <= bias ? tMin : (k >= bias + tMax ? tMax : k - bias)
                        if q < t { break }
                        out.append(digit(t + (q - t) % (base - t)))
                        q = (q - t) / (base - t)
                        k += base
                    }
                    out.append(digit(q))
                    bias = adapt(delta, h + 1, h == b)
                    delta = 0
                    h += 1
                }
            }
            delta += 1
            n += 1
        }
        return out
    }
}
