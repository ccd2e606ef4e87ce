/// The link-layer header types the decoder understands (libpcap DLT values, as `pcap_datalink` returns them).
public struct LinkType: RawRepresentable, Hashable, Sendable {
    public var rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }

    @inlinable public static var null: LinkType { LinkType(rawValue: 0) }          // BSD loopback, host-order family
    @inlinable public static var ethernet: LinkType { LinkType(rawValue: 1) }
    @inlinable public static var raw: LinkType { LinkType(rawValue: 12) }          // DLT_RAW on Linux (LINKTYPE_RAW 101)
    @inlinable public static var rawAlt: LinkType { LinkType(rawValue: 14) }       // DLT_RAW on some BSDs
    @inlinable public static var loop: LinkType { LinkType(rawValue: 108) }        // OpenBSD loopback, network-order family
    @inlinable public static var linuxSLL: LinkType { LinkType(rawValue: 113) }
    @inlinable public static var linktypeRaw: LinkType { LinkType(rawValue: 101) }
    @inlinable public static var ipv4: LinkType { LinkType(rawValue: 228) }
    @inlinable public static var ipv6: LinkType { LinkType(rawValue: 229) }
    @inlinable public static var linuxSLL2: LinkType { LinkType(rawValue: 276) }

    public var isSupported: Bool {
        switch self {
        case .null, .ethernet, .raw, .rawAlt, .loop, .linuxSLL, .linktypeRaw, .ipv4, .ipv6, .linuxSLL2: return true
        default: return false
        }
    }
}

/// IP protocol numbers the flow core treats specially.
public enum IPProtocol {
    public static let icmp: UInt8 = 1
    public static let tcp: UInt8 = 6
    public static let udp: UInt8 = 17
    public static let icmpv6: UInt8 = 58
    public static let sctp: UInt8 = 132

    /// The ECS `network.transport` name.
    public static func name(_ p: UInt8) -> StaticString? {
        switch p {
        case icmp: return "icmp"
        case tcp: return "tcp"
        case udp: return "udp"
        case icmpv6: return "ipv6-icmp"
        case sctp: return "sctp"
        case 2: return "igmp"
        case 47: return "gre"
        case 50: return "esp"
        case 51: return "ah"
        case 89: return "ospf"
        case 103: return "pim"
        case 112: return "vrrp"
        default: return nil
        }
    }
}

/// TCP header flag bits.
public struct TCPFlags: OptionSet, Sendable, Hashable, BitwiseCopyable {
    public var rawValue: UInt8
    @inlinable public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let fin = TCPFlags(rawValue: 0x01)
    public static let syn = TCPFlags(rawValue: 0x02)
    public static let rst = TCPFlags(rawValue: 0x04)
    public static let psh = TCPFlags(rawValue: 0x08)
    public static let ack = TCPFlags(rawValue: 0x10)
    public static let urg = TCPFlags(rawValue: 0x20)
    public static let ece = TCPFlags(rawValue: 0x40)
    public static let cwr = TCPFlags(rawValue: 0x80)

    /// Zeek-style history letters, upper case for the originator, e.g. "SAF".
    public func appendNames<O: ByteOutput>(to out: inout O) {
        if contains(.syn) { out.append(83) }
        if contains(.ack) { out.append(65) }
        if contains(.psh) { out.append(80) }
        if contains(.fin) { out.append(70) }
        if contains(.rst) { out.append(82) }
        if contains(.urg) { out.append(85) }
        if contains(.ece) { out.append(69) }
        if contains(.cwr) { out.append(67) }
    }
}
