import Analyzers
import PacketCore

/// What the flow-end detectors read of a flow besides its `FlowRecord`: the per-flow facts the TLS,
/// HTTP and protocol-identification analysers hold in their slot-indexed side tables.
///
/// Copied out on the worker that owns the flow, so a detector that aggregates across flows can run
/// elsewhere (the host-sharded aggregation stage, docs/LIVE.md) and still decide exactly as it would
/// beside the analysers. The strings are the analysers' own (SNI as sent, HTTP Host lower-cased
/// without port), bounded in length by whoever transports them.
public struct FlowLabels: Sendable, Equatable {
    /// The TLS analyser holds facts for this flow (a ClientHello or ServerHello was read).
    public var hasTLS = false
    /// The ClientHello's SNI (nil without one).
    public var serverName: String?
    /// A ClientHello was read (TLS over TCP, or QUIC's from its Initial packets).
    public var hasClientHello = false
    /// For a ClientHello without SNI only (what the bare-IP rule reads): its ALPN list, JA3 and JA4.
    public var alpn: [String] = []
    public var ja3: String?
    public var ja4: String?
    /// The HTTP analyser holds facts for this flow.
    public var hasHTTP = false
    /// The first request's Host, lower-cased, without port (nil without one).
    public var httpHost: String?
    /// Content identification ended without naming a protocol.
    public var identifiedUnknown = false

    public init() {}

    /// Reads the labels of the flow in `slot` from the analysers that hold them.
    public init(_ flow: FlowRecord, slot: Int32, identifier: ProtocolIdentifier?, tls: TLSAnalyzer?, http: HTTPAnalyzer?) {
        // The facts are read in place: copying them out would retain every buffer of the hello or heads.
        hasTLS = tls?.withFacts(slot: slot, generation: flow.generation) { f in
            serverName = f.serverName
            guard let hello = f.client else { return }
            hasClientHello = true
            if hello.serverName == nil {
                alpn = hello.alpn.map { String(decoding: $0, as: UTF8.self) }
                ja3 = f.ja3
                ja4 = f.ja4
            }
        } ?? false
        hasHTTP = http?.withFacts(slot: slot, generation: flow.generation) { f in httpHost = f.hostName } ?? false
        if let identifier {
            identifiedUnknown = identifier.identification(slot: slot, generation: flow.generation) == .unknown
        }
    }
}
