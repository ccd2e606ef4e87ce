import Foundation
import PacketCore

/// Number, byte, time formatting for the page (ASCII only, locale-independent).
enum Format {
    static func coordinate(_ v: Double) -> String {
        guard v.isFinite else { return "0" }
        return String(format: "%.1f", v)
    }

    static func decimal(_ v: Double, _ digits: Int = 2) -> String {
        guard v.isFinite else { return "-" }
        return String(format: "%.\(digits)f", v)
    }

    static func bytes(_ v: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var x = Double(v), i = 0
        while x >= 1024, i < units.count - 1 { x /= 1024; i += 1 }
        return i == 0 ? "\(v) B" : String(format: "%.1f %@", x, units[i])
    }

    static func count(_ v: Int64) -> String {
        var s = String(v.magnitude), out = ""
        while s.count > 3 { out = "," + s.suffix(3) + out; s.removeLast(3) }
        return (v < 0 ? "-" : "") + s + out
    }

    static func seconds(_ s: Double) -> String {
        guard s.isFinite else { return "-" }
        if s < 1 { return String(format: "%.3f s", s) }
        if s < 120 { return String(format: "%.1f s", s) }
        if s < 7200 { return String(format: "%.1f min", s / 60) }
        if s < 172_800 { return String(format: "%.1f h", s / 3600) }
        return String(format: "%.1f d", s / 86400)
    }
}

/// Event times as microseconds since the epoch, parsed from and formatted as the sensor's RFC 3339 UTC
/// (`2024-02-13T14:34:40.856323Z`). Hand-written: Foundation's ISO 8601 formatter drops microseconds.
enum EventTime {
    static func parse(_ s: String) -> Int64? {
        let b = Array(s.utf8)
        guard b.count >= 20, b[4] == 0x2D, b[7] == 0x2D, b[10] == 0x54 || b[10] == 0x20, b[13] == 0x3A, b[16] == 0x3A else { return nil }
        func num(_ r: Range<Int>) -> Int64? {
            var v: Int64 = 0
            for i in r { let d = b[i] &- 0x30; guard d < 10 else { return nil }; v = v * 10 + Int64(d) }
            return v
        }
        guard let y = num(0..<4), let mo = num(5..<7), let d = num(8..<10), let h = num(11..<13), let mi = num(14..<16),
              let se = num(17..<19), (1...12).contains(mo), (1...31).contains(d), h < 24, mi < 60, se < 61 else { return nil }
        var i = 19, micros: Int64 = 0
        if i < b.count, b[i] == 0x2E {
            i += 1
            var digits = 0
            while i < b.count, b[i] >= 0x30, b[i] <= 0x39 {
                if digits < 6 { micros = micros * 10 + Int64(b[i] - 0x30) }
                digits += 1; i += 1
            }
            if digits < 6 { for _ in digits..<6 { micros *= 10 } }
        }
        var offset: Int64 = 0
        if i < b.count, b[i] == 0x2B || b[i] == 0x2D, i + 6 <= b.count, let oh = num((i + 1)..<(i + 3)), let om = num((i + 4)..<(i + 6)) {
            offset = (oh * 60 + om) * 60 * (b[i] == 0x2B ? 1 : -1)
        }
        let days = RFC3339.days(year: y, month: mo, day: d)
        return ((days * 86400 + h * 3600 + mi * 60 + se) - offset) * 1_000_000 + micros
    }

    static func format(_ t: Int64, fraction: Bool = true) -> String {
        let secs = t >= 0 ? t / 1_000_000 : (t - 999_999) / 1_000_000
        let micros = t - secs * 1_000_000
        let days = secs >= 0 ? secs / 86400 : (secs - 86399) / 86400
        let rem = secs - days * 86400
        let (y, m, d) = RFC3339.civil(days: days)
        var s = String(format: "%04lld-%02lld-%02lld %02lld:%02lld:%02lld", y, m, d, rem / 3600, rem % 3600 / 60, rem % 60)
        if fraction { s += String(format: ".%06lld", micros) }
        return s + " UTC"
    }
}
