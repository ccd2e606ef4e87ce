/// A point on the packet clock: nanoseconds since the Unix epoch.
///
/// Every time in the pipeline is packet time, never wall-clock time, so replaying a week-old capture
/// produces the same flows, alerts and timestamps as seeing the traffic live.
///
/// Packet times are checked once, where capture reads them (`init(captureSeconds:fraction:fractionUnit:)`),
/// against `validRange`; downstream code may rely on every packet time being inside it. The operators
/// saturate instead of wrapping or trapping, so arithmetic on times that came from elsewhere (a config
/// file, an indicator feed, the wall clock) has a defined outcome too.
public struct Timestamp: Comparable, Hashable, Sendable, BitwiseCopyable, CustomStringConvertible {
    public var nanoseconds: Int64

    @inlinable public init(nanoseconds: Int64) { self.nanoseconds = nanoseconds }
    @inlinable public init(seconds: Int64, nanoseconds: Int64 = 0) {
        self.nanoseconds = seconds &* 1_000_000_000 &+ nanoseconds
    }
    /// Seconds as a Double (wall clock, config), clamped into `validRange`; NaN is the epoch.
    @inlinable public init(seconds: Double) {
        nanoseconds = min(max(Timestamp.saturatingNanoseconds(seconds), Timestamp.validRange.lowerBound), Timestamp.validRange.upperBound)
    }

    /// The packet times the sensor accepts: the Unix epoch up to 2^62 ns after it (2116-02-20T23:53:38Z).
    ///
    /// Chosen for headroom, not for the calendar: the difference of any two valid times, and a valid time
    /// plus or minus any window up to 2^62 ns (146 years, far beyond every configurable window), fit in
    /// Int64. So a capture that jumps between the extremes (1970 ↔ 2116) and back cannot make flow-table
    /// or detector arithmetic overflow, and a record with any other time is refused at capture.
    public static let validRange: ClosedRange<Int64> = 0...((1 << 62) - 1)
    /// The last valid packet time.
    public static let latest = Timestamp(nanoseconds: validRange.upperBound)

    /// A capture record's time — `seconds` since the epoch plus `fraction` units of `fractionUnit`
    /// nanoseconds (1 for libpcap's nanosecond precision, 1000 for microseconds) — or nil when it is
    /// outside `validRange`. Exact: checked before anything can wrap, so a record far out (a pcapng
    /// `if_tsoffset`, a 64-bit EPB timestamp in coarse `if_tsresol` units, a corrupt classic record)
    /// cannot land back inside the range. The one check of packet times, for offline and live capture.
    @inlinable public init?(captureSeconds seconds: Int64, fraction: Int64, fractionUnit: Int64) {
        let (whole, o1) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        let (part, o2) = fraction.multipliedReportingOverflow(by: fractionUnit)
        let (ns, o3) = whole.addingReportingOverflow(part)
        guard !o1, !o2, !o3, Timestamp.validRange.contains(ns) else { return nil }
        nanoseconds = ns
    }

    /// A time read from a document (an indicator's expiry, say), clamped into `validRange`: a date past
    /// it (STIX's customary 9999-12-31) is later than every packet, one before 1970 earlier than all.
    @inlinable public init(clampingSeconds seconds: Int64, nanoseconds: Int64 = 0) {
        let (whole, o1) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        let ns = o1 ? (seconds < 0 ? Int64.min : Int64.max) : Timestamp.saturatingAdd(whole, nanoseconds)
        self.nanoseconds = min(max(ns, Timestamp.validRange.lowerBound), Timestamp.validRange.upperBound)
    }

    public static let zero = Timestamp(nanoseconds: 0)

    /// Whole seconds, rounded towards the past (no overflow for any value).
    @inlinable public var seconds: Int64 {
        nanoseconds >= 0 ? nanoseconds / 1_000_000_000 : (nanoseconds + 1) / 1_000_000_000 - 1
    }
    @inlinable public var secondsDouble: Double { Double(nanoseconds) / 1e9 }

