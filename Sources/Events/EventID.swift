/// `event.id` for events other than alerts: 128 bits hashed from the event's own bytes.
///
/// An output that re-sends after an outage (Kafka's spool) sends the same bytes, so the same id, and the
/// ingest pipeline indexes it once (`_id` from `event.id`). The same traffic replayed gives the same ids.
/// The id is written as a placeholder first and filled in once the event is complete, so it costs one pass
/// over ~0.5 KB and no allocation. Not a cryptographic hash: an id only needs to be unique among honest
/// events, and an attacker who could force a collision would only hide one of their own flow records,
/// which the flow table's counters still account.
extension JSONWriter {
    static let eventIDLength = 32

    /// Writes `"id":"000…"` and returns where the 32 placeholder characters start.
    mutating func reserveEventID() -> Int {
        let p = writeKey("id", reserving: Self.eventIDLength + 2)
        let at = storage.count &+ 1
        p.pointee = 34
        (p + 1).update(repeating: 48, count: Self.eventIDLength)
        p[Self.eventIDLength + 1] = 34
        storage.count &+= Self.eventIDLength + 2
        return at
    }

    /// Hashes the whole event (placeholder included, so the input is fixed) and writes the id in place.
    mutating func fillEventID(at: Int) {
        let s = storage
        var a: UInt64 = 0x9E37_79B9_7F4A_7C15, b: UInt64 = 0xC2B2_AE3D_27D4_EB4F
        var i = 0
        let n = s.count
        while i + 8 <= n {
            var w: UInt64 = 0
            withUnsafeMutableBytes(of: &w) { $0.copyMemory(from: UnsafeRawBufferPointer(start: s.base + i, count: 8)) }
            a = (a ^ w) &* 0xFF51_AFD7_ED55_8CCD
            a = (a << 29) | (a >> 35)
            b = (b ^ w) &* 0xC4CE_B9FE_1A85_EC53
            b = (b << 31) | (b >> 33)
            i &+= 8
        }
        var tail: UInt64 = UInt64(truncatingIfNeeded: n) << 56
        var k = 0
        while i < n { tail ^= UInt64(s.base[i]) << UInt64(8 * k); i &+= 1; k &+= 1 }
        a = Self.finalMix(a ^ tail)
        b = Self.finalMix(b ^ tail ^ a)
        let hex: StaticString = "0123456789abcdef"
        let h = hex.utf8Start
        for d in 0..<16 {
            s.base[at + d] = h[Int((a >> UInt64(60 - 4 * d)) & 15)]
            s.base[at + 16 + d] = h[Int((b >> UInt64(60 - 4 * d)) & 15)]
        }
    }

    /// MurmurHash3's 64-bit finaliser: every input bit reaches every output bit.
    static func finalMix(_ x: UInt64) -> UInt64 {
        var k = x
        k ^= k >> 33; k = k &* 0xFF51_AFD7_ED55_8CCD
        k ^= k >> 33; k = k &* 0xC4CE_B9FE_1A85_EC53
        k ^= k >> 33
        return k
    }
}
