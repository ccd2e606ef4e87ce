import ConfigKit
import PacketCore

/// The formats an indicator file can be in.
public enum IndicatorFormat: String, Sendable {
    /// One value per line, `#` comments (a comment after a value becomes its description).
    case list
    /// A header row naming at least `type` and `value`; optional `source`, `confidence`, `expires`,
    /// `description`, `reference`.
    case csv
    /// A STIX 2.1 bundle of `indicator` objects with simple comparison patterns.
    case stix
    /// A MISP JSON export (`Event` with `Attribute`s, or `response: [{Event}]`).
    case misp
}

/// What one file yielded.
public struct IndicatorFile: Sendable {
    public var path: String
    public var format: IndicatorFormat
    public var indicators: [Indicator]
    /// Entries that are well-formed but not usable for matching (revoked, AND patterns, MISP
    /// attributes not marked for detection, attribute types we cannot see on the wire), with a reason.
    public var skipped: [String: Int]
}

/// Reads indicator files. Every problem is reported as `file:line:column: message` (ConfigKit's
/// `ConfigIssue`), all of them at once, and a file with any problem yields nothing: the caller keeps the
/// set it had.
public enum IndicatorLoader {
    /// Loads a file, choosing the format from its name and (for JSON) its content.
    public static func load(path: String, defaultSource: String? = nil) throws(ConfigIssues) -> IndicatorFile {
        guard let text = YAMLDocument.readTextFile(path) else {
            throw ConfigIssues([ConfigIssue(file: path, line: 0, column: 0, message: "cannot read indicator file")])
        }
        return try parse(text, path: path, defaultSource: defaultSource)
    }

    public static func parse(_ text: String, path: String, defaultSource: String? = nil) throws(ConfigIssues) -> IndicatorFile {
        let base = path.split(separator: "/").last.map(String.init) ?? path
        let source = defaultSource ?? base
        let lower = base.lowercased()
        let format: IndicatorFormat
        if lower.hasSuffix(".csv") { format = .csv }
        else if lower.hasSuffix(".json") {
            let head = text.prefix(4096)
            format = head.contains("\"Event\"") || head.contains("\"response\"") || head.contains("\"Attribute\"") ? .misp : .stix
        } else { format = .list }
        var file = IndicatorFile(path: path, format: format, indicators: [], skipped: [:])
        var issues: [ConfigIssue] = []
        switch format {
        case .list: parseList(text, path: path, fileName: lower, source: source, into: &file, issues: &issues)
        case .csv: parseCSV(text, path: path, source: source, into: &file, issues: &issues)
        case .stix: STIXParser.parse(text, path: path, source: defaultSource, into: &file, issues: &issues)
        case .misp: MISPParser.parse(text, path: path, source: defaultSource, into: &file, issues: &issues)
        }
        if !issues.isEmpty { throw ConfigIssues(issues) }
        return file
    }

    // MARK: Plain lists

