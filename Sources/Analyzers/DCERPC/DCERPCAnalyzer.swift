import Events
import PacketCore

/// Counters of the DCE-RPC-over-TCP analyser.
public struct DCERPCCounters: Sendable, Equatable {
    public var flows: UInt64 = 0
    public var pdus: UInt64 = 0
    public var desyncs: UInt64 = 0
    public var learnedPorts: UInt64 = 0
    /// Learned (server, port) endpoints forgotten because the table was full.
    public var learnedEvicted: UInt64 = 0
    public init() {}
}

/// DCE-RPC over TCP: the endpoint mapper (135) and the dynamic ports it hands out.
///
/// A flow is followed when it goes to port 135, to a (server, port) an `ept_map` response named, or when
/// its first bytes are a BIND/ALTER_CONTEXT/REQUEST header (dynamic ports whose mapping was missed, DCOM
/// object exporters named in activation replies). Client PDUs give binds, opnums and NTLMSSP identities;
/// server PDUs answering `ept_map` teach new endpoints.
public final class DCERPCAnalyzer: StreamConsumer {
    public let name = "dce_rpc"
    /// Strong on purpose: the detector holds no reference back, and a weakly referenced object pays the
    /// slow (side-table) reference count on every retain in the per-packet analyser loop.
    public var observer: (any RemoteAccessObserver)?
    public private(set) var counters = DCERPCCounters()
    public let messageCap: Int
    /// The worker's bound on PDU buffers (shared with its other stream parsers).
    let budget: ParserMemoryBudget
    /// Most (server, port) endpoints remembered from endpoint-mapper responses, oldest forgotten first.
    public let maxLearnedEndpoints: Int

    struct EndpointKey: Hashable { var server: IPAddress; var port: UInt16 }
    var learned: [EndpointKey: UInt64] = [:]
    var learnOrder: UInt64 = 0

    final class Flow {
        let generation: UInt32
        var assemblers = [MessageAssembler(), MessageAssembler()]
        var association = DCERPCAssociation()
        var facts = RPCFlowFacts()
        var signatures = SignatureSet()
        /// After a gap: bytes are skipped until one looks like a PDU header.
        var resyncing = [false, false]
        /// Desyncs so far; a stream that keeps failing to parse is not DCE-RPC and is dropped.
        var desyncs = 0
        init(generation: UInt32) { self.generation = generation }
    }
    var flows: [Int32: Flow] = [:]

    public init(messageCap: Int = 16 << 10, maxLearnedEndpoints: Int = 4096, budget: ParserMemoryBudget = ParserMemoryBudget()) {
        self.messageCap = messageCap
        self.budget = budget
        self.maxLearnedEndpoints = maxLearnedEndpoints
    }

    public func isLearned(server: IPAddress, port: UInt16) -> Bool { learned[EndpointKey(server: server, port: port)] != nil }

    public func wantsStream(_ flow: FlowRecord, slot: Int32, firstPayload: UnsafeRawBufferPointer, fromOriginator: Bool) -> Bool {
        let port = flow.responderPort
        // Every TCP flow with payload is asked: the learned table is hashed only when it holds something.
        var want = port == 135 || flow.originatorPort == 135
            || (!learned.isEmpty && learned[EndpointKey(server: flow.responder, port: port)] != nil)
        if !want, let h = DCERPC.header(firstPayload), h.fragmentLength >= 24,
           h.type == DCERPC.PacketType.bind.rawValue || h.type == DCERPC.PacketType.alterContext.rawValue
            || h.type == DCERPC.PacketType.request.rawValue || h.type == DCERPC.PacketType.response.rawValue {
            want = true
        }
        // Joined mid-stream (no handshake seen: a capture that began during a long replication session),
        // the first bytes may be the middle of a PDU: follow the flow from the first request or response
        // header in them, the way the analyser realigns after a gap.
        var realign = false
        if !want && flow.tcpState == .none, DCERPC.firstPDUOffset(firstPayload) != nil {
            want = true
            realign = true
        }
        guard want else { return false }
        let f = Flow(generation: flow.generation)
        if realign { f.resyncing[fromOriginator ? 0 : 1] = true }
        f.association.onEndpointMapperPort = port == 135 || flow.originatorPort == 135
        flows[slot] = f
        counters.flows &+= 1
        return true
    }

