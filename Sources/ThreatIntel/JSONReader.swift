import ConfigKit
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A JSON value and the line and column it starts at.
///
/// Indicator feeds are JSON (STIX bundles, MISP exports) and every indicator keeps the line it came from
/// (its `origin` in alerts), and every problem is reported at its line: a general JSON parser returns no
/// positions, so this reader keeps them. Members the caller does not name are checked for syntax and
/// dropped, so a 200,000-attribute MISP export does not hold its UUIDs, timestamps and tags in memory.
struct JSONNode {
    enum Kind {
        case object([(key: String, value: JSONNode)])
        case array([JSONNode])
        case string(String)
        /// The number's text as written (`80`, `1e3`), as feeds use numbers for confidences and flags.
        case number(String)
        case bool(Bool)
        case null
    }

    var kind: Kind
    var line: Int
    var column: Int

    var isMapping: Bool { if case .object = kind { return true } else { return false } }

    /// A member of an object by key (first match).
    func member(_ key: String) -> JSONNode? {
        guard case .object(let members) = kind else { return nil }
        return members.first(where: { $0.key == key })?.value
    }

    /// An array's elements.
    var items: [JSONNode]? { if case .array(let a) = kind { return a } else { return nil } }

    /// A scalar's text (`true`/`false` for booleans), nil for null, objects and arrays.
    var text: String? {
        switch kind {
        case .string(let s), .number(let s): return s
        case .bool(let b): return b ? "true" : "false"
        case .object, .array, .null: return nil
        }
    }

    func issue(_ message: String, file: String) -> ConfigIssue {
        ConfigIssue(file: file, line: line, column: column, message: message)
    }
}

/// RFC 8259 JSON over UTF-8 bytes, with positions. Nesting is bounded (a hostile file cannot exhaust
/// the stack); any syntax error is reported at its line and column. One leniency: raw control
/// characters other than line breaks are accepted inside strings (they cannot move a position).
struct JSONReader {
    static let maxDepth = 128

    /// Parses `text`, keeping only the object members named in `keeping` (all of them when nil).
    static func parse(_ text: String, file: String, keeping: Set<String>? = nil) throws(ConfigIssue) -> JSONNode {
        var text = text
        let result: Result<JSONNode, ConfigIssue> = text.withUTF8 { u in
            var r = JSONReader(bytes: UnsafeRawBufferPointer(u), file: file, keeping: keeping)
            do throws(ConfigIssue) {
                let v = try r.value(depth: 0, keep: true)
                r.skipSpace()
                if r.i < r.bytes.count { throw r.fail("unexpected characters after the top-level value") }
                return .success(v)
            } catch { return .failure(error) }
        }
        return try result.get()
    }

    let bytes: UnsafeRawBufferPointer
    let file: String
    let keeping: Set<String>?
    var i = 0
    var line = 1
    var lineStart = 0

    init(bytes: UnsafeRawBufferPointer, file: String, keeping: Set<String>?) {
        self.bytes = bytes
        self.file = file
        self.keeping = keeping
    }

    func fail(_ message: String) -> ConfigIssue {
        ConfigIssue(file: file, line: line, column: i - lineStart + 1, message: "invalid JSON: \(message)")
    }

    mutating func skipSpace() {
        while i < bytes.count {
            switch bytes[i] {
            case 0x20, 0x09, 0x0d: i += 1
            case 0x0a: i += 1; line += 1; lineStart = i
            default: return
            }
        }
    }

