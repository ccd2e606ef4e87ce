import PacketCore

/// Writes JSON straight into a reused byte buffer.
///
/// Foundation's `JSONEncoder` costs microseconds and several allocations per event; flow events are
/// written at hundreds of thousands per second, so events are bytes appended to one buffer that is
/// cleared, not freed, between events. Commas are tracked per nesting level in a bit stack.
public struct JSONWriter {
    public internal(set) var bytes: [UInt8]
    /// Bit n set: the object/array at depth n already holds an element.
    var hasElement: UInt64 = 0
    var depth: Int = 0
    /// Start and end of the Community ID value in `bytes` (for sinks that key on it).
    var marked: (Int, Int) = (0, 0)

    public init(capacity: Int = 4096) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    /// Clears the buffer for the next event, keeping its storage.
    public mutating func reset() {
        bytes.removeAll(keepingCapacity: true)
        marked = (0, 0)
        hasElement = 0
        depth = 0
    }

    mutating func separator() {
        let bit: UInt64 = 1 << UInt64(depth & 63)
        if hasElement & bit != 0 { bytes.append(44) } else { hasElement |= bit }
    }

    mutating func open(_ c: UInt8) {
        bytes.append(c)
        depth += 1
        hasElement &= ~(1 << UInt64(depth & 63))
    }

    mutating func writeKey(_ key: StaticString) {
        separator()
        bytes.append(34)
        key.withUTF8Buffer { bytes.append(contentsOf: $0) }
        bytes.append(34); bytes.append(58)
    }

    // MARK: Structure

    public mutating func beginObject() { if depth > 0 { separator() }; open(123) }
    public mutating func beginObject(_ key: StaticString) { writeKey(key); open(123) }
    public mutating func beginObject(dynamicKey key: String) { self.key(key); open(123) }
    public mutating func endObject() { bytes.append(125); depth -= 1 }
    public mutating func beginArray(_ key: StaticString) { writeKey(key); open(91) }
    public mutating func endArray() { bytes.append(93); depth -= 1 }

    /// A key that is not a compile-time constant (escaped).
    public mutating func key(_ key: String) {
        separator()
        var k = key
        k.withUTF8 { appendEscaped(UnsafeRawBufferPointer($0)) }
        bytes.append(58)
    }

    // MARK: Fields

    public mutating func field(_ key: StaticString, _ value: StaticString) {
        writeKey(key)
        bytes.append(34)
        value.withUTF8Buffer { bytes.append(contentsOf: $0) }
        bytes.append(34)
    }
    public mutating func field(_ key: StaticString, _ value: String) { writeKey(key); string(value) }
    public mutating func field(_ key: StaticString, bytes value: UnsafeRawBufferPointer) { writeKey(key); appendEscaped(value) }
    public mutating func field(_ key: StaticString, _ value: Int) { writeKey(key); integer(Int64(value)) }
    public mutating func field(_ key: StaticString, _ value: Int64) { writeKey(key); integer(value) }
    public mutating func field(_ key: StaticString, _ value: UInt64) { writeKey(key); unsigned(value) }
    public mutating func field(_ key: StaticString, _ value: Double) { writeKey(key); double(value) }
    public mutating func field(_ key: StaticString, _ value: Bool) { writeKey(key); boolean(value) }
    public mutating func field(_ key: StaticString, _ value: IPAddress) {
        writeKey(key)
        bytes.append(34); value.append(to: &bytes); bytes.append(34)
    }
    public mutating func field(_ key: StaticString, _ value: Timestamp) {
        writeKey(key)
        bytes.append(34); RFC3339.append(value, to: &bytes); bytes.append(34)
    }
    public mutating func fieldNull(_ key: StaticString) { writeKey(key); bytes.append(contentsOf: [110, 117, 108, 108]) }
    /// Lets a caller render a value itself (e.g. Community ID) straight into the buffer as a JSON string.
    public mutating func field(_ key: StaticString, rawString render: (inout [UInt8]) -> Void) {
        writeKey(key)
        bytes.append(34); render(&bytes); bytes.append(34)
    }