    public func stream(_ data: UnsafeRawBufferPointer, fromOriginator: Bool, slot: Int32, flows table: FlowTable, at time: Timestamp) -> StreamVerdict {
        guard let f = flows[slot] else { return .doneWithFlow }
        let record = table[slot]
        guard record.generation == f.generation else { return .doneWithFlow }
        let d = fromOriginator ? 0 : 1
        var data = data
        if f.resyncing[d] {
            // Realign: the first position that parses as a PDU header.
            var i = 0
            while i + DCERPC.headerLength <= data.count && DCERPC.header(UnsafeRawBufferPointer(rebasing: data[i...])) == nil { i += 1 }
            guard i + DCERPC.headerLength <= data.count else { return .more }
            data = UnsafeRawBufferPointer(rebasing: data[i...])
            f.resyncing[d] = false
        }
        let outcome = f.assemblers[d].feed(data, headerLength: DCERPC.headerLength, cap: messageCap, budget: budget,
                                           lengthOf: DCERPC.fragmentLength) { pdu, _ in
            f.resyncing[fromOriginator ? 0 : 1] = false
            counters.pdus &+= 1
            if record.appProtocol == 0 { table.setAppProtocol(AppProtocol.dceRPC.rawValue, slot: slot) }
            // Direction from the PDU type, not from who spoke first: a midstream capture may begin with a reply.
            let type = pdu[2]
            let fromClient = type == DCERPC.PacketType.request.rawValue || type == DCERPC.PacketType.bind.rawValue
                || type == DCERPC.PacketType.alterContext.rawValue || type == DCERPC.PacketType.auth3.rawValue
            let ep = fromClient == fromOriginator
                ? SessionEndpoints(client: record.originator, server: record.responder, serverPort: record.responderPort)
                : SessionEndpoints(client: record.responder, server: record.originator, serverPort: record.originatorPort)
            if fromClient {
                f.association.clientPDU(pdu) { event in
                    switch event {
                    case .bind(let iface):
                        f.facts.bind(iface)
                        observer?.observe(.rpcBind(iface), on: ep, at: time)
                    case .call(let iface, let opnum):
                        f.facts.call(iface, opnum)
                        observer?.observe(.rpcCall(interface: iface, opnum: opnum, pipe: nil), on: ep, at: time)
                    case .activation(let className):
                        if let c = className { f.facts.activations.insert(c) }
                        observer?.observe(.dcomActivation(className: className), on: ep, at: time)
                    case .wmiProcessCreate:
                        f.facts.activations.insert("Win32_Process")
                        observer?.observe(.wmiProcessCreate, on: ep, at: time)
                    case .signature(let sig):
                        if f.signatures.insert(sig) { observer?.observe(.exploit(sig), on: ep, at: time) }
                    case .inferredCall(let iface, let opnum):
                        f.facts.inferred(iface, opnum)
                        observer?.observe(.rpcCallInferred(interface: iface, opnum: opnum), on: ep, at: time)
                    case .ntlm(let auth):
                        if let a = NTLMSSP.authenticate(in: auth), !a.anonymous {
                            f.facts.users.insert(a.user)
                            observer?.observe(.authentication(AuthenticationAttempt(method: .ntlm, user: a.user, domain: a.domain, workstation: a.workstation, success: nil, status: 0)), on: ep, at: time)
                        }
                    }
                }
            } else {
                for port in f.association.serverPDU(pdu) { learn(server: ep.server, port: port) }
            }
        }
        if outcome == .refused { return .doneWithDirection }
        if outcome == .desync {
            counters.desyncs &+= 1
            f.desyncs += 1
            if f.desyncs > 8 { return .doneWithFlow }
            f.assemblers[d].reset()
            f.resyncing[d] = true
        }
        return .more
    }

    func learn(server: IPAddress, port: UInt16) {
        let key = EndpointKey(server: server, port: port)
        learnOrder &+= 1
        if learned[key] == nil {
            counters.learnedPorts &+= 1
            if learned.count >= maxLearnedEndpoints, let oldest = learned.min(by: { $0.value < $1.value }) {
                learned[oldest.key] = nil
                counters.learnedEvicted &+= 1
            }
        }
        learned[key] = learnOrder
    }

    /// PDUs start with a recognisable header, so after a hole the analyser realigns on the next one.
    public var resumesAfterGap: Bool { true }

    public func gap(fromOriginator: Bool, slot: Int32, flows: FlowTable, at time: Timestamp) {
        guard let f = self.flows[slot] else { return }
        f.assemblers[fromOriginator ? 0 : 1].reset()
        f.resyncing[fromOriginator ? 0 : 1] = true
    }

    public func streamEnded(_ flow: FlowRecord, slot: Int32) {
        flows[slot] = nil
    }

    public func contributeStreamFields(_ flow: FlowRecord, slot: Int32, into w: inout JSONWriter) {
        guard let f = flows[slot], f.generation == flow.generation else { return }
        f.facts.write(into: &w, signatures: f.signatures)
    }
}
