/// Link, network and transport decoding over the captured bytes, in place.
///
/// Every read is bounds-checked against the captured length first and every function returns an outcome
/// instead of trapping, so hostile or truncated input is counted, never fatal. Nothing is copied or
/// allocated: the decoder records offsets into libpcap's own buffer.
public enum PacketDecoder {
    @inlinable @inline(__always)
    static func u16(_ b: UnsafeRawBufferPointer, _ o: Int) -> UInt16 {
        b.loadUnaligned(fromByteOffset: o, as: UInt16.self).bigEndian
    }
    @inlinable @inline(__always)
    static func u32(_ b: UnsafeRawBufferPointer, _ o: Int) -> UInt32 {
        b.loadUnaligned(fromByteOffset: o, as: UInt32.self).bigEndian
    }

    /// Decodes one captured frame of the given link type into `p` (whose timestamp and lengths the caller set).
    @inlinable
    public static func decode(_ b: UnsafeRawBufferPointer, linkType: LinkType, into p: inout DecodedPacket) -> DecodeOutcome {
        switch linkType {
        case .ethernet:
            return decodeEthernet(b, into: &p)
        case .raw, .rawAlt, .linktypeRaw:
            guard b.count >= 1 else { return .truncated }
            return decodeIPByVersion(b, 0, into: &p)
        case .ipv4:
            return decodeIPv4(b, 0, into: &p)
        case .ipv6:
            return decodeIPv6(b, 0, into: &p)
        case .linuxSLL:
            // 16-byte header, protocol (ethertype) at 14.
            guard b.count >= 16 else { return .truncated }
            return decodeEtherType(u16(b, 14), b, 16, into: &p)
        case .linuxSLL2:
            // 20-byte header, protocol at 0.
            guard b.count >= 20 else { return .truncated }
            return decodeEtherType(u16(b, 0), b, 20, into: &p)
        case .null, .loop:
            guard b.count >= 4 else { return .truncated }
            let raw = b.loadUnaligned(fromByteOffset: 0, as: UInt32.self)
            // DLT_NULL stores the family in the writer's byte order; accept both orders.
            let fam = linkType == .loop ? raw.bigEndian : (raw & 0xffff_0000 != 0 ? raw.byteSwapped : raw)
            switch fam {
            case 2: return decodeIPv4(b, 4, into: &p)
            case 24, 28, 30: return decodeIPv6(b, 4, into: &p)
            default: return .notIP
            }
        default:
            return .unsupportedLinkType
        }
    }

    @inlinable
    static func decodeEthernet(_ b: UnsafeRawBufferPointer, into p: inout DecodedPacket) -> DecodeOutcome {
        guard b.count >= 14 else { return .truncated }
        return decodeEtherType(u16(b, 12), b, 14, into: &p)
    }

    /// Follows VLAN tags (802.1Q, 802.1ad QinQ, legacy 0x9100), MPLS label stacks and PPPoE sessions down to IP.
    @inlinable
    static func decodeEtherType(_ type: UInt16, _ b: UnsafeRawBufferPointer, _ offset: Int, into p: inout DecodedPacket) -> DecodeOutcome {
        var type = type
        var o = offset
        var tags = 0
        while true {
            switch type {
            case 0x0800:
                return decodeIPv4(b, o, into: &p)
            case 0x86DD:
                return decodeIPv6(b, o, into: &p)
            case 0x8100, 0x88A8, 0x9100:
                tags += 1
                guard tags <= 8 else { return .malformed }
                guard b.count >= o + 4 else { return .truncated }
                if p.vlan == 0 { p.vlan = u16(b, o) & 0x0fff }
                type = u16(b, o + 2)
                o += 4
            case 0x8847, 0x8848:
                // MPLS: pop labels until bottom of stack, then guess IP by version nibble.
                var labels = 0
                while true {
                    guard b.count >= o + 4 else { return .truncated }
                    let entry = u32(b, o)
                    o += 4
                    labels += 1
                    if entry & 0x100 != 0 { break }
                    guard labels < 16 else { return .malformed }
                }
                guard b.count > o else { return .truncated }
                return decodeIPByVersion(b, o, into: &p)
            case 0x8864:
                // PPPoE session: 6-byte header then the 2-byte PPP protocol.
                guard b.count >= o + 8 else { return .truncated }
                let ppp = u16(b, o + 6)
                if ppp == 0x0021 { return decodeIPv4(b, o + 8, into: &p) }
                if ppp == 0x0057 { return decodeIPv6(b, o + 8, into: &p) }
                return .notIP
            default:
                return .notIP
            }
        }
    }

    @inlinable
    static func decodeIPByVersion(_ b: UnsafeRawBufferPointer, _ o: Int, into p: inout DecodedPacket) -> DecodeOutcome {
        guard b.count > o else { return .truncated }
        switch b[o] >> 4 {
        case 4: return decodeIPv4(b, o, into: &p)
        case 6: return decodeIPv6(b, o, into: &p)
        default: return .malformed
        }
    }

