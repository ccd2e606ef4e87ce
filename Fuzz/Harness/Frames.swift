import PacketCore

/// Builds Ethernet frames (IPv4 or IPv6, TCP or UDP) around payloads the fuzzer chose, so a parser is
/// reached through the real decoder, flow table and reassembler rather than called directly.
struct FrameBuilder {
    var bytes: [UInt8] = []

    init() { bytes.reserveCapacity(2048) }

    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u16(_ v: UInt16) { bytes.append(UInt8(v >> 8)); bytes.append(UInt8(v & 0xff)) }
    mutating func u32(_ v: UInt32) { u16(UInt16(v >> 16)); u16(UInt16(v & 0xffff)) }

    mutating func ethernet(type: UInt16) {
        bytes.append(contentsOf: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])
        u16(type)
    }

    /// The IP header of one packet between the two fuzz hosts (10.0.0.1/2, or fd00::1/2).
    mutating func ip(v6: Bool, fromClient: Bool, proto: UInt8, payloadLength: Int) {
        let (a, b): (UInt8, UInt8) = fromClient ? (1, 2) : (2, 1)
        if v6 {
            ethernet(type: 0x86dd)
            u32(0x6000_0000)
            u16(UInt16(truncatingIfNeeded: payloadLength)); u8(proto); u8(64)
            for host in [a, b] { u16(0xfd00); bytes.append(contentsOf: repeatElement(0, count: 13)); u8(host) }
        } else {
            ethernet(type: 0x0800)
            u8(0x45); u8(0)
            u16(UInt16(truncatingIfNeeded: 20 + payloadLength))
            u16(1); u16(0x4000)
            u8(64); u8(proto); u16(0)
            u32(0x0a00_0000 | UInt32(a)); u32(0x0a00_0000 | UInt32(b))
        }
    }

    mutating func tcp(sport: UInt16, dport: UInt16, seq: UInt32, ack: UInt32, flags: UInt8, payload: UnsafeRawBufferPointer) {
        u16(sport); u16(dport); u32(seq); u32(ack)
        u8(5 << 4); u8(flags); u16(65535); u16(0); u16(0)
        bytes.append(contentsOf: payload)
    }

    mutating func udp(sport: UInt16, dport: UInt16, payload: UnsafeRawBufferPointer) {
        u16(sport); u16(dport); u16(UInt16(truncatingIfNeeded: 8 + payload.count)); u16(0)
        bytes.append(contentsOf: payload)
    }
}