    /// Guesses the type of a bare value; the file name breaks ties a value alone cannot (a 32-hex value
    /// is JA3 in `ja3.txt` and MD5 elsewhere; a name is an SNI in `sni.txt` and a domain elsewhere).
    public static func guessType(_ v: String, fileName: String) -> IndicatorType? {
        if v.contains("://") { return .url }
        if IPAddress(v) != nil { return .ip }
        if let slash = v.firstIndex(of: "/") {
            // Address characters before the slash: a network (valid or not, reported as one).
            if v[..<slash].allSatisfy({ $0.isHexDigit || $0 == "." || $0 == ":" }) { return .cidr }
            return .url
        }
        let isHex = v.utf8.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) || ($0 >= 65 && $0 <= 70) }
        if isHex {
            switch v.utf8.count {
            case 32: return fileName.contains("ja3") ? .ja3 : .md5
            case 40: return .sha1
            case 64: return .sha256
            default: break
            }
        }
        if v.split(separator: "_", omittingEmptySubsequences: false).count == 3, case .success = Indicator.normalise(v, as: .ja4) { return .ja4 }
        if Indicator.normaliseDomain(v) != nil { return fileName.contains("sni") ? .sni : .domain }
        return nil
    }

    static func parseList(_ text: String, path: String, fileName: String, source: String, into file: inout IndicatorFile, issues: inout [ConfigIssue]) {
        // Byte-level scan: lists are the format million-entry feeds come in.
        var text = text
        text.withUTF8 { u in
            var lineNo = 0
            var start = 0
            let n = u.count
            while start < n {
                var end = start
                while end < n, u[end] != 10 { end += 1 }
                lineNo += 1
                defer { start = end + 1 }
                var a = start, b = end
                var comment: String?
                var h = a
                while h < b, u[h] != 35 { h += 1 }
                if h < b {
                    var ca = h + 1, cb = b
                    while ca < cb, u[ca] == 32 || u[ca] == 9 { ca += 1 }
                    while cb > ca, u[cb - 1] == 32 || u[cb - 1] == 9 || u[cb - 1] == 13 { cb -= 1 }
                    if cb > ca { comment = String(decoding: UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(u)[ca..<cb]), as: UTF8.self) }
                    b = h
                }
                while a < b, u[a] == 32 || u[a] == 9 { a += 1 }
                while b > a, u[b - 1] == 32 || u[b - 1] == 9 || u[b - 1] == 13 { b -= 1 }
                if a == b { continue }
                let slice = UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(u)[a..<b])
                // The common shapes of big feeds first, straight from the bytes.
                if let fast = FastValue.classify(slice, fileName: fileName) {
                    file.indicators.append(Indicator(type: fast.type, value: fast.value, source: source, description: comment, file: path, line: lineNo))
                    continue
                }
                var value = String(decoding: slice, as: UTF8.self)
                // An explicit type may prefix the value: `sni:c2.example.net`, `ja3:…`.
                var type: IndicatorType?
                if let colon = value.firstIndex(of: ":"), value.range(of: "://") == nil, let t = IndicatorType(name: String(value[..<colon])) {
                    type = t
                    value = String(value[value.index(after: colon)...]).trimmingASCIIWhitespace()
                }
                guard let t = type ?? guessType(value, fileName: fileName) else {
                    issues.append(ConfigIssue(file: path, line: lineNo, column: 1, message: "cannot tell the indicator type of '\(value)' (prefix it, e.g. domain:NAME)"))
                    continue
                }
                switch Indicator.normalise(value, as: t) {
                case .success(let v):
                    file.indicators.append(Indicator(type: t, value: v, source: source, description: comment, file: path, line: lineNo))
                case .failure(let e):
                    issues.append(ConfigIssue(file: path, line: lineNo, column: 1, message: e.description))
                }
            }
        }
    }

    // MARK: CSV

    /// RFC 4180 fields of one line (quotes, doubled quotes inside quotes); nil when a quote is unbalanced.
    static func csvFields(_ line: Substring) -> [String]? {
        var fields: [String] = []
        var cur: [UInt8] = []
        var inQuotes = false
        let u = Array(line.utf8)
        var i = 0
        while i < u.count {
            let c = u[i]
            if inQuotes {
                if c == 34 {
                    if i + 1 < u.count, u[i + 1] == 34 { cur.append(34); i += 1 } else { inQuotes = false }
                } else { cur.append(c) }
            } else if c == 34 { inQuotes = true }
            else if c == 44 { fields.append(String(decoding: cur, as: UTF8.self).trimmingASCIIWhitespace()); cur = [] }
            else { cur.append(c) }
            i += 1
        }
        if inQuotes { return nil }
        fields.append(String(decoding: cur, as: UTF8.self).trimmingASCIIWhitespace())
        return fields
    }

    static func parseCSV(_ text: String, path: String, source: String, into file: inout IndicatorFile, issues: inout [ConfigIssue]) {
        var lineNo = 0
        var columns: [String: Int]?
        let known: Set<String> = ["type", "value", "source", "confidence", "expires", "description", "reference"]
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNo += 1
            let trimmed = rawLine.trimmingASCIIWhitespace()
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            guard let fields = csvFields(Substring(trimmed)) else {
                issues.append(ConfigIssue(file: path, line: lineNo, column: 1, message: "unbalanced quote"))
                continue
            }
            guard let cols = columns else {
                var c: [String: Int] = [:]
                for (i, f) in fields.enumerated() {
                    let name = f.lowercased()
                    if known.contains(name) { c[name] = i }
                }
                if c["type"] == nil || c["value"] == nil {
                    issues.append(ConfigIssue(file: path, line: lineNo, column: 1, message: "the header row must name the columns 'type' and 'value' (optional: source, confidence, expires, description, reference)"))
                    return
                }
                columns = c
                continue
            }
            func field(_ name: String) -> String? {
                guard let i = cols[name], i < fields.count, !fields[i].isEmpty else { return nil }
                return fields[i]
            }
            guard let typeName = field("type"), let t = IndicatorType(name: typeName) else {
                issues.append(ConfigIssue(file: path, line: lineNo, column: 1, message: "unknown or missing type '\(field("type") ?? "")' (one of \(IndicatorType.allCases.map(\.rawValue).joined(separator: ", ")))"))
                continue
            }
            guard let raw = field("value") else {
                issues.append(ConfigIssue(file: path, line: lineNo, column: 1, message: "missing value"))
                continue
            }
            let value: String
            switch Indicator.normalise(raw, as: t == .ip && raw.contains("/") ? .cidr : t) {
            case .success(let v): value = v
            case .failure(let e): issues.append(ConfigIssue(file: path, line: lineNo, column: 1, message: e.description)); continue
            }
            var ind = Indicator(type: t == .ip && raw.contains("/") ? .cidr : t, value: value, source: field("source") ?? source,
                                description: field("description"), reference: field("reference"), file: path, line: lineNo)
            if let c = field("confidence") {
                guard let n = parseConfidence(c) else {
                    issues.append(ConfigIssue(file: path, line: lineNo, column: 1, message: "confidence '\(c)' is not 0–100 or low/medium/high"))
                    continue
                }
                ind.confidence = n
            }
            if let e = field("expires") {
                guard let ts = DateParser.timestamp(e) else {
                    issues.append(ConfigIssue(file: path, line: lineNo, column: 1, message: "expires '\(e)' is not a date (2026-12-31, 2026-12-31T23:59:59Z or Unix seconds)"))
                    continue
                }
                ind.expires = ts
            }
            file.indicators.append(ind)
        }
        if columns == nil && issues.isEmpty {
            issues.append(ConfigIssue(file: path, line: 1, column: 1, message: "no header row (type,value,…)"))
        }
    }

    /// 0–100, or the words STIX and feeds use.
    public static func parseConfidence(_ s: String) -> Int? {
        if let n = Int(s), (0...100).contains(n) { return n }
        switch s.lowercased() {
        case "none": return 0
        case "low": return 15
        case "medium", "med": return 50
        case "high": return 85
        default: return nil
        }
    }
}

