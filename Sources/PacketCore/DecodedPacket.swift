/// What the decoder learned about one packet: offsets into libpcap's buffer and the few header values the
/// flow table and analysers need. A plain value; decoding one allocates nothing.
public struct DecodedPacket: Sendable {
    /// Packet time (packet clock).
    public var timestamp: Timestamp = .zero
    /// Length on the wire, and the part that was captured (snap length).
    public var wireLength: Int = 0
    public var capturedLength: Int = 0
    /// Outermost 802.1Q VLAN id, or 0.
    public var vlan: UInt16 = 0
    /// IP version 4 or 6; 0 when the packet carries no IP.
    public var ipVersion: UInt8 = 0
    /// The upper-layer protocol after IPv6 extension headers.
    public var ipProtocol: UInt8 = 0
    public var ttl: UInt8 = 0
    public var source = IPAddress(high: 0, low: 0, isIPv6: false)
    public var destination = IPAddress(high: 0, low: 0, isIPv6: false)
    /// Ports (TCP/UDP/SCTP), or ICMP type/code as the Community ID spec maps them.
    public var sourcePort: UInt16 = 0
    public var destinationPort: UInt16 = 0
    public var hasPorts: Bool = false
    public var icmpType: UInt8 = 0
    public var icmpCode: UInt8 = 0
    public var tcpFlags = TCPFlags(rawValue: 0)
    public var tcpSequence: UInt32 = 0
    public var tcpAcknowledgement: UInt32 = 0
    public var tcpWindow: UInt16 = 0
    /// Fragment position: 0 none, 1 first fragment (ports decoded), 2 later fragment (no transport header).
    public var fragment: UInt8 = 0
    public var ipIdentification: UInt32 = 0
    /// Offsets into the captured bytes.
    public var networkOffset: Int = 0
    public var transportOffset: Int = 0
    public var payloadOffset: Int = 0
    /// Payload bytes the IP header says are there (may exceed what was captured).
    public var payloadLength: Int = 0

    @inlinable public init() {}

    /// The captured payload bytes within `packet`, cut to what IP says belongs to this packet (no trailer).
    @inlinable @inline(__always) public func payload(in packet: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        let start = min(payloadOffset, packet.count)
        let end = min(start + payloadLength, packet.count)
        return UnsafeRawBufferPointer(rebasing: packet[start..<end])
    }
}

/// Why a packet did not yield a flow. Each reason is counted, none is fatal.
public enum DecodeOutcome: UInt8, Sendable, CaseIterable {
    /// IP packet with transport information: goes to the flow table.
    case ok = 0
    /// Not IP (ARP, LLDP, STP, ...): counted, not a flow.
    case notIP
    /// Shorter than its headers claim.
    case truncated
    /// Headers that contradict themselves (bad version, header length, ...).
    case malformed
    /// A non-first IP fragment: no transport header to key a flow on.
    case laterFragment
    /// The capture's link type is not one we decode.
    case unsupportedLinkType

    public var name: StaticString {
        switch self {
        case .ok: return "ok"
        case .notIP: return "not_ip"
        case .truncated: return "truncated"
        case .malformed: return "malformed"
        case .laterFragment: return "later_fragment"
        case .unsupportedLinkType: return "unsupported_link_type"
        }
    }
}