    /// `"community_id":"1:…"`, remembering where the value sits.
    public mutating func markCommunityID(_ render: (inout [UInt8]) -> Void) {
        writeKey("community_id")
        bytes.append(34)
        let start = bytes.count
        render(&bytes)
        marked = (start, bytes.count)
        bytes.append(34)
    }

    // MARK: Array elements / bare values

    public mutating func element(_ value: StaticString) {
        separator()
        bytes.append(34); value.withUTF8Buffer { bytes.append(contentsOf: $0) }; bytes.append(34)
    }
    public mutating func element(_ value: String) { separator(); string(value) }
    public mutating func element(_ value: Int64) { separator(); integer(value) }
    public mutating func element(_ value: IPAddress) { separator(); bytes.append(34); value.append(to: &bytes); bytes.append(34) }
    public mutating func element(bytes value: UnsafeRawBufferPointer) { separator(); appendEscaped(value) }

    // MARK: Scalars

    mutating func string(_ s: String) {
        var s = s
        s.withUTF8 { appendEscaped(UnsafeRawBufferPointer($0)) }
    }

    public mutating func integer(_ v: Int64) {
        if v < 0 {
            bytes.append(45)
            unsigned(v == Int64.min ? UInt64(Int64.max) + 1 : UInt64(-v))
        } else {
            unsigned(UInt64(v))
        }
    }

    public mutating func unsigned(_ v: UInt64) {
        if v < 10 { bytes.append(48 + UInt8(v)); return }
        var tmp: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes >= 20 digits
        withUnsafeMutableBytes(of: &tmp) { t in
            var n = 0
            var x = v
            while x > 0 { t[n] = 48 + UInt8(x % 10); x /= 10; n += 1 }
            while n > 0 { n -= 1; bytes.append(t[n]) }
        }
    }

    public mutating func double(_ v: Double) {
        guard v.isFinite else { bytes.append(contentsOf: [110, 117, 108, 108]); return }
        if v == v.rounded(), abs(v) < 1e15 { integer(Int64(v)); return }
        bytes.append(contentsOf: v.description.utf8)
    }

    public mutating func boolean(_ v: Bool) {
        if v { bytes.append(contentsOf: [116, 114, 117, 101]) } else { bytes.append(contentsOf: [102, 97, 108, 115, 101]) }
    }

    /// Appends bytes as a quoted JSON string. Control characters are escaped; bytes that are not valid
    /// UTF-8 (network data often is not) are written as `\u00XX` so the output stays valid JSON.
    public mutating func appendEscaped(_ s: UnsafeRawBufferPointer) {
        bytes.append(34)
        var i = 0
        let n = s.count
        while i < n {
            let c = s[i]
            if c >= 0x20 && c < 0x80 {
                if c == 34 || c == 92 { bytes.append(92) }
                bytes.append(c)
                i += 1
                continue
            }
            if c < 0x20 {
                switch c {
                case 10: bytes.append(92); bytes.append(110)
                case 13: bytes.append(92); bytes.append(114)
                case 9: bytes.append(92); bytes.append(116)
                default: escapeByte(c)
                }
                i += 1
                continue
            }
            let len = JSONWriter.validUTF8Length(s, i)
            if len > 0 {
                for k in 0..<len { bytes.append(s[i + k]) }
                i += len
            } else {
                escapeByte(c)
                i += 1
            }
        }
        bytes.append(34)
    }

    mutating func escapeByte(_ c: UInt8) {
        let hex: StaticString = "0123456789abcdef"
        bytes.append(contentsOf: [92, 117, 48, 48])
        hex.withUTF8Buffer { h in
            bytes.append(h[Int(c >> 4)]); bytes.append(h[Int(c & 15)])
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
