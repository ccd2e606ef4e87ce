/// The bidirectional identity of a flow, in Community ID canonical order.
///
/// Side A is the lower (address, port) endpoint, as the Community ID spec orders tuples, so both
/// directions of a conversation give the same key and the Community ID comes straight from the key.
/// ICMP and ICMPv6 use the spec's port equivalents (type and counterpart type, or type and code for
/// one-way messages, which are never flipped).
public struct FlowKey: Equatable, Sendable, BitwiseCopyable {
    public var aHigh: UInt64
    public var aLow: UInt64
    public var bHigh: UInt64
    public var bLow: UInt64
    public var aPort: UInt16
    public var bPort: UInt16
    public var ipProtocol: UInt8
    public var isIPv6: Bool
    /// Ports are part of the tuple (TCP, UDP, SCTP, ICMP, ICMPv6).
    public var hasPorts: Bool
    /// A one-way ICMP message: A is always the sender.
    public var isOneWay: Bool

    @inlinable public var a: IPAddress { IPAddress(high: aHigh, low: aLow, isIPv6: isIPv6) }
    @inlinable public var b: IPAddress { IPAddress(high: bHigh, low: bLow, isIPv6: isIPv6) }

    /// Builds the canonical key for a decoded packet. Returns the key and whether the packet's source is side A.
    public static func make(_ p: DecodedPacket) -> (key: FlowKey, sourceIsA: Bool) {
        var sport = p.sourcePort, dport = p.destinationPort
        var oneWay = false
        let hasPorts = p.hasPorts
        if p.ipProtocol == IPProtocol.icmp || p.ipProtocol == IPProtocol.icmpv6 {
            let t = p.icmpType
            let counterpart = p.ipProtocol == IPProtocol.icmp ? icmpCounterpart(t) : icmpv6Counterpart(t)
            sport = UInt16(t)
            if counterpart >= 0 {
                dport = UInt16(counterpart)
            } else {
                dport = UInt16(p.icmpCode)
                oneWay = true
            }
        }
        let s = p.source, d = p.destination
        let ordered: Bool
        if oneWay {
            ordered = true
        } else if s.high != d.high {
            ordered = s.high < d.high
        } else if s.low != d.low {
            ordered = s.low < d.low
        } else {
            ordered = hasPorts && sport < dport
        }
        if !hasPorts { sport = 0; dport = 0 }
        let key: FlowKey
        if ordered {
            key = FlowKey(aHigh: s.high, aLow: s.low, bHigh: d.high, bLow: d.low, aPort: sport, bPort: dport,
                          ipProtocol: p.ipProtocol, isIPv6: p.ipVersion == 6, hasPorts: hasPorts, isOneWay: oneWay)
        } else {
            key = FlowKey(aHigh: d.high, aLow: d.low, bHigh: s.high, bLow: s.low, aPort: dport, bPort: sport,
                          ipProtocol: p.ipProtocol, isIPv6: p.ipVersion == 6, hasPorts: hasPorts, isOneWay: oneWay)
        }
        // Same address and port on both sides: the packet is from A either way.
        return (key, ordered || (s == d && sport == dport))
    }

    /// ICMP (v4) request/response counterparts, as Zeek and the Community ID spec pair them; -1 if one-way.
    @inlinable public static func icmpCounterpart(_ t: UInt8) -> Int {
        switch t {
        case 8: return 0
        case 0: return 8
        case 13: return 14
        case 14: return 13
        case 15: return 16
        case 16: return 15
        case 10: return 9
        case 9: return 10
        case 17: return 18
        case 18: return 17
        default: return -1
        }
    }

    /// ICMPv6 request/response counterparts; -1 if one-way.
    @inlinable public static func icmpv6Counterpart(_ t: UInt8) -> Int {
        switch t {
        case 128: return 129
        case 129: return 128
        case 130: return 131
        case 131: return 130
        case 133: return 134
        case 134: return 133
        case 135: return 136
        case 136: return 135
        case 139: return 140
        case 140: return 139
        case 144: return 145
        case 145: return 144
        default: return -1
        }
    }

