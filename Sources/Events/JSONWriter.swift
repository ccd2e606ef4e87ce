import PacketCore

/// Writes JSON straight into a reused byte buffer.
///
/// Foundation's `JSONEncoder` costs microseconds and several allocations per event; flow events are
/// written at hundreds of thousands per second, so events are bytes appended to one buffer that is
/// cleared, not freed, between events. Commas are tracked per nesting level in a bit stack.
public struct JSONWriter: ByteOutput {
    /// Raw, growable storage owned by one writer. A class so the buffer is freed with the writer, and so
    /// appends do no copy-on-write check: the pipeline appends a few hundred bytes per event one by one.
    @usableFromInline final class Storage {
        @usableFromInline var base: UnsafeMutablePointer<UInt8>
        @usableFromInline var count = 0
        @usableFromInline var capacity: Int
        init(capacity: Int) {
            self.capacity = max(64, capacity)
            base = .allocate(capacity: self.capacity)
        }
        deinit { base.deallocate() }
        @usableFromInline @inline(never) func grow(to needed: Int) {
            var c = capacity
            while c < needed { c *= 2 }
            let n = UnsafeMutablePointer<UInt8>.allocate(capacity: c)
            n.update(from: base, count: count)
            base.deallocate()
            base = n
            capacity = c
        }
    }

    @usableFromInline let storage: Storage
    /// Bit n set: the object/array at depth n already holds an element.
    var hasElement: UInt64 = 0
    var depth: Int = 0
    /// Start and end of the Community ID value in the buffer (for sinks that key on it).
    var marked: (Int, Int) = (0, 0)

    public init(capacity: Int = 4096) {
        storage = Storage(capacity: capacity)
    }

