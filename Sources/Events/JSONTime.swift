import PacketCore

/// RFC 3339 times written straight into the writer's buffer, the text `RFC3339.append` makes.
///
/// Every event carries one to three times, and nearly all of a run's times fall on a few days: the
/// `YYYY-MM-DDT` of the last day written is kept, so a time costs its clock digits, not a civil-date
/// conversion and twenty digit-by-digit divisions.
extension JSONWriter {
    /// `"YYYY-MM-DDTHH:MM:SS.ffffffZ"`, quoted.
    @inline(__always)
    mutating func quotedTime(_ t: Timestamp) {
        let ns = t.nanoseconds
        var secs = ns / 1_000_000_000
        var frac = ns % 1_000_000_000
        if frac < 0 { frac += 1_000_000_000; secs -= 1 }
        quotedTime(epochSeconds: secs, microseconds: frac / 1000)
    }

    /// The same for whole seconds (`micros` in 0..<1_000_000).
    mutating func quotedTime(epochSeconds secs: Int64, microseconds micros: Int64) {
        var days = secs / 86_400
        var rem = secs % 86_400
        if rem < 0 { rem += 86_400; days -= 1 }
        let s = storage
        if days != s.cachedDay { s.cacheDay(days) }
        let p = s.reserve(29)
        p[0] = 34
        // 16 bytes of which the date's 11 stay; the clock below overwrites the rest.
        UnsafeMutableRawPointer(p + 1).storeBytes(of: s.dayText.0, as: UInt64.self)
        UnsafeMutableRawPointer(p + 9).storeBytes(of: s.dayText.1, as: UInt64.self)
        let r = Int(truncatingIfNeeded: rem), m = Int(truncatingIfNeeded: micros)
        JSONWriter.twoDigits(r / 3600, at: p + 12); p[14] = 58
        JSONWriter.twoDigits((r / 60) % 60, at: p + 15); p[17] = 58
        JSONWriter.twoDigits(r % 60, at: p + 18); p[20] = 46
        JSONWriter.twoDigits(m / 10_000, at: p + 21)
        JSONWriter.twoDigits((m / 100) % 100, at: p + 23)
        JSONWriter.twoDigits(m % 100, at: p + 25)
        p[27] = 90; p[28] = 34
        s.count &+= 29
    }

    /// "00" … "99": two digits by one load.
    static let digitPairs: StaticString = """
        00010203040506070809101112131415161718192021222324252627282930313233343536373839\
        40414243444546474849505152535455565758596061626364656667686970717273747576777879\
        8081828384858687888990919293949596979899
        """

    /// The two decimal digits of `v` (0…99) at `p`.
    @inline(__always)
    static func twoDigits(_ v: Int, at p: UnsafeMutablePointer<UInt8>) {
        let d = UnsafeRawPointer(digitPairs.utf8Start + 2 &* v).loadUnaligned(as: UInt16.self)
        UnsafeMutableRawPointer(p).storeBytes(of: d, as: UInt16.self)
    }
}

extension JSONWriter.Storage {
    /// Renders `YYYY-MM-DDT` of `days` since the epoch as `RFC3339.append` does (year clamped to 0…9999).
    /// From the civil date itself: `days * 86_400` overflows for the far dates a certificate may carry.
    @inline(never)
    func cacheDay(_ days: Int64) {
        let (y, m, d) = RFC3339.civil(days: days)
        let year = Int(max(0, min(9999, y)))
        var text: (UInt64, UInt64) = (0, 0)
        withUnsafeMutableBytes(of: &text) { t in
            let p = t.baseAddress!.assumingMemoryBound(to: UInt8.self)
            JSONWriter.twoDigits(year / 100, at: p)
            JSONWriter.twoDigits(year % 100, at: p + 2)
            p[4] = 45
            JSONWriter.twoDigits(Int(m), at: p + 5)
            p[7] = 45
            JSONWriter.twoDigits(Int(d), at: p + 8)
            p[10] = 84
        }
        cachedDay = days
        dayText = text
    }
}