    /// A fast, well-mixed 64-bit hash (not SipHash: the table is bounded and evicts, so flooding one
    /// bucket chain costs the attacker more than it costs us).
    @inlinable public var hashValue64: UInt64 {
        var h = aHigh &* 0x9E37_79B9_7F4A_7C15
        h ^= (aLow &+ 0x632B_E59B_D9B4_E019) &* 0xBF58_476D_1CE4_E5B9
        h = (h ^ (h >> 29)) &+ bHigh &* 0x94D0_49BB_1331_11EB
        h ^= (bLow &+ (UInt64(aPort) << 32 | UInt64(bPort) << 16 | UInt64(ipProtocol))) &* 0x9E37_79B9_7F4A_7C15
        h ^= h >> 32
        h = h &* 0xD6E8_FEB8_6659_FD93
        h ^= h >> 32
        return h
    }

    /// `hashValue64` of a packet's address pair (lower address first) and IP protocol, without ports:
    /// the same for both directions of a flow and for every fragment of a datagram, first or later
    /// (later fragments carry no ports). Offline workers are chosen by it (`replay --workers`).
    public static func addressPairHash(_ p: DecodedPacket) -> UInt64 {
        let s = p.source, d = p.destination
        let sourceFirst = s.high != d.high ? s.high < d.high : s.low <= d.low
        let (a, b) = sourceFirst ? (s, d) : (d, s)
        return FlowKey(aHigh: a.high, aLow: a.low, bHigh: b.high, bLow: b.low, aPort: 0, bPort: 0, ipProtocol: p.ipProtocol,
                       isIPv6: p.ipVersion == 6, hasPorts: false, isOneWay: false).hashValue64
    }
}

/// Community ID v1 (https://github.com/corelight/community-id-spec): a flow hash shared by Zeek,
/// Suricata, Arkime and Wireshark, so an analyst can pivot from our events to their records.
public struct CommunityID: Sendable {
    public var seed: UInt16
    public init(seed: UInt16 = 0) { self.seed = seed }

    /// Appends `1:<base64 of SHA-1>` (30 bytes) for the key.
    public func append<O: ByteOutput>(_ key: FlowKey, to out: inout O) {
        var input: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0)
        let digest: SHA1.Digest = withUnsafeMutableBytes(of: &input) { buf in
            var n = 0
            @inline(__always) func put8(_ v: UInt8) { buf[n] = v; n += 1 }
            @inline(__always) func put16(_ v: UInt16) { put8(UInt8(v >> 8)); put8(UInt8(v & 0xff)) }
            @inline(__always) func put64(_ v: UInt64) { for s in stride(from: 56, through: 0, by: -8) { put8(UInt8(truncatingIfNeeded: v >> UInt64(s))) } }
            put16(seed)
            if key.isIPv6 {
                put64(key.aHigh); put64(key.aLow); put64(key.bHigh); put64(key.bLow)
            } else {
                let a = UInt32(truncatingIfNeeded: key.aLow), b = UInt32(truncatingIfNeeded: key.bLow)
                put16(UInt16(a >> 16)); put16(UInt16(a & 0xffff))
                put16(UInt16(b >> 16)); put16(UInt16(b & 0xffff))
            }
            put8(key.ipProtocol)
            put8(0)
            if key.hasPorts { put16(key.aPort); put16(key.bPort) }
            return SHA1.hash(UnsafeRawBufferPointer(rebasing: buf[0..<n]))
        }
        out.append(49); out.append(58)
        var encoded: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        withUnsafeMutableBytes(of: &encoded) { e in
            let n = withUnsafeBytes(of: digest) { Base64.encode($0, into: e) }
            out.append(bytes: UnsafeRawBufferPointer(rebasing: e[0..<n]))
        }
    }

    public func string(_ key: FlowKey) -> String {
        var b: [UInt8] = []
        b.reserveCapacity(30)
        append(key, to: &b)
        return String(decoding: b, as: UTF8.self)
    }
}