/// ISO 8601 / RFC 3339 dates and times (or Unix seconds) to packet-clock timestamps.
public enum DateParser {
    public static func timestamp(_ s: String) -> Timestamp? {
        let t = s.trimmingASCIIWhitespace()
        if let n = Int64(t) { return saturating(seconds: n, nanoseconds: 0) }
        let u = Array(t.utf8)
        func num(_ a: Int, _ n: Int) -> Int64? {
            guard a + n <= u.count else { return nil }
            var v: Int64 = 0
            for i in a..<(a + n) {
                guard u[i] >= 48, u[i] <= 57 else { return nil }
                v = v * 10 + Int64(u[i] - 48)
            }
            return v
        }
        guard u.count >= 10, u[4] == 45, u[7] == 45, let y = num(0, 4), let m = num(5, 2), let d = num(8, 2),
              (1...12).contains(m), (1...31).contains(d) else { return nil }
        var secs = daysFromCivil(y, m, d) * 86400
        var nanos: Int64 = 0
        var i = 10
        if i < u.count {
            guard u[i] == 84 || u[i] == 116 || u[i] == 32, let hh = num(i + 1, 2), u.count > i + 3, u[i + 3] == 58, let mm = num(i + 4, 2),
                  hh < 24, mm < 60 else { return nil }
            secs += hh * 3600 + mm * 60
            i += 6
            if i < u.count, u[i] == 58 {
                guard let ss = num(i + 1, 2), ss <= 60 else { return nil }
                secs += ss
                i += 3
            }
            if i < u.count, u[i] == 46 {
                i += 1
                var scale: Int64 = 100_000_000
                while i < u.count, u[i] >= 48, u[i] <= 57 { nanos += Int64(u[i] - 48) * scale; scale /= 10; i += 1 }
            }
            if i < u.count {
                if u[i] == 90 || u[i] == 122 { i += 1 }
                else if u[i] == 43 || u[i] == 45 {
                    guard let oh = num(i + 1, 2) else { return nil }
                    var om: Int64 = 0
                    var j = i + 3
                    if j < u.count, u[j] == 58 { j += 1 }
                    if let x = num(j, 2) { om = x; j += 2 }
                    let off = oh * 3600 + om * 60
                    secs += u[i] == 43 ? -off : off
                    i = j
                } else { return nil }
            }
            if i != u.count { return nil }
        }
        return saturating(seconds: secs, nanoseconds: nanos)
    }

