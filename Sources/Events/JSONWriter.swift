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
        /// The day `dayText` renders (see `quotedTime`).
        var cachedDay: Int64 = .min
        var dayText: (UInt64, UInt64) = (0, 0)
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
        /// Room for `n` more bytes: where they go. The caller writes them, then adds to `count`.
        @inlinable @inline(__always) func reserve(_ n: Int) -> UnsafeMutablePointer<UInt8> {
            if count &+ n > capacity { grow(to: count &+ n) }
            return base + count
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
        let n = bytes.count
        guard n > 0 else { return }
        let s = storage
        JSONWriter.copy(bytes.baseAddress!, to: s.reserve(n), count: n)
        s.count &+= n
    }

    /// Copies `n` bytes. Most pieces of an event are a few bytes (keys, numbers, names): up to 16 are moved
    /// by two overlapping loads and stores, not a call into `memcpy`.
    @inlinable @inline(__always)
    static func copy(_ src: UnsafeRawPointer, to dst: UnsafeMutablePointer<UInt8>, count n: Int) {
        let d = UnsafeMutableRawPointer(dst)
        if n >= 8 {
            guard n <= 16 else { d.copyMemory(from: src, byteCount: n); return }
            d.storeBytes(of: src.loadUnaligned(as: UInt64.self), as: UInt64.self)
            (d + (n &- 8)).storeBytes(of: (src + (n &- 8)).loadUnaligned(as: UInt64.self), as: UInt64.self)
        } else if n >= 4 {
            d.storeBytes(of: src.loadUnaligned(as: UInt32.self), as: UInt32.self)
            (d + (n &- 4)).storeBytes(of: (src + (n &- 4)).loadUnaligned(as: UInt32.self), as: UInt32.self)
        } else if n > 0 {
            d.storeBytes(of: src.load(as: UInt8.self), as: UInt8.self)
            if n > 1 {
                (d + (n &- 2)).storeBytes(of: (src + (n &- 2)).loadUnaligned(as: UInt16.self), as: UInt16.self)
            }
        }
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
    mutating func writeKey(_ key: StaticString) { _ = writeKey(key, reserving: 0) }

    /// `writeKey` with room for `extra` more bytes after the colon: where they go (the caller writes
    /// them and adds to `storage.count`), so a short value costs no second capacity check.
    @inline(__always)
    mutating func writeKey(_ key: StaticString, reserving extra: Int) -> UnsafeMutablePointer<UInt8> {
        let bit: UInt64 = 1 << UInt64(depth & 63)
        let comma = hasElement & bit != 0
        hasElement |= bit
        return key.withUTF8Buffer { k in
            let n = k.count
            let s = storage
            var p = s.reserve(n &+ 4 &+ extra)
            if comma { p.pointee = 44; p += 1 }
            p.pointee = 34
            if n > 0 { JSONWriter.copy(k.baseAddress!, to: p + 1, count: n) }
            p[n &+ 1] = 34
            p[n &+ 2] = 58
            p += n &+ 3
            s.count = p - s.base
            return p
        }
    }

    // MARK: Structure

    public mutating func beginObject() { if depth > 0 { separator() }; open(123) }
    public mutating func beginObject(_ key: StaticString) { openKeyed(key, 123) }
    public mutating func beginObject(dynamicKey key: String) { self.key(key); open(123) }
    public mutating func endObject() { append(125); depth -= 1 }
    public mutating func beginArray(_ key: StaticString) { openKeyed(key, 91) }

    /// `,"key":{` or `,"key":[`, one capacity check.
    @inline(__always)
    mutating func openKeyed(_ key: StaticString, _ c: UInt8) {
        writeKey(key, reserving: 1).pointee = c
        storage.count &+= 1
        depth += 1
        hasElement &= ~(1 << UInt64(depth & 63))
    }
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
        value.withUTF8Buffer { v in
            let n = v.count
            let p = writeKey(key, reserving: n &+ 2)
            p.pointee = 34
            if n > 0 { JSONWriter.copy(v.baseAddress!, to: p + 1, count: n) }
            p[n &+ 1] = 34
            storage.count &+= n &+ 2
        }
    }
    public mutating func field(_ key: StaticString, _ value: String) { writeKey(key); string(value) }
    public mutating func field(_ key: StaticString, bytes value: UnsafeRawBufferPointer) { writeKey(key); appendEscaped(value) }
    /// The string `String(decoding: value, as: UTF8.self)` makes (invalid UTF-8 repaired to U+FFFD),
    /// written from the bytes themselves when they are ASCII (the same bytes, and no string made).
    public mutating func field(_ key: StaticString, decoding value: UnsafeRawBufferPointer) {
        if value.allSatisfy({ $0 < 0x80 }) { field(key, bytes: value) } else { field(key, String(decoding: value, as: UTF8.self)) }
    }
    public mutating func field(_ key: StaticString, _ value: Int) { writeKey(key); integer(Int64(value)) }
    /// A number written as a JSON string (`"iana_number":"6"`), the text `String(value)` makes.
    public mutating func field(_ key: StaticString, decimalString value: UInt64) { writeKey(key); append(34); unsigned(value); append(34) }
    public mutating func field(_ key: StaticString, _ value: Int64) { writeKey(key); integer(value) }
    public mutating func field(_ key: StaticString, _ value: UInt64) { writeKey(key); unsigned(value) }
    public mutating func field(_ key: StaticString, _ value: Double) { writeKey(key); double(value) }
    public mutating func field(_ key: StaticString, _ value: Bool) { writeKey(key); boolean(value) }
    public mutating func field(_ key: StaticString, _ value: IPAddress) {
        writeKey(key)
        quotedAddress(value)
    }
    public mutating func field(_ key: StaticString, _ value: Timestamp) {
        writeKey(key)
        quotedTime(value)
    }
    /// A date given in whole seconds since the epoch (dates beyond the packet clock, as certificates have).
    public mutating func field(_ key: StaticString, epochSeconds: Int64) {
        writeKey(key)
        quotedTime(epochSeconds: epochSeconds, microseconds: 0)
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
    public mutating func element(_ value: IPAddress) { separator(); quotedAddress(value) }
    public mutating func element(bytes value: UnsafeRawBufferPointer) { separator(); appendEscaped(value) }

    // MARK: Scalars

    /// An address as a JSON string. IPv4 (most addresses) is written in place; IPv6 by `IPAddress.append`.
    mutating func quotedAddress(_ a: IPAddress) {
        guard !a.isIPv6 else { append(34); a.append(to: &self); append(34); return }
        let s = storage
        let p = s.reserve(17)
        p[0] = 34
        var n = 1
        let v = a.ipv4Value
        @inline(__always) func octet(_ o: Int, then c: UInt8) {
            if o >= 100 {
                p[n] = UInt8(truncatingIfNeeded: 48 &+ o / 100)
                JSONWriter.twoDigits(o % 100, at: p + n + 1)
                n &+= 3
            } else if o >= 10 {
                JSONWriter.twoDigits(o, at: p + n)
                n &+= 2
            } else {
                p[n] = UInt8(truncatingIfNeeded: 48 &+ o)
                n &+= 1
            }
            p[n] = c
            n &+= 1
        }
        octet(Int(truncatingIfNeeded: v >> 24), then: 46)
        octet(Int(truncatingIfNeeded: (v >> 16) & 0xff), then: 46)
        octet(Int(truncatingIfNeeded: (v >> 8) & 0xff), then: 46)
        octet(Int(truncatingIfNeeded: v & 0xff), then: 34)
        s.count &+= n
    }

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
        let s = storage
        let p = s.reserve(20)
        if v < 10 { p.pointee = 48 &+ UInt8(truncatingIfNeeded: v); s.count &+= 1; return }
        var n = 2
        var t = v / 100
        while t > 0 { n &+= 1; t /= 10 }
        // `n` digits, written two a step from the end; one or two leading digits are then left for `p`.
        var x = v, i = n
        while x >= 100 {
            i &-= 2
            JSONWriter.twoDigits(Int(truncatingIfNeeded: x % 100), at: p + i)
            x /= 100
        }
        if x >= 10 { JSONWriter.twoDigits(Int(truncatingIfNeeded: x), at: p) } else { p.pointee = 48 &+ UInt8(truncatingIfNeeded: x) }
        s.count &+= n
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
        guard let src = s.baseAddress else { return }
        let n = s.count
        var i = 0
        while i < n {
            // Copy the run that needs no escaping straight into the buffer, eight bytes a step.
            let st = storage
            let start = i
            var p = st.reserve(n &- i)
            while i &+ 8 <= n {
                let w = (src + i).loadUnaligned(as: UInt64.self)
                if JSONWriter.anyNeedsEscape(w) { break }
                UnsafeMutableRawPointer(p).storeBytes(of: w, as: UInt64.self)
                p += 8
                i &+= 8
            }
            while i < n {
                let c = src.load(fromByteOffset: i, as: UInt8.self)
                if c < 0x20 || c >= 0x80 || c == 34 || c == 92 { break }
                p.pointee = c
                p += 1
                i &+= 1
            }
            st.count &+= i &- start
            if i >= n { break }
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
                append(bytes: UnsafeRawBufferPointer(rebasing: s[i..<(i + len)]))
                i += len
            } else {
                escapeByte(c)
                i += 1
            }
        }
    }

    /// Whether any of the eight bytes is a control character, `"`, `\` or not ASCII. The zero-byte tests
    /// (`x - 0x01… & ~x & 0x80…`) may also flag a byte above a flagged one, never flag a word without one.
    @inline(__always)
    static func anyNeedsEscape(_ w: UInt64) -> Bool {
        let ones: UInt64 = 0x0101_0101_0101_0101, high: UInt64 = 0x8080_8080_8080_8080
        let control = (w &- ones &* 0x20) & ~w
        let q = w ^ (ones &* 0x22), quote = (q &- ones) & ~q
        let b = w ^ (ones &* 0x5C), backslash = (b &- ones) & ~b
        return (w | control | quote | backslash) & high != 0
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
