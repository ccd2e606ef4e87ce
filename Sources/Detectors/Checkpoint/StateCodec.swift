import PacketCore

/// Why a detector state (a `sensor aggregate` checkpoint) was refused.
public enum StateDecodeError: Error, Equatable, Sendable {
    /// The bytes end before the state does.
    case truncated
    /// A value outside what the writer can produce (a count beyond a table's bound, an unknown tag,
    /// broken structure): foreign or corrupt bytes.
    case invalid(String)
}

/// Appends a detector's state in the checkpoint's binary form: little-endian integers, strings and
/// collections length-prefixed. One writer per checkpoint; detectors write their fields in a fixed order
/// and `StateReader` reads them back in that order.
public struct StateWriter {
    public private(set) var bytes: [UInt8] = []

    public init() {}

    public mutating func u8(_ v: UInt8) { bytes.append(v) }
    public mutating func bool(_ v: Bool) { bytes.append(v ? 1 : 0) }
    public mutating func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    public mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    public mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    public mutating func i64(_ v: Int64) { u64(UInt64(bitPattern: v)) }
    public mutating func int(_ v: Int) { i64(Int64(v)) }
    public mutating func f64(_ v: Double) { u64(v.bitPattern) }
    public mutating func f32(_ v: Float) { u32(v.bitPattern) }
    public mutating func time(_ t: Timestamp) { i64(t.nanoseconds) }
    public mutating func ip(_ a: IPAddress) {
        u64(a.high)
        u64(a.low)
        bool(a.isIPv6)
    }
    public mutating func string(_ s: String) {
        let utf8 = s.utf8
        count(utf8.count)
        bytes.append(contentsOf: utf8)
    }
    public mutating func count(_ n: Int) { u32(UInt32(clamping: n)) }
    public mutating func raw(_ b: [UInt8]) {
        count(b.count)
        bytes.append(contentsOf: b)
    }

    public mutating func optional<T>(_ v: T?, _ write: (inout StateWriter, T) -> Void) {
        guard let v else { u8(0); return }
        u8(1)
        write(&self, v)
    }

    public mutating func array<C: Collection>(_ c: C, _ write: (inout StateWriter, C.Element) -> Void) {
        count(c.count)
        for e in c { write(&self, e) }
    }

    /// Dictionary entries in the dictionary's order (a restored table iterates in its own order anyway).
    public mutating func dictionary<K, V>(_ d: [K: V], _ write: (inout StateWriter, K, V) -> Void) {
        count(d.count)
        for (k, v) in d { write(&self, k, v) }
    }
}

/// Reads what `StateWriter` wrote, bounds-checked: every count is checked against the bytes left and
/// the caller's bound before anything is allocated, so garbage is an error, never a trap or a huge
/// allocation.
public struct StateReader {
    let bytes: [UInt8]
    public private(set) var offset = 0

    public init(_ bytes: [UInt8], offset: Int = 0) {
        self.bytes = bytes
        self.offset = offset
    }

    public var isAtEnd: Bool { offset >= bytes.count }
    public var remaining: Int { bytes.count - offset }

    mutating func take(_ n: Int) throws(StateDecodeError) -> Int {
        guard n >= 0, n <= bytes.count - offset else { throw .truncated }
        defer { offset += n }
        return offset
    }