/// Standard base64 with padding.
public enum Base64 {
    static let alphabet: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    /// Encodes into `out` (at least `(data.count + 2) / 3 * 4` bytes) and returns the length written.
    public static func encode(_ data: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer) -> Int {
        var i = 0, o = 0
        let n = data.count
        alphabet.withUnsafeBufferPointer { a in
            while i + 3 <= n {
                let v = UInt32(data[i]) << 16 | UInt32(data[i + 1]) << 8 | UInt32(data[i + 2])
                out[o] = a[Int(v >> 18)]; out[o + 1] = a[Int((v >> 12) & 63)]
                out[o + 2] = a[Int((v >> 6) & 63)]; out[o + 3] = a[Int(v & 63)]
                i += 3; o += 4
            }
            if n - i == 1 {
                let v = UInt32(data[i]) << 16
                out[o] = a[Int(v >> 18)]; out[o + 1] = a[Int((v >> 12) & 63)]
                out[o + 2] = 61; out[o + 3] = 61
                o += 4
            } else if n - i == 2 {
                let v = UInt32(data[i]) << 16 | UInt32(data[i + 1]) << 8
                out[o] = a[Int(v >> 18)]; out[o + 1] = a[Int((v >> 12) & 63)]
                out[o + 2] = a[Int((v >> 6) & 63)]; out[o + 3] = 61
                o += 4
            }
        }
        return o
    }
}

/// SHA-1, for Community ID only (the spec fixes the algorithm). Small and allocation-free.
public enum SHA1 {
    public typealias Digest = (UInt32, UInt32, UInt32, UInt32, UInt32)

    public static func hash(_ data: UnsafeRawBufferPointer) -> Digest {
        var state: (UInt32, UInt32, UInt32, UInt32, UInt32) = (0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476, 0xC3D2_E1F0)
        let total = data.count
        let bitLength = UInt64(total) &* 8
        // Padded length: data + 0x80 + zeros + 8-byte length, a multiple of 64. A Community ID tuple
        // (at most 44 bytes) is always a single block.
        let padded = (total + 9 + 63) / 64 * 64
        var block = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        var chunk = 0
        while chunk < padded {
            withUnsafeMutableBytes(of: &block) { blk in
                let available = max(0, min(64, total - chunk))
                if available > 0 { blk.baseAddress!.copyMemory(from: data.baseAddress! + chunk, byteCount: available) }
                if available < 64 {
                    for i in available..<64 { blk[i] = 0 }
                    if total >= chunk && total < chunk + 64 { blk[total - chunk] = 0x80 }
                    if chunk + 64 == padded {
                        blk.storeBytes(of: bitLength.bigEndian, toByteOffset: 56, as: UInt64.self)
                    }
                }
                compress(&state, blk)
            }
            chunk += 64
        }
        return (state.0.bigEndian, state.1.bigEndian, state.2.bigEndian, state.3.bigEndian, state.4.bigEndian)
    }

    /// One 64-byte block, with a 16-word rolling message schedule.
    @inline(__always)
    static func compress(_ h: inout (UInt32, UInt32, UInt32, UInt32, UInt32), _ block: UnsafeMutableRawBufferPointer) {
        var w = (UInt32(0), UInt32(0), UInt32(0), UInt32(0), UInt32(0), UInt32(0), UInt32(0), UInt32(0),
                 UInt32(0), UInt32(0), UInt32(0), UInt32(0), UInt32(0), UInt32(0), UInt32(0), UInt32(0))
        withUnsafeMutableBytes(of: &w) { wb in
            let words = wb.bindMemory(to: UInt32.self)
            for i in 0..<16 { words[i] = block.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self).bigEndian }
            var a = h.0, b = h.1, c = h.2, d = h.3, e = h.4
            for i in 0..<80 {
                let wi: UInt32
                if i < 16 {
                    wi = words[i]
                } else {
                    let v = words[(i - 3) & 15] ^ words[(i - 8) & 15] ^ words[(i - 14) & 15] ^ words[i & 15]
                    wi = (v << 1) | (v >> 31)
                    words[i & 15] = wi
                }
                let f: UInt32, k: UInt32
                if i < 20 { f = (b & c) | (~b & d); k = 0x5A82_7999 }
                else if i < 40 { f = b ^ c ^ d; k = 0x6ED9_EBA1 }
                else if i < 60 { f = (b & c) | (b & d) | (c & d); k = 0x8F1B_BCDC }
                else { f = b ^ c ^ d; k = 0xCA62_C1D6 }
                let t = ((a << 5) | (a >> 27)) &+ f &+ e &+ k &+ wi
                e = d; d = c; c = (b << 30) | (b >> 2); b = a; a = t
            }
            h.0 &+= a; h.1 &+= b; h.2 &+= c; h.3 &+= d; h.4 &+= e
        }
    }
}