    @inlinable
    static func decodeIPv4(_ b: UnsafeRawBufferPointer, _ o: Int, into p: inout DecodedPacket) -> DecodeOutcome {
        guard b.count >= o + 20 else { return .truncated }
        let vihl = b[o]
        guard vihl >> 4 == 4 else { return .malformed }
        let ihl = Int(vihl & 0x0f) &* 4
        guard ihl >= 20 else { return .malformed }
        let totalLength = Int(u16(b, o + 2))
        // TSO/GRO captures carry total length 0 for super-frames: trust the capture then.
        let ipLength = totalLength == 0 ? b.count - o : totalLength
        guard ipLength >= ihl else { return .malformed }
        guard b.count >= o + ihl else { return .truncated }
        p.ipVersion = 4
        p.networkOffset = o
        p.ttl = b[o + 8]
        p.ipProtocol = b[o + 9]
        p.source = IPAddress(ipv4: u32(b, o + 12))
        p.destination = IPAddress(ipv4: u32(b, o + 16))
        p.ipIdentification = UInt32(u16(b, o + 4))
        let frag = u16(b, o + 6)
        let fragOffset = frag & 0x1fff
        let moreFragments = frag & 0x2000 != 0
        p.transportOffset = o + ihl
        let l4Length = ipLength - ihl
        if fragOffset != 0 {
            p.fragment = 2
            p.payloadOffset = o + ihl
            p.payloadLength = l4Length
            return .laterFragment
        }
        p.fragment = moreFragments ? 1 : 0
        return decodeTransport(b, o + ihl, l4Length, into: &p)
    }

    @inlinable
    static func decodeIPv6(_ b: UnsafeRawBufferPointer, _ o: Int, into p: inout DecodedPacket) -> DecodeOutcome {
        guard b.count >= o + 40 else { return .truncated }
        guard b[o] >> 4 == 6 else { return .malformed }
        let payloadLength = Int(u16(b, o + 4))
        // Jumbograms (and TSO super-frames) carry 0: trust the capture then.
        var remaining = payloadLength == 0 ? b.count - o - 40 : payloadLength
        p.ipVersion = 6
        p.networkOffset = o
        p.ttl = b[o + 7]
        p.source = IPAddress.load(b, at: o + 8, ipv6: true)
        p.destination = IPAddress.load(b, at: o + 24, ipv6: true)
        var next = b[o + 6]
        var off = o + 40
        var headers = 0
        // Extension headers: hop-by-hop, routing, fragment, destination options, AH, mobility, HIP, shim6.
        while true {
            switch next {
            case 0, 43, 60, 135, 139, 140:
                headers += 1
                guard headers <= 16 else { return .malformed }
                guard b.count >= off + 8 else { p.ipProtocol = next; return .truncated }
                let len = (Int(b[off + 1]) + 1) &* 8
                guard remaining >= len else { return .malformed }
                next = b[off]
                off += len
                remaining -= len
            case 51:
                headers += 1
                guard headers <= 16 else { return .malformed }
                guard b.count >= off + 8 else { p.ipProtocol = next; return .truncated }
                let len = (Int(b[off + 1]) + 2) &* 4
                guard remaining >= len else { return .malformed }
                next = b[off]
                off += len
                remaining -= len
            case 44:
                headers += 1
                guard headers <= 16 else { return .malformed }
                guard b.count >= off + 8, remaining >= 8 else { p.ipProtocol = next; return .truncated }
                let fragField = u16(b, off + 2)
                p.ipIdentification = u32(b, off + 4)
                next = b[off]
                off += 8
                remaining -= 8
                if fragField & 0xfff8 != 0 {
                    p.ipProtocol = next
                    p.fragment = 2
                    p.transportOffset = off
                    p.payloadOffset = off
                    p.payloadLength = remaining
                    return .laterFragment
                }
                if fragField & 1 != 0 { p.fragment = 1 }
            default:
                p.ipProtocol = next
                return decodeTransport(b, off, remaining, into: &p)
            }
        }
    }

    /// Reads ports (or the ICMP type/code) and locates the payload. `length` is what IP says follows.
    @inlinable
    static func decodeTransport(_ b: UnsafeRawBufferPointer, _ o: Int, _ length: Int, into p: inout DecodedPacket) -> DecodeOutcome {
        p.transportOffset = o
        let captured = b.count - o
        switch p.ipProtocol {
        case IPProtocol.tcp:
            guard captured >= 14, length >= 14 else { return .truncated }
            p.sourcePort = u16(b, o)
            p.destinationPort = u16(b, o + 2)
            p.hasPorts = true
            p.tcpSequence = u32(b, o + 4)
            p.tcpAcknowledgement = u32(b, o + 8)
            p.tcpFlags = TCPFlags(rawValue: b[o + 13])
            let dataOffset = Int(b[o + 12] >> 4) &* 4
            guard dataOffset >= 20, dataOffset <= length else {
                // A lying data offset: keep the flow (ports are real), give no payload.
                p.payloadOffset = o + min(length, captured)
                p.payloadLength = 0
                return dataOffset < 20 ? .malformed : .truncated
            }
            if captured >= 16 { p.tcpWindow = u16(b, o + 14) }
            p.payloadOffset = o + dataOffset
            p.payloadLength = length - dataOffset
            return .ok
        case IPProtocol.udp:
            guard captured >= 8, length >= 8 else { return .truncated }
            p.sourcePort = u16(b, o)
            p.destinationPort = u16(b, o + 2)
            p.hasPorts = true
            let udpLength = Int(u16(b, o + 4))
            p.payloadOffset = o + 8
            // A UDP length that disagrees with IP: use the smaller, as Wireshark does.
            p.payloadLength = udpLength >= 8 ? min(udpLength, length) - 8 : length - 8
            return .ok
        case IPProtocol.sctp:
            guard captured >= 12, length >= 12 else { return .truncated }
            p.sourcePort = u16(b, o)
            p.destinationPort = u16(b, o + 2)
            p.hasPorts = true
            p.payloadOffset = o + 12
            p.payloadLength = length - 12
            return .ok
        case IPProtocol.icmp, IPProtocol.icmpv6:
            guard captured >= 2, length >= 2 else { return .truncated }
            p.icmpType = b[o]
            p.icmpCode = b[o + 1]
            p.hasPorts = true
            p.payloadOffset = o + min(8, length)
            p.payloadLength = max(0, length - 8)
            return .ok
        default:
            p.hasPorts = false
            p.payloadOffset = o
            p.payloadLength = length
            return .ok
        }
    }
}
