import Analyzers
import Detectors
import PacketCore

/// What workers tell the host-level detectors: self-contained facts, never one per packet of a flow
/// (one per flow end, new TCP flow, SYN-ACK, lateral-movement fact, DNS message, HTTP request, or UDP
/// request after a silence).
///
/// The detectors that aggregate across flows decide from these alone (never from a worker's flow table
/// or side tables), so the same detectors run inline in replay and behind per-worker rings live, and
/// could run in another process. `HostFactCodec` is the one wire form of this enum.
public enum HostFact {
    /// The worker's packet clock started (the lateral-movement learning period counts from it).
    case clockStarted(Timestamp)
    /// A flow ended or was reported at an active timeout: its record plus the analysers' labels.
    case flowEnded(FlowRecord, FlowEndReason, FlowLabels)
    /// The first packet of a new TCP flow (lateral fan-out).
    case tcpFlowStarted(source: IPAddress, destination: IPAddress, port: UInt16, at: Timestamp)
    /// A SYN-ACK (lateral first-seen remote-access edges).
    case tcpAccepted(server: IPAddress, client: IPAddress, port: UInt16, at: Timestamp)
    /// An SMB / DCE-RPC / Kerberos fact with its session endpoints.
    case remoteAccess(RemoteAccessFact, SessionEndpoints, at: Timestamp)
    /// A parsed DNS message with its first question name. Its name views are valid only during the
    /// call that hands the fact over (they point into the analyser's or the record's bytes).
    case dnsMessage(DNSMessageFacts)
    /// A flow end judged on another shard (several shards): its record only, so this shard's
    /// non-standard-port detector learns port popularity from every session, as with one shard.
    case flowElsewhere(FlowRecord)
    /// A worker's pipeline ticked (its packet clock passed a second): the stage ticks its detectors at
    /// the first such time past each second, so with one worker it ticks exactly when the pipeline does.
    case tick(Timestamp)
    /// An FTP data connection announced on a control connection: to every shard, since the data
    /// connection's originator may be on any.
    case ftpDataAnnounced(FTPDataChannels.Expected, at: Timestamp)
    /// An HTTP request head (beaconing per request inside keep-alive connections).
    case httpRequest(HTTPRequestFact)
    /// A UDP datagram that resumed its flow after a silence (beaconing from a fixed source port).
    case udpRequest(UDPRequestFact)

    /// Inlined: a call would copy the whole fact to read its tag.
    @inline(__always) public var kind: HostFactKind {
        switch self {
        case .clockStarted: return .clockStarted
        case .flowEnded: return .flowEnded
        case .tcpFlowStarted: return .tcpFlowStarted
        case .tcpAccepted: return .tcpAccepted
        case .remoteAccess: return .remoteAccess
        case .dnsMessage: return .dnsMessage
        case .flowElsewhere: return .flowElsewhere
        case .tick: return .tick
        case .ftpDataAnnounced: return .ftpDataAnnounced
        case .httpRequest: return .httpRequest
        case .udpRequest: return .udpRequest
        }
    }
}

/// The kinds of `HostFact` (the record's tag on the wire).
public enum HostFactKind: UInt8, CaseIterable, Sendable {
    case clockStarted = 1
    case flowEnded = 2
    case tcpFlowStarted = 3
    case tcpAccepted = 4
    case remoteAccess = 5
    case dnsMessage = 6
    case flowElsewhere = 7
    case tick = 8
    case ftpDataAnnounced = 9
    case httpRequest = 10
    case udpRequest = 11
}

/// A set of fact kinds: what a host detector reads, so workers encode only what some detector wants.
public struct HostFactKinds: OptionSet, Sendable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    public init(_ kinds: HostFactKind...) {
        rawValue = kinds.reduce(0) { $0 | 1 << UInt16($1.rawValue) }
    }
    public func contains(_ k: HostFactKind) -> Bool { rawValue & 1 << UInt16(k.rawValue) != 0 }
}