    @inlinable public static func < (a: Timestamp, b: Timestamp) -> Bool { a.nanoseconds < b.nanoseconds }
    /// Saturating: a horizon or deadline beyond Int64 (`now + window`) is "never", not a wrapped past.
    @inlinable public static func + (a: Timestamp, b: Duration) -> Timestamp {
        Timestamp(nanoseconds: saturatingAdd(a.nanoseconds, b.nanoseconds))
    }
    /// Saturating, for window starts (`now - window`).
    @inlinable public static func - (a: Timestamp, b: Duration) -> Timestamp {
        Timestamp(nanoseconds: saturatingSubtract(a.nanoseconds, b.nanoseconds))
    }
    /// Saturating: exact for any two valid packet times (negative when `b` is later).
    @inlinable public static func - (a: Timestamp, b: Timestamp) -> Duration {
        Duration(nanoseconds: saturatingSubtract(a.nanoseconds, b.nanoseconds))
    }

    public var description: String { RFC3339.string(self) }

    /// A span on the packet clock, in nanoseconds.
    public struct Duration: Comparable, Hashable, Sendable, BitwiseCopyable {
        public var nanoseconds: Int64
        @inlinable public init(nanoseconds: Int64) { self.nanoseconds = nanoseconds }
        /// Saturating at the ends of Int64; NaN is zero (config values are range-checked before this, but
        /// a conversion must not be what traps).
        @inlinable public static func seconds(_ s: Double) -> Duration { Duration(nanoseconds: Timestamp.saturatingNanoseconds(s)) }
        @inlinable public static func < (a: Duration, b: Duration) -> Bool { a.nanoseconds < b.nanoseconds }
        @inlinable public var secondsDouble: Double { Double(nanoseconds) / 1e9 }
    }

    /// `seconds` × 10⁹ as Int64, saturating; NaN gives 0. (`Int64(x)` traps on NaN and out of range.)
    @inlinable public static func saturatingNanoseconds(_ seconds: Double) -> Int64 {
        let ns = seconds * 1e9
        if ns.isNaN { return 0 }
        // 2^63 is exactly representable; every Double below it converts.
        if ns >= 9_223_372_036_854_775_808.0 { return .max }
        if ns <= -9_223_372_036_854_775_808.0 { return .min }
        return Int64(ns)
    }

    @inlinable static func saturatingAdd(_ a: Int64, _ b: Int64) -> Int64 {
        let (r, o) = a.addingReportingOverflow(b)
        return o ? (b < 0 ? .min : .max) : r
    }

    @inlinable static func saturatingSubtract(_ a: Int64, _ b: Int64) -> Int64 {
        let (r, o) = a.subtractingReportingOverflow(b)
        return o ? (b < 0 ? .max : .min) : r
    }
}

/// RFC 3339 rendering of packet timestamps with microsecond precision, written straight into a byte buffer.
///
/// Foundation's date formatters allocate and cost microseconds; a flow event is written in well under that.
public enum RFC3339 {
    /// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    @inlinable public static func civil(days: Int64) -> (year: Int64, month: Int64, day: Int64) {
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

    /// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm; the inverse of
    /// `civil(days:)`). Exact for every year a document can write (0…9999).
    @inlinable public static func days(year y0: Int64, month m: Int64, day d: Int64) -> Int64 {
        let y = m <= 2 ? y0 - 1 : y0
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    /// Appends `YYYY-MM-DDTHH:MM:SS.ffffffZ` (27 bytes).
    @inlinable
    public static func append<O: ByteOutput>(_ t: Timestamp, to out: inout O) {
        let ns = t.nanoseconds
        var secs = ns / 1_000_000_000
        var frac = ns % 1_000_000_000
        if frac < 0 { frac += 1_000_000_000; secs -= 1 }
        append(epochSeconds: secs, microseconds: frac / 1000, to: &out)
    }

    /// The same for a time in whole seconds since the epoch, for dates beyond the nanosecond packet clock
    /// (a certificate valid until 9999-12-31). The year is written in four digits, clamped to 0…9999.
    @inlinable
    public static func append<O: ByteOutput>(epochSeconds secs: Int64, microseconds micros: Int64 = 0, to out: inout O) {
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
        digits(micros, 6, &out); out.append(90)
    }

    public static func string(_ t: Timestamp) -> String {
        var b: [UInt8] = []
        b.reserveCapacity(27)
        append(t, to: &b)
        return String(decoding: b, as: UTF8.self)
    }
}
