import PacketCore

/// Everything an analyser or detector sees of one packet that belongs to a flow.
public struct PacketContext {
    public var packet: DecodedPacket
    /// The captured frame (libpcap's buffer; valid only during the call).
    public var frame: UnsafeRawBufferPointer
    public var linkType: LinkType
    /// The flow's slot in the worker's table: an index for per-flow side tables.
    public var slot: Int32
    public var fromOriginator: Bool
    public var isNewFlow: Bool

    public init(packet: DecodedPacket, frame: UnsafeRawBufferPointer, linkType: LinkType, slot: Int32, fromOriginator: Bool, isNewFlow: Bool) {
        self.packet = packet
        self.frame = frame
        self.linkType = linkType
        self.slot = slot
        self.fromOriginator = fromOriginator
        self.isNewFlow = isNewFlow
    }

    /// The transport payload of this packet (what IP says belongs to it, cut to what was captured).
    @inlinable @inline(__always) public var payload: UnsafeRawBufferPointer { packet.payload(in: frame) }
}

/// The hook analysers and detectors plug into, one instance per worker (so no locks).
///
/// Following Zeek's split, analysers extract facts (DNS, SMB, TLS, …) and detectors decide; both see
/// the same calls. Per-flow state lives in side tables indexed by `slot` (check `FlowRecord.generation`
/// or clear the slot in `flowEnded`), per-host state in the detector itself, bounded and evicted with
/// counters. Alerts and fact events go out through the `EventEmitter` the analyser was built with.
public protocol PacketAnalyzer: AnyObject {
    /// A short name for logs and counters.
    var name: String { get }
    /// Every packet of a flow, after the flow table accounted it. Must not allocate on the common path.
    func packet(_ context: PacketContext, flows: FlowTable)
    /// Adds ECS fields to the flow's `spanwatch.flow` event (e.g. `network.protocol`, `tls.*`) before it is written.
    /// Writes members of the top-level event object.
    func contributeFlowFields(_ flow: FlowRecord, slot: Int32, into writer: inout JSONWriter)
    /// Adds fields outside ECS to the flow's event (e.g. `spanwatch.smb.*`): writes members of the vendor
    /// object `spanwatch`, beside `spanwatch.flow`, so every custom field lives under the one vendor namespace.
    func contributeVendorFields(_ flow: FlowRecord, slot: Int32, into writer: inout JSONWriter)
    /// The flow ended or was reported at an active timeout (`reason == .activeTimeout`: it continues).
    func flowEnded(_ flow: FlowRecord, reason: FlowEndReason, slot: Int32)
    /// The packet clock passed another whole second: windows, periodic scoring, timeouts.
    func tick(_ now: Timestamp)
    /// End of input or shutdown: report what is pending.
    func finish(_ now: Timestamp)
    /// False for analysers that only need to hear about new flows (`flowStarted`), not every packet:
    /// the pipeline then leaves them out of the per-packet loop entirely (threat-intel address matching).
    var wantsEveryPacket: Bool { get }
    /// True to be told of each new flow at its first packet, through `flowStarted`.
    var wantsFlowStart: Bool { get }
    /// A flow was created by the packet at `time` (its record already counts that packet).
    func flowStarted(_ flow: FlowRecord, slot: Int32, at time: Timestamp)
    /// True to also be given the IP packets that make no flow, through `packetWithoutFlow`: later
    /// fragments, and packets whose transport header is cut or malformed before the ports. Evidence
    /// capture needs them (a host scope, like tcpdump's `ip host` filter, selects them); analysers of
    /// flows do not.
    var wantsPacketsWithoutFlow: Bool { get }
    /// One such packet; `context.slot` is -1 and the flow fields are false.
    func packetWithoutFlow(_ context: PacketContext)
    /// The transports whose packets `packet` does anything with: the pipeline does not call it for the
    /// others (a UDP-only analyser costs a TCP packet nothing). Every transport unless narrowed.
    var packetTransports: PacketTransports { get }
}

/// Transports, as `PacketAnalyzer.packetTransports` selects packets by them.
public struct PacketTransports: OptionSet, Sendable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let tcp = PacketTransports(rawValue: 1)
    public static let udp = PacketTransports(rawValue: 2)
    /// Every other IP protocol (ICMP, SCTP, GRE, …).
    public static let other = PacketTransports(rawValue: 4)
    public static let all: PacketTransports = [.tcp, .udp, .other]

    /// The transport of a packet's IP protocol.
    @inlinable public static func of(_ ipProtocol: UInt8) -> PacketTransports {
        ipProtocol == IPProtocol.tcp ? .tcp : ipProtocol == IPProtocol.udp ? .udp : .other
    }
}

