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
    ///
    /// Four independent lanes over 32-byte stripes (xxHash64's round): a single multiply chain would wait
    /// on each multiply, four keep the multiplier busy, and an event is ~1 KB hashed once per event.
    mutating func fillEventID(at: Int) {
        let s = storage
        let p1: UInt64 = 0x9E37_79B1_85EB_CA87, p2: UInt64 = 0xC2B2_AE3D_27D4_EB4F
        var v0: UInt64 = 0x9E37_79B9_7F4A_7C15, v1: UInt64 = 0xC2B2_AE3D_27D4_EB4F
        var v2: UInt64 = 0x1656_67B1_9E37_79F9, v3: UInt64 = 0x85EB_CA77_C2B2_AE63
        @inline(__always) func round(_ acc: UInt64, _ w: UInt64) -> UInt64 {
            let x = acc &+ w &* p2
            return ((x << 31) | (x >> 33)) &* p1
        }
        let n = s.count
        let bytes = UnsafeRawPointer(s.base)
        var i = 0
        while i &+ 32 <= n {
            v0 = round(v0, bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self))
            v1 = round(v1, bytes.loadUnaligned(fromByteOffset: i &+ 8, as: UInt64.self))
            v2 = round(v2, bytes.loadUnaligned(fromByteOffset: i &+ 16, as: UInt64.self))
            v3 = round(v3, bytes.loadUnaligned(fromByteOffset: i &+ 24, as: UInt64.self))
            i &+= 32
        }
        while i &+ 8 <= n {
            v0 = round(v0, bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self))
            (v0, v1, v2, v3) = (v1, v2, v3, v0)
            i &+= 8
        }
        var tail: UInt64 = UInt64(truncatingIfNeeded: n) << 56
        var k = 0
        while i < n { tail ^= UInt64(s.base[i]) << UInt64(8 * k); i &+= 1; k &+= 1 }
        @inline(__always) func rotl(_ x: UInt64, _ r: UInt64) -> UInt64 { (x << r) | (x >> (64 &- r)) }
        let a = Self.finalMix(v0 &+ rotl(v1, 7) &+ rotl(v2, 12) &+ rotl(v3, 18) ^ tail)
        let b = Self.finalMix((v3 &+ rotl(v2, 29)) ^ (v1 &+ rotl(v0, 41)) ^ tail ^ a)
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
