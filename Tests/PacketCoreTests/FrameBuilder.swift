@testable import PacketCore

/// Builds test frames byte by byte (headers as the wire has them), so decoder tests state exactly what
/// they feed in.
struct FrameBuilder {
    var bytes: [UInt8] = []

    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u16(_ v: UInt16) { bytes.append(UInt8(v >> 8)); bytes.append(UInt8(v & 0xff)) }
    mutating func u32(_ v: UInt32) { u16(UInt16(v >> 16)); u16(UInt16(v & 0xffff)) }
    mutating func raw(_ b: [UInt8]) { bytes.append(contentsOf: b) }

    mutating func ethernet(type: UInt16) {
        raw([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])
        u16(type)
    }
    mutating func vlan(_ id: UInt16, next: UInt16) { u16(id); u16(next) }

    /// IPv4 header; `payloadLength` is what follows the header (options included in `options`).
    mutating func ipv4(src: String, dst: String, proto: UInt8, payloadLength: Int, options: [UInt8] = [], fragOffset: UInt16 = 0, moreFragments: Bool = false, id: UInt16 = 1) {
        let ihl = 20 + options.count
        u8(0x40 | UInt8(ihl / 4)); u8(0)
        u16(UInt16(ihl + payloadLength))
        u16(id)
        u16((moreFragments ? 0x2000 : 0) | fragOffset)
        u8(64); u8(proto); u16(0)
        u32(IPAddress(src)!.ipv4Value); u32(IPAddress(dst)!.ipv4Value)
        raw(options)
    }

    mutating func ipv6(src: String, dst: String, next: UInt8, payloadLength: Int) {
        u32(0x6000_0000)
        u16(UInt16(payloadLength)); u8(next); u8(64)
        let s = IPAddress(src)!, d = IPAddress(dst)!
        for v in [s.high, s.low, d.high, d.low] { for i in stride(from: 56, through: 0, by: -8) { u8(UInt8(truncatingIfNeeded: v >> UInt64(i))) } }
    }

    mutating func tcp(sport: UInt16, dport: UInt16, seq: UInt32 = 1, flags: UInt8, payload: [UInt8] = [], dataOffsetWords: UInt8 = 5) {
        u16(sport); u16(dport); u32(seq); u32(0)
        u8(dataOffsetWords << 4); u8(flags); u16(65535); u16(0); u16(0)
        if dataOffsetWords > 5 { raw([UInt8](repeating: 1, count: Int(dataOffsetWords - 5) * 4)) }
        raw(payload)
    }

    mutating func udp(sport: UInt16, dport: UInt16, payload: [UInt8] = []) {
        u16(sport); u16(dport); u16(UInt16(8 + payload.count)); u16(0)
        raw(payload)
    }

    /// Decodes the built frame.
    func decode(_ linkType: LinkType = .ethernet) -> (DecodeOutcome, DecodedPacket) {
        var p = DecodedPacket()
        p.wireLength = bytes.count
        p.capturedLength = bytes.count
        let o = bytes.withUnsafeBytes { PacketDecoder.decode($0, linkType: linkType, into: &p) }
        return (o, p)
    }
}