    /// The value at `i`; with `keep == false` it is checked and skipped (`.null` is returned).
    mutating func value(depth: Int, keep: Bool) throws(ConfigIssue) -> JSONNode {
        skipSpace()
        guard i < bytes.count else { throw fail("unexpected end of file") }
        let atLine = line, atColumn = i - lineStart + 1
        switch bytes[i] {
        case 0x7b: // {
            guard depth < Self.maxDepth else { throw fail("nested deeper than \(Self.maxDepth) levels") }
            i += 1
            var members: [(key: String, value: JSONNode)] = []
            skipSpace()
            if i < bytes.count, bytes[i] == 0x7d { i += 1; return JSONNode(kind: keep ? .object(members) : .null, line: atLine, column: atColumn) }
            while true {
                skipSpace()
                guard i < bytes.count, bytes[i] == 0x22 else { throw fail("expected a quoted member name") }
                let key = try memberName(wanted: keep)
                skipSpace()
                guard i < bytes.count, bytes[i] == 0x3a else { throw fail("expected ':' after a member name") }
                i += 1
                let v = try value(depth: depth + 1, keep: key != nil)
                if let key { members.append((key, v)) }
                skipSpace()
                guard i < bytes.count else { throw fail("unterminated object") }
                if bytes[i] == 0x2c { i += 1; continue }
                if bytes[i] == 0x7d { i += 1; break }
                throw fail("expected ',' or '}'")
            }
            return JSONNode(kind: keep ? .object(members) : .null, line: atLine, column: atColumn)
        case 0x5b: // [
            guard depth < Self.maxDepth else { throw fail("nested deeper than \(Self.maxDepth) levels") }
            i += 1
            var elements: [JSONNode] = []
            skipSpace()
            if i < bytes.count, bytes[i] == 0x5d { i += 1; return JSONNode(kind: keep ? .array(elements) : .null, line: atLine, column: atColumn) }
            while true {
                let v = try value(depth: depth + 1, keep: keep)
                if keep { elements.append(v) }
                skipSpace()
                guard i < bytes.count else { throw fail("unterminated array") }
                if bytes[i] == 0x2c { i += 1; continue }
                if bytes[i] == 0x5d { i += 1; break }
                throw fail("expected ',' or ']'")
            }
            return JSONNode(kind: keep ? .array(elements) : .null, line: atLine, column: atColumn)
        case 0x22:
            let text = try string(keep: keep)
            return JSONNode(kind: keep ? .string(text) : .null, line: atLine, column: atColumn)
        case 0x74: try literal("true"); return JSONNode(kind: keep ? .bool(true) : .null, line: atLine, column: atColumn)
        case 0x66: try literal("false"); return JSONNode(kind: keep ? .bool(false) : .null, line: atLine, column: atColumn)
        case 0x6e: try literal("null"); return JSONNode(kind: .null, line: atLine, column: atColumn)
        case 0x2d, 0x30...0x39:
            let start = i
            try number()
            guard keep else { return JSONNode(kind: .null, line: atLine, column: atColumn) }
            return JSONNode(kind: .number(String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<i]), as: UTF8.self)), line: atLine, column: atColumn)
        default:
            throw fail("unexpected character '\(Unicode.Scalar(bytes[i]))'")
        }
    }

    mutating func literal(_ word: StaticString) throws(ConfigIssue) {
        let n = word.utf8CodeUnitCount
        guard bytes.count - i >= n else { throw fail("unexpected end of file") }
        for k in 0..<n where bytes[i + k] != word.utf8Start[k] { throw fail("unexpected word (expected \(word))") }
        i += n
    }

    func isDigit(_ k: Int) -> Bool { k < bytes.count && bytes[k] >= 0x30 && bytes[k] <= 0x39 }

    mutating func number() throws(ConfigIssue) {
        if bytes[i] == 0x2d { i += 1 }
        guard isDigit(i) else { throw fail("invalid number") }
        if bytes[i] == 0x30 { i += 1 } else { while isDigit(i) { i += 1 } }
        if i < bytes.count, bytes[i] == 0x2e {
            i += 1
            guard isDigit(i) else { throw fail("invalid number") }
            while isDigit(i) { i += 1 }
        }
        if i < bytes.count, bytes[i] == 0x65 || bytes[i] == 0x45 {
            i += 1
            if i < bytes.count, bytes[i] == 0x2b || bytes[i] == 0x2d { i += 1 }
            guard isDigit(i) else { throw fail("invalid number") }
            while isDigit(i) { i += 1 }
        }
    }

    /// The member name starting at the quote at `i` when it is `wanted` and kept, else nil (skipped).
    mutating func memberName(wanted: Bool) throws(ConfigIssue) -> String? {
        if let end = plainStringEnd() {
            let name = UnsafeRawBufferPointer(rebasing: bytes[(i + 1)..<end])
            i = end + 1
            guard wanted else { return nil }
            let key = String(decoding: name, as: UTF8.self)
            if let keeping, !keeping.contains(key) { return nil }
            return key
        }
        let name = try string(keep: wanted)
        guard wanted, keeping?.contains(name) ?? true else { return nil }
        return name
    }

    /// For the string whose opening quote is at `i`: the index of its closing quote when the string has
    /// no escape and no line break (nearly every string of a feed), else nil. The search runs in libc
    /// (memchr), so long values and skipped members cost little even in debug builds.
    func plainStringEnd() -> Int? {
        let start = i + 1
        guard start < bytes.count, let base = bytes.baseAddress,
              let q = memchr(base + start, 0x22, bytes.count - start) else { return nil }
        let end = base.distance(to: UnsafeRawPointer(q))
        let n = end - start
        if n == 0 { return end }
        if memchr(base + start, 0x5c, n) != nil || memchr(base + start, 0x0a, n) != nil || memchr(base + start, 0x0d, n) != nil { return nil }
        return end
    }

    /// The string starting at the quote at `i`, unescaped; "" when not kept.
    mutating func string(keep: Bool) throws(ConfigIssue) -> String {
        if let end = plainStringEnd() {
            let start = i + 1
            i = end + 1
            return keep ? String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<end]), as: UTF8.self) : ""
        }
        i += 1
        // Escapes or a line break: byte by byte.
        var out: [UInt8] = []
        while i < bytes.count {
            let c = bytes[i]
            if c == 0x22 { i += 1; return keep ? String(decoding: out, as: UTF8.self) : "" }
            if c == 0x0a || c == 0x0d { throw fail("line break in a string (it must be escaped as \\n)") }
            guard c == 0x5c else { if keep { out.append(c) }; i += 1; continue }
            guard i + 1 < bytes.count else { break }
            let escape = i
            let e = bytes[i + 1]
            i += 2
            let plain: UInt8
            switch e {
            case 0x22, 0x5c, 0x2f: plain = e
            case 0x62: plain = 0x08
            case 0x66: plain = 0x0c
            case 0x6e: plain = 0x0a
            case 0x72: plain = 0x0d
            case 0x74: plain = 0x09
            case 0x75:
                guard let u = hex4() else { i = escape; throw fail("invalid \\u escape") }
                var scalar = Unicode.Scalar(u)
                if (0xd800...0xdbff).contains(u), bytes.count - i >= 6, bytes[i] == 0x5c, bytes[i + 1] == 0x75 {
                    let save = i
                    i += 2
                    if let low = hex4(), (0xdc00...0xdfff).contains(low) {
                        scalar = Unicode.Scalar(0x10000 + ((UInt32(u) - 0xd800) << 10) + (UInt32(low) - 0xdc00))
                    } else { i = save }
                }
                // A lone surrogate becomes U+FFFD, as invalid UTF-8 does when the file is read.
                if keep { out.append(contentsOf: Array(String(Character(scalar ?? "\u{FFFD}")).utf8)) }
                continue
            default: i = escape; throw fail("invalid escape '\\\(Unicode.Scalar(e))'")
            }
            if keep { out.append(plain) }
        }
        throw fail("unterminated string")
    }

    /// Four hex digits at `i` (advancing past them).
    mutating func hex4() -> UInt16? {
        guard bytes.count - i >= 4 else { return nil }
        var v: UInt16 = 0
        for _ in 0..<4 {
            let c = bytes[i]
            let d: UInt16
            switch c {
            case 0x30...0x39: d = UInt16(c - 0x30)
            case 0x61...0x66: d = UInt16(c - 0x61 + 10)
            case 0x41...0x46: d = UInt16(c - 0x41 + 10)
            default: return nil
            }
            v = v << 4 | d
            i += 1
        }
        return v
    }
}