    /// The bytes written so far (a copy; sinks use `withUnsafeBytes`).
    public var bytes: [UInt8] { withUnsafeBytes { Array($0) } }
    public var count: Int { storage.count }

    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: storage.base, count: storage.count))
    }

    /// Clears the buffer for the next event, keeping its storage.
    public mutating func reset() {
        storage.count = 0
        hasElement = 0
        depth = 0
        marked = (0, 0)
    }

    @inlinable @inline(__always)
    public mutating func append(_ byte: UInt8) {
        let s = storage
        if s.count == s.capacity { s.grow(to: s.count + 1) }
        s.base[s.count] = byte
        s.count &+= 1
    }

    @inlinable
    public mutating func append(bytes: UnsafeRawBufferPointer) {
        let s = storage
        let n = bytes.count
        guard n > 0 else { return }
        if s.count + n > s.capacity { s.grow(to: s.count + n) }
        UnsafeMutableRawPointer(s.base + s.count).copyMemory(from: bytes.baseAddress!, byteCount: n)
        s.count &+= n
    }

    mutating func append(_ a: UInt8, _ b: UInt8) { append(a); append(b) }

    /// Appends a string's UTF-8 bytes verbatim (no quoting or escaping).
    public mutating func append(string: String) {
        var s = string
        s.withUTF8 { append(bytes: UnsafeRawBufferPointer($0)) }
    }

    mutating func append(_ s: StaticString) {
        s.withUTF8Buffer { append(bytes: UnsafeRawBufferPointer($0)) }
    }

    mutating func separator() {
        let bit: UInt64 = 1 << UInt64(depth & 63)
        if hasElement & bit != 0 { append(44) } else { hasElement |= bit }
    }

    mutating func open(_ c: UInt8) {
        append(c)
        depth += 1
        hasElement &= ~(1 << UInt64(depth & 63))
    }

    /// `,"key":` (the comma when the level already holds an element). Written in one step, capacity
    /// checked once: every event has dozens of keys.
    @inline(__always)
    mutating func writeKey(_ key: StaticString) {
        let bit: UInt64 = 1 << UInt64(depth & 63)
        let comma = hasElement & bit != 0
        hasElement |= bit
        key.withUTF8Buffer { k in
            let n = k.count
            let s = storage
            let needed = s.count &+ n &+ 4
            if needed > s.capacity { s.grow(to: needed) }
            var p = s.base + s.count
            if comma { p.pointee = 44; p += 1 }
            p.pointee = 34
            if n > 0 { (p + 1).update(from: k.baseAddress!, count: n) }
            p[n &+ 1] = 34
            p[n &+ 2] = 58
            s.count = p - s.base + n &+ 3
        }
    }

    // MARK: Structure

    public mutating func beginObject() { if depth > 0 { separator() }; open(123) }
    public mutating func beginObject(_ key: StaticString) { writeKey(key); open(123) }
    public mutating func beginObject(dynamicKey key: String) { self.key(key); open(123) }
    public mutating func endObject() { append(125); depth -= 1 }
    public mutating func beginArray(_ key: StaticString) { writeKey(key); open(91) }
    public mutating func endArray() { append(93); depth -= 1 }

    /// A key that is not a compile-time constant (escaped).
    public mutating func key(_ key: String) {
        separator()
        var k = key
        k.withUTF8 { appendEscaped(UnsafeRawBufferPointer($0)) }
        append(58)
    }

    // MARK: Fields

    public mutating func field(_ key: StaticString, _ value: StaticString) {
        writeKey(key)
        append(34)
        append(value)
        append(34)
    }
    public mutating func field(_ key: StaticString, _ value: String) { writeKey(key); string(value) }
    public mutating func field(_ key: StaticString, bytes value: UnsafeRawBufferPointer) { writeKey(key); appendEscaped(value) }
    /// The string `String(decoding: value, as: UTF8.self)` makes (invalid UTF-8 repaired to U+FFFD),
    /// written from the bytes themselves when they are ASCII (the same bytes, and no string made).
    public mutating func field(_ key: StaticString, decoding value: UnsafeRawBufferPointer) {
        if value.allSatisfy({ $0 < 0x80 }) { field(key, bytes: value) } else { field(key, String(decoding: value, as: UTF8.self)) }
    }
    public mutating func field(_ key: StaticString, _ value: Int) { writeKey(key); integer(Int64(value)) }
    public mutating func field(_ key: StaticString, _ value: Int64) { writeKey(key); integer(value) }
    public mutating func field(_ key: StaticString, _ value: UInt64) { writeKey(key); unsigned(value) }
    public mutating func field(_ key: StaticString, _ value: Double) { writeKey(key); double(value) }
    public mutating func field(_ key: StaticString, _ value: Bool) { writeKey(key); boolean(value) }
    public mutating func field(_ key: StaticString, _ value: IPAddress) {
        writeKey(key)
        append(34); value.append(to: &self); append(34)
    }
    public mutating func field(_ key: StaticString, _ value: Timestamp) {
        writeKey(key)
        append(34); RFC3339.append(value, to: &self); append(34)
    }
    /// A date given in whole seconds since the epoch (dates beyond the packet clock, as certificates have).
    public mutating func field(_ key: StaticString, epochSeconds: Int64) {
        writeKey(key)
        append(34); RFC3339.append(epochSeconds: epochSeconds, to: &self); append(34)
    }
    public mutating func fieldNull(_ key: StaticString) { writeKey(key); append("null") }
    /// `"key":` followed by a JSON token copied verbatim (a value cut out of another event, already valid JSON).
    public mutating func field(_ key: StaticString, rawJSON token: UnsafeRawBufferPointer) { writeKey(key); append(bytes: token) }
    /// `"key":` and then `render` writes the value's JSON text itself (a number built digit by digit).
    public mutating func field(_ key: StaticString, rawValue render: (inout JSONWriter) -> Void) { writeKey(key); render(&self) }
    /// An array element copied verbatim as a JSON token.
    public mutating func element(rawJSON token: UnsafeRawBufferPointer) { separator(); append(bytes: token) }
    /// An array element whose JSON text `render` writes itself.
    public mutating func element(rawValue render: (inout JSONWriter) -> Void) { separator(); render(&self) }
    /// Lets a caller render a value itself (e.g. Community ID) straight into the buffer as a JSON string.
    public mutating func field(_ key: StaticString, rawString render: (inout JSONWriter) -> Void) {
        writeKey(key)
        append(34); render(&self); append(34)
    }

    /// `"community_id":"1:…"`, remembering where the value sits.
    public mutating func markCommunityID(_ render: (inout JSONWriter) -> Void) {
        writeKey("community_id")
        append(34)
        let start = storage.count
        render(&self)
        marked = (start, storage.count)
        append(34)
    }

    // MARK: Array elements / bare values

    public mutating func element(_ value: StaticString) {
        separator()
        append(34); append(value); append(34)
    }
    public mutating func element(_ value: String) { separator(); string(value) }
    public mutating func element(_ value: Int64) { separator(); integer(value) }
    public mutating func element(_ value: IPAddress) { separator(); append(34); value.append(to: &self); append(34) }
    public mutating func element(bytes value: UnsafeRawBufferPointer) { separator(); appendEscaped(value) }

    // MARK: Scalars

    mutating func string(_ s: String) {
        var s = s
        s.withUTF8 { appendEscaped(UnsafeRawBufferPointer($0)) }
    }

    public mutating func integer(_ v: Int64) {
        if v < 0 {
            append(45)
            unsigned(v == Int64.min ? UInt64(Int64.max) + 1 : UInt64(-v))
        } else {
            unsigned(UInt64(v))
        }
    }

    public mutating func unsigned(_ v: UInt64) {
        if v < 10 { append(48 + UInt8(v)); return }
        var tmp: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes >= 20 digits
        let n: Int = withUnsafeMutableBytes(of: &tmp) { t in
            var i = 24
            var x = v
            while x > 0 { i -= 1; t[i] = 48 + UInt8(x % 10); x /= 10 }
            return i
        }
        Swift.withUnsafeBytes(of: &tmp) { append(bytes: UnsafeRawBufferPointer(rebasing: $0[n...])) }
    }

    /// A float field always carries a fraction or exponent (`55.0`, not `55`): a store that infers types
    /// from the first document (Elasticsearch without a template) would otherwise map it as an integer
    /// and truncate every later value.
    public mutating func double(_ v: Double) {
        guard v.isFinite else { append("null"); return }
        if v == v.rounded(), abs(v) < 1e15 { integer(Int64(v)); append(46, 48); return }
        append(string: v.description)
    }

    public mutating func boolean(_ v: Bool) {
        if v { append("true") } else { append("false") }
    }

    /// Appends bytes as a quoted JSON string. Control characters are escaped; bytes that are not valid
    /// UTF-8 (network data often is not) are written as `\u00XX` so the output stays valid JSON.
    public mutating func appendEscaped(_ s: UnsafeRawBufferPointer) {
        append(34)
        appendEscapedContent(s)
        append(34)
    }

    /// The inside of `appendEscaped` (no quotes), for a string written in parts. Parts split inside a
    /// UTF-8 sequence are escaped byte by byte: only split ASCII.
    public mutating func appendEscapedContent(_ s: UnsafeRawBufferPointer) {
        var i = 0
        let n = s.count
        while i < n {
            // Copy the longest run that needs no escaping in one go.
            var j = i
            while j < n, s[j] >= 0x20, s[j] < 0x80, s[j] != 34, s[j] != 92 { j += 1 }
            if j > i {
                append(bytes: UnsafeRawBufferPointer(rebasing: s[i..<j]))
                i = j
                if i >= n { break }
            }
            let c = s[i]
            if c == 34 || c == 92 {
                append(92); append(c)
                i += 1
                continue
            }
            if c < 0x20 {
                switch c {
                case 10: append(92); append(110)
                case 13: append(92); append(114)
                case 9: append(92); append(116)
                default: escapeByte(c)
                }
                i += 1
                continue
            }
            let len = JSONWriter.validUTF8Length(s, i)
            if len > 0 {
                for k in 0..<len { append(s[i + k]) }
                i += len
            } else {
                escapeByte(c)
                i += 1
            }
        }
    }

    mutating func escapeByte(_ c: UInt8) {
        let hex: StaticString = "0123456789abcdef"
        append("\\u00")
        hex.withUTF8Buffer { h in
            append(h[Int(c >> 4)]); append(h[Int(c & 15)])
        }
    }

    /// Length of a valid UTF-8 sequence starting at `i`, or 0.
    static func validUTF8Length(_ s: UnsafeRawBufferPointer, _ i: Int) -> Int {
        let c = s[i]
        let n = s.count
        @inline(__always) func cont(_ k: Int) -> Bool { i + k < n && s[i + k] & 0xC0 == 0x80 }
        if c >= 0xC2 && c <= 0xDF { return cont(1) ? 2 : 0 }
        if c >= 0xE0 && c <= 0xEF {
            guard cont(1), cont(2) else { return 0 }
            let c1 = s[i + 1]
            if c == 0xE0 && c1 < 0xA0 { return 0 }
            if c == 0xED && c1 >= 0xA0 { return 0 }
            return 3
        }
        if c >= 0xF0 && c <= 0xF4 {
            guard cont(1), cont(2), cont(3) else { return 0 }
            let c1 = s[i + 1]
            if c == 0xF0 && c1 < 0x90 { return 0 }
            if c == 0xF4 && c1 >= 0x90 { return 0 }
            return 4
        }
        return 0
    }
}