    public mutating func u8() throws(StateDecodeError) -> UInt8 { bytes[try take(1)] }
    public mutating func bool() throws(StateDecodeError) -> Bool {
        switch try u8() {
        case 0: return false
        case 1: return true
        default: throw .invalid("boolean")
        }
    }
    mutating func little<T: FixedWidthInteger>(_: T.Type) throws(StateDecodeError) -> T {
        let at = try take(MemoryLayout<T>.size)
        var v: T = 0
        for i in (0..<MemoryLayout<T>.size).reversed() { v = v << 8 | T(bytes[at + i]) }
        return v
    }
    public mutating func u16() throws(StateDecodeError) -> UInt16 { try little(UInt16.self) }
    public mutating func u32() throws(StateDecodeError) -> UInt32 { try little(UInt32.self) }
    public mutating func u64() throws(StateDecodeError) -> UInt64 { try little(UInt64.self) }
    public mutating func i64() throws(StateDecodeError) -> Int64 { Int64(bitPattern: try u64()) }
    /// An `Int` within `range` (counts, indices, thresholds the detector compares with).
    public mutating func int(in range: ClosedRange<Int> = 0...Int(Int32.max)) throws(StateDecodeError) -> Int {
        let v = try i64()
        guard v >= Int64(range.lowerBound), v <= Int64(range.upperBound) else { throw .invalid("integer out of range") }
        return Int(v)
    }
    public mutating func f64() throws(StateDecodeError) -> Double { Double(bitPattern: try u64()) }
    public mutating func f32() throws(StateDecodeError) -> Float { Float(bitPattern: try u32()) }
    /// Any instant (the detectors' `Timestamp` arithmetic saturates).
    public mutating func time() throws(StateDecodeError) -> Timestamp { Timestamp(nanoseconds: try i64()) }
    /// A packet time as raw nanoseconds, within `Timestamp.validRange` (or `sentinel`, a detector's
    /// "never"): for state whose arithmetic is on plain integers.
    public mutating func packetTime(orSentinel sentinel: Int64? = nil) throws(StateDecodeError) -> Int64 {
        let v = try i64()
        guard Timestamp.validRange.contains(v) || v == sentinel else { throw .invalid("time out of range") }
        return v
    }
    public mutating func ip() throws(StateDecodeError) -> IPAddress {
        let h = try u64(), l = try u64(), v6 = try bool()
        guard v6 || (h == 0 && l <= UInt64(UInt32.max)) else { throw .invalid("IPv4 address") }
        return IPAddress(high: h, low: l, isIPv6: v6)
    }
    /// A count of at most `max` elements of at least `minBytes` each still in the input.
    public mutating func count(max: Int, minBytes: Int = 1) throws(StateDecodeError) -> Int {
        let n = Int(try u32())
        guard n <= max else { throw .invalid("count \(n) beyond \(max)") }
        guard n <= remaining / Swift.max(1, minBytes) else { throw .truncated }
        return n
    }
    public mutating func string(max: Int = 4096) throws(StateDecodeError) -> String {
        let n = try count(max: max)
        let at = try take(n)
        return String(decoding: bytes[at..<at + n], as: UTF8.self)
    }
    public mutating func raw(max: Int) throws(StateDecodeError) -> [UInt8] {
        let n = try count(max: max)
        let at = try take(n)
        return Array(bytes[at..<at + n])
    }

    public mutating func optional<T>(_ read: (inout StateReader) throws(StateDecodeError) -> T) throws(StateDecodeError) -> T? {
        switch try u8() {
        case 0: return nil
        case 1: return try read(&self)
        default: throw .invalid("optional tag")
        }
    }

    public mutating func array<T>(max: Int, minBytes: Int = 1, _ read: (inout StateReader) throws(StateDecodeError) -> T) throws(StateDecodeError) -> [T] {
        let n = try count(max: max, minBytes: minBytes)
        var a: [T] = []
        a.reserveCapacity(n)
        for _ in 0..<n { a.append(try read(&self)) }
        return a
    }

    public mutating func set<T: Hashable>(max: Int, minBytes: Int = 1, _ read: (inout StateReader) throws(StateDecodeError) -> T) throws(StateDecodeError) -> Set<T> {
        let a = try array(max: max, minBytes: minBytes, read)
        let s = Set(a)
        guard s.count == a.count else { throw .invalid("duplicate set member") }
        return s
    }

    public mutating func dictionary<K: Hashable, V>(max: Int, minBytes: Int = 1,
                                                    _ read: (inout StateReader) throws(StateDecodeError) -> (K, V)) throws(StateDecodeError) -> [K: V] {
        let n = try count(max: max, minBytes: minBytes)
        var d: [K: V] = [:]
        d.reserveCapacity(n)
        for _ in 0..<n {
            let (k, v) = try read(&self)
            guard d.updateValue(v, forKey: k) == nil else { throw .invalid("duplicate key") }
        }
        return d
    }
}
