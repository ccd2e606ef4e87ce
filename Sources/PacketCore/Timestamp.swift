/// A point on the packet clock: nanoseconds since the Unix epoch.
///
/// Every time in the pipeline is packet time, never wall-clock time, so replaying a week-old capture
/// produces the same flows, alerts and timestamps as seeing the traffic live.
public struct Timestamp: Comparable, Hashable, Sendable, CustomStringConvertible {
    public var nanoseconds: Int64

    @inlinable public init(nanoseconds: Int64) { self.nanoseconds = nanoseconds }
    @inlinable public init(seconds: Int64, nanoseconds: Int64 = 0) {
        self.nanoseconds = seconds &* 1_000_000_000 &+ nanoseconds
    }
    @inlinable public init(seconds: Double) { self.nanoseconds = Int64(seconds * 1e9) }

    public static let zero = Timestamp(nanoseconds: 0)

    @inlinable public var seconds: Int64 {
        nanoseconds >= 0 ? nanoseconds / 1_000_000_000 : (nanoseconds - 999_999_999) / 1_000_000_000
    }
    @inlinable public var secondsDouble: Double { Double(nanoseconds) / 1e9 }

    @inlinable public static func < (a: Timestamp, b: Timestamp) -> Bool { a.nanoseconds < b.nanoseconds }
    @inlinable public static func + (a: Timestamp, b: Duration) -> Timestamp { Timestamp(nanoseconds: a.nanoseconds &+ b.nanoseconds) }
    @inlinable public static func - (a: Timestamp, b: Timestamp) -> Duration { Duration(nanoseconds: a.nanoseconds &- b.nanoseconds) }

    public var description: String { RFC3339.string(self) }

    /// A span on the packet clock, in nanoseconds.
    public struct Duration: Comparable, Hashable, Sendable {
        public var nanoseconds: Int64
        @inlinable public init(nanoseconds: Int64) { self.nanoseconds = nanoseconds }
        @inlinable public static func seconds(_ s: Double) -> Duration { Duration(nanoseconds: Int64(s * 1e9)) }
        @inlinable public static func < (a: Duration, b: Duration) -> Bool { a.nanoseconds < b.nanoseconds }
        @inlinable public var secondsDouble: Double { Double(nanoseconds) / 1e9 }
    }
}

/// RFC 3339 rendering of packet timestamps with microsecond precision, written straight into a byte buffer.
///
/// Foundation's date formatters allocate and cost microseconds; a flow event is written in well under that.
public enum RFC3339 {
    /// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    @inlinable static func civil(days: Int64) -> (year: Int64, month: Int64, day: Int64) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let y = yoe + era * 400
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (m <= 2 ? y + 1 : y, m, d)
    }

    /// Appends `YYYY-MM-DDTHH:MM:SS.ffffffZ` (27 bytes).
    @inlinable
    public static func append<O: ByteOutput>(_ t: Timestamp, to out: inout O) {
        let ns = t.nanoseconds
        var secs = ns / 1_000_000_000
        var frac = ns % 1_000_000_000
        if frac < 0 { frac += 1_000_000_000; secs -= 1 }
        var days = secs / 86_400
        var rem = secs % 86_400
        if rem < 0 { rem += 86_400; days -= 1 }
        let (y, mo, d) = civil(days: days)
        @inline(__always) func digits(_ v: Int64, _ n: Int, _ out: inout O) {
            var div: Int64 = 1
            for _ in 1..<n { div &*= 10 }
            var v = v
            while div > 0 { out.append(UInt8(truncatingIfNeeded: 48 + (v / div) % 10)); v %= div; div /= 10 }
        }
        digits(max(0, min(9999, y)), 4, &out); out.append(45)
        digits(mo, 2, &out); out.append(45)
        digits(d, 2, &out); out.append(84)
        digits(rem / 3600, 2, &out); out.append(58)
        digits((rem / 60) % 60, 2, &out); out.append(58)
        digits(rem % 60, 2, &out); out.append(46)
        digits(frac / 1000, 6, &out); out.append(90)
    }

    public static func string(_ t: Timestamp) -> String {
        var b: [UInt8] = []
        b.reserveCapacity(27)
        append(t, to: &b)
        return String(decoding: b, as: UTF8.self)
    }
}