extension PacketAnalyzer {
    public func contributeFlowFields(_ flow: FlowRecord, slot: Int32, into writer: inout JSONWriter) {}
    public func contributeVendorFields(_ flow: FlowRecord, slot: Int32, into writer: inout JSONWriter) {}
    public func flowEnded(_ flow: FlowRecord, reason: FlowEndReason, slot: Int32) {}
    public func tick(_ now: Timestamp) {}
    public func finish(_ now: Timestamp) {}
    public var wantsEveryPacket: Bool { true }
    public var wantsFlowStart: Bool { false }
    public func flowStarted(_ flow: FlowRecord, slot: Int32, at time: Timestamp) {}
    public var wantsPacketsWithoutFlow: Bool { false }
    public func packetWithoutFlow(_ context: PacketContext) {}
    public var packetTransports: PacketTransports { .all }
}

/// The per-packet and per-flow-event calls into a pipeline's analysers, made without reference counting
/// (`UnretainedCalls`): calling `packet` through an `any PacketAnalyzer` loaded from an array retains and
/// releases the analyser around every call, about a tenth of the whole pipeline's CPU with the default
/// analysers on (and two pairs per analyser for each flow event, whose fields every analyser is asked
/// for). Each analyser sits in a small typed box whose `packet` calls the concrete analyser directly.
public struct PacketAnalyzerCalls: ~Copyable {
    @usableFromInline let calls: UnretainedCalls<PacketCallBox>
    /// Each analyser's `packetTransports`, beside its call.
    @usableFromInline let transports: UnsafeMutableBufferPointer<UInt8>

    public init(_ analyzers: [any PacketAnalyzer]) {
        calls = UnretainedCalls(analyzers.map { Self.box($0) })
        transports = .allocate(capacity: analyzers.count)
        for (i, a) in analyzers.enumerated() { transports[i] = a.packetTransports.rawValue }
    }

    deinit { transports.deallocate() }

    /// Opens the existential once, at set-up, so the box calls the concrete type.
    private static func box<A: PacketAnalyzer>(_ a: A) -> PacketCallBox { TypedPacketCallBox(a) }

    @inlinable public var isEmpty: Bool { calls.isEmpty }

    /// Every analyser's `packet` that takes the packet's transport, in order.
    @inlinable
    public func packet(_ context: PacketContext, flows: FlowTable) {
        let transport = PacketTransports.of(context.packet.ipProtocol).rawValue
        for i in 0..<calls.count where transports[i] & transport != 0 {
            calls.with(i) { $0.packet(context, flows: flows) }
        }
    }

    /// Every analyser's `contributeFlowFields`, in order.
    public func contributeFlowFields(_ flow: FlowRecord, slot: Int32, into writer: inout JSONWriter) {
        calls.forEach { $0.contributeFlowFields(flow, slot: slot, into: &writer) }
    }

    /// Every analyser's `contributeVendorFields`, in order.
    public func contributeVendorFields(_ flow: FlowRecord, slot: Int32, into writer: inout JSONWriter) {
        calls.forEach { $0.contributeVendorFields(flow, slot: slot, into: &writer) }
    }
}

/// The virtual-call base of `PacketAnalyzerCalls`; only `TypedPacketCallBox` derives from it.
@usableFromInline
class PacketCallBox {
    @usableFromInline func packet(_ context: PacketContext, flows: FlowTable) { preconditionFailure("abstract") }
    func contributeFlowFields(_ flow: FlowRecord, slot: Int32, into writer: inout JSONWriter) { preconditionFailure("abstract") }
    func contributeVendorFields(_ flow: FlowRecord, slot: Int32, into writer: inout JSONWriter) { preconditionFailure("abstract") }
}

final class TypedPacketCallBox<A: PacketAnalyzer>: PacketCallBox {
    let analyzer: A
    init(_ analyzer: A) { self.analyzer = analyzer }
    override func packet(_ context: PacketContext, flows: FlowTable) { analyzer.packet(context, flows: flows) }
    override func contributeFlowFields(_ flow: FlowRecord, slot: Int32, into writer: inout JSONWriter) {
        analyzer.contributeFlowFields(flow, slot: slot, into: &writer)
    }
    override func contributeVendorFields(_ flow: FlowRecord, slot: Int32, into writer: inout JSONWriter) {
        analyzer.contributeVendorFields(flow, slot: slot, into: &writer)
    }
}