    /// The packet clock spans 1677 to 2262; a feed's dates need not (`9999-12-31` for "never expires",
    /// `0001-01-01` for "always"). Beyond the span a time saturates at its end, which keeps what the date
    /// means, instead of trapping (or, in seconds, wrapping to an unrelated time).
    static func saturating(seconds: Int64, nanoseconds: Int64) -> Timestamp {
        let (scaled, o1) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        let (sum, o2) = scaled.addingReportingOverflow(nanoseconds)
        if o1 || o2 { return Timestamp(nanoseconds: seconds < 0 ? .min : .max) }
        return Timestamp(nanoseconds: sum)
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
    static func daysFromCivil(_ y0: Int64, _ m: Int64, _ d: Int64) -> Int64 {
        let y = m <= 2 ? y0 - 1 : y0
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146097 + doe - 719468
    }
}

/// Byte-level recognisers for the shapes that make up nearly all of a large feed (dotted-quad IPv4
/// addresses and networks, plain lower-case domain names, hex digests), so loading a million entries
/// does not go through general string parsing per line. Anything else returns nil and takes the
/// general path, which also produces the error messages.
enum FastValue {
    /// Dotted quad at `b[i...]` up to `end`; returns the address and the index after it.
    static func ipv4(_ b: UnsafeRawBufferPointer, _ start: Int, _ end: Int) -> (UInt32, Int)? {
        var v: UInt32 = 0
        var i = start
        for part in 0..<4 {
            var o: UInt32 = 0
            let s = i
            while i < end, b[i] >= 48, b[i] <= 57, i - s < 3 { o = o * 10 + UInt32(b[i] - 48); i += 1 }
            guard i > s, o <= 255, !(i - s > 1 && b[s] == 48) else { return nil }
            v = v << 8 | o
            if part < 3 { guard i < end, b[i] == 46 else { return nil }; i += 1 }
        }
        return (v, i)
    }

    static func classify(_ b: UnsafeRawBufferPointer, fileName: String) -> (type: IndicatorType, value: String)? {
        let n = b.count
        guard n > 0 else { return nil }
        if b[0] >= 48, b[0] <= 57, let (v, i) = ipv4(b, 0, n) {
            if i == n { return (.ip, IPAddress(ipv4: v).description) }
            if b[i] == 47, i + 1 < n, n - i <= 3 {
                var len = 0
                for k in (i + 1)..<n { guard b[k] >= 48, b[k] <= 57 else { return nil }; len = len * 10 + Int(b[k] - 48) }
                guard len <= 32 else { return nil }
                return (.cidr, IPNetwork(address: IPAddress(ipv4: v), prefixLength: len).description)
            }
            return nil
        }
        var hex = true, letter = false, nameChars = true
        for c in b {
            let digit = c >= 48 && c <= 57
            let lowerHex = c >= 97 && c <= 102
            let lower = c >= 97 && c <= 122
            if !(digit || lowerHex) { hex = false }
            if lower { letter = true }
            if !(digit || lower || c == 45 || c == 46 || c == 95) { nameChars = false; break }
        }
        guard nameChars else { return nil }
        if hex {
            switch n {
            case 32: return (fileName.contains("ja3") ? .ja3 : .md5, String(decoding: b, as: UTF8.self))
            case 40: return (.sha1, String(decoding: b, as: UTF8.self))
            case 64: return (.sha256, String(decoding: b, as: UTF8.self))
            default: break
            }
        }
        // A lower-case name with a dot, no empty label, not starting or ending with a dot.
        guard letter, n <= 253, b[0] != 46, b[n - 1] != 46, !fileName.contains("sni") else { return nil }
        var dot = false
        for k in 0..<n where b[k] == 46 {
            dot = true
            if k + 1 < n, b[k + 1] == 46 { return nil }
        }
        guard dot else { return nil }
        return (.domain, String(decoding: b, as: UTF8.self))
    }
}
