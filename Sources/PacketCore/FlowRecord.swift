/// One bidirectional flow's state. Lives in the flow table's slot array; read by analysers and detectors.
///
/// Counters are kept per canonical side (A/B of the key); the originator is the side that sent the first
/// packet (or the SYN, when the first packet seen was a SYN-ACK). Accessors translate to originator/responder.
public struct FlowRecord: Sendable, BitwiseCopyable {
    public var key: FlowKey
    /// Side A of the key is the originator.
    public var originatorIsA: Bool
    public var tcpState: TCPState
    /// Cumulative TCP flags sent by each side.
    public var flagsA: TCPFlags
    public var flagsB: TCPFlags
    public var vlan: UInt16
    /// Application protocol tag set by analysers (`AppProtocol`), 0 until identified.
    public var appProtocol: UInt8
    /// Which expiry list the flow is on (`FlowTable.ListClass`).
    @usableFromInline var listClass: UInt8
    public var firstSeen: Timestamp
    public var lastSeen: Timestamp
    /// Start of the current reporting segment (differs from `firstSeen` after an active-timeout report).
    public var segmentStart: Timestamp
    public var packetsA: UInt64
    public var packetsB: UInt64
    public var bytesA: UInt64
    public var bytesB: UInt64
    public var payloadBytesA: UInt64
    public var payloadBytesB: UInt64
    /// Packet clock at the flow's last packet (idle expiry), and when it was last moved to its list's tail.
    @usableFromInline var lastActive: Timestamp
    @usableFromInline var listTime: Timestamp
    @usableFromInline var prev: Int32
    @usableFromInline var next: Int32
    @usableFromInline var hash: UInt32
    /// Bumped every time the slot is reused, so analysers' side tables can tell a new flow from an old one.
    public var generation: UInt32

    @inlinable public var originator: IPAddress { originatorIsA ? key.a : key.b }
    @inlinable public var responder: IPAddress { originatorIsA ? key.b : key.a }
    @inlinable public var originatorPort: UInt16 { originatorIsA ? key.aPort : key.bPort }
    @inlinable public var responderPort: UInt16 { originatorIsA ? key.bPort : key.aPort }
    @inlinable public var originatorPackets: UInt64 { originatorIsA ? packetsA : packetsB }
    @inlinable public var responderPackets: UInt64 { originatorIsA ? packetsB : packetsA }
    @inlinable public var originatorBytes: UInt64 { originatorIsA ? bytesA : bytesB }
    @inlinable public var responderBytes: UInt64 { originatorIsA ? bytesB : bytesA }
    @inlinable public var originatorPayloadBytes: UInt64 { originatorIsA ? payloadBytesA : payloadBytesB }
    @inlinable public var responderPayloadBytes: UInt64 { originatorIsA ? payloadBytesB : payloadBytesA }
    @inlinable public var originatorFlags: TCPFlags { originatorIsA ? flagsA : flagsB }
    @inlinable public var responderFlags: TCPFlags { originatorIsA ? flagsB : flagsA }
    @inlinable public var duration: Timestamp.Duration { lastSeen - segmentStart }

    /// ICMP type and code (originator's message) for ICMP flows, from the key's port equivalents.
    @inlinable public var icmpType: UInt8 { UInt8(truncatingIfNeeded: originatorPort) }

    /// A TCP connection whose handshake completed, or that carried data both ways (handshake missed).
    @inlinable public var isEstablished: Bool {
        if key.ipProtocol != IPProtocol.tcp { return packetsA > 0 && packetsB > 0 }
        return tcpState.rawValue >= TCPState.established.rawValue && tcpState != .rejected
    }
}

/// A compact TCP connection state, enough to tell failed attempts from real sessions and to know when
/// a connection has closed.
public enum TCPState: UInt8, Sendable, BitwiseCopyable {
    /// Not TCP, or TCP seen mid-stream without a handshake yet.
    case none = 0
    /// SYN seen, no answer.
    case synSent = 1
    /// SYN answered with RST.
    case rejected = 2
    /// SYN-ACK seen (or data in both directions mid-stream).
    case established = 3
    /// One side sent FIN.
    case closing = 4
    /// Both sides sent FIN.
    case closed = 5
    /// RST after establishment.
    case reset = 6

    public var name: StaticString {
        switch self {
        case .none: return "none"
        case .synSent: return "syn_sent"
        case .rejected: return "rejected"
        case .established: return "established"
        case .closing: return "closing"
        case .closed: return "closed"
        case .reset: return "reset"
        }
    }

    @inlinable public var isFinished: Bool {
        @inline(__always) get { self == .closed || self == .reset || self == .rejected }
    }
}

/// Why a flow record was reported.
public enum FlowEndReason: UInt8, Sendable {
    case idleTimeout, activeTimeout, tcpClosed, evicted, reused, endOfInput

    public var name: StaticString {
        switch self {
        case .idleTimeout: return "idle_timeout"
        case .activeTimeout: return "active_timeout"
        case .tcpClosed: return "tcp_closed"
        case .evicted: return "evicted"
        case .reused: return "port_reused"
        case .endOfInput: return "end_of_input"
        }
    }
}
