import Analyzers
import ConfigKit
import Detectors
import Events
import HostStage
import Logging
import PacketCore

/// The C2 family (`c2: {enabled}`): content-based protocol identification and the TLS, HTTP (consumers
/// of the shared TCP reassembly) and QUIC analysers on each worker; the non-standard-port and beacon
/// detectors, which aggregate across flows, in the host-level stage, fed with each flow's end and these
/// analysers' labels of it. Rules: `c2.yaml`, `beaconing.yaml`.
struct C2Family: SensorFamily {
    let configuration: SensorConfiguration
    init(configuration: SensorConfiguration) { self.configuration = configuration }

    var name: String { "c2" }
    var isEnabled: Bool { configuration.c2Enabled }
    var documents: [any RulesDocument.Type] { [C2PortRules.self, BeaconRules.self] }
    var place: PipelinePlace { .labelsFlows }

    func makeAnalyzers(_ worker: inout WorkerContext, _: Void) throws -> [any PacketAnalyzer] {
        let capacity = configuration.flows.capacity
        let budget = worker.reassembler.parserBudget
        let identifier = ProtocolIdentifier(flowCapacity: capacity)
        let tls = TLSAnalyzer(flowCapacity: capacity, emitter: worker.emitter, budget: budget)
        let http = HTTPAnalyzer(emitter: worker.emitter, budget: budget, files: worker.reassembler.fileHashing,
                                transactionEvents: configuration.httpEvents)
        let quic = QUICAnalyzer(flowCapacity: capacity, tls: tls)
        worker.reassembler.add(identifier)
        worker.reassembler.add(tls)
        worker.reassembler.add(http)
        identifier.ftpDataObserver = worker.hostFacts
        if worker.hostFacts.wanted.contains(.httpRequest) { http.requestObserver = worker.hostFacts }
        worker.labeler = FlowLabeler(identifier: identifier, tls: tls, http: http)
        return [C2Analyzers(identifier: identifier, tls: tls, http: http, quic: quic)]
    }

    func hostDetectors(_ rules: RulesSet, _: Void) -> [HostDetectorFactory] {
        let c2 = rules[C2PortRules.self], beacon = rules[BeaconRules.self]
        var out: [HostDetectorFactory] = []
        if c2.enabled {
            out.append(HostDetectorFactory(name: "nonstandard_port_c2") {
                NonStandardPortDetector(rules: c2, emitter: $0)
            })
        }
        if beacon.enabled {
            out.append(HostDetectorFactory(name: "beaconing") {
                BeaconDetector(rules: beacon, emitter: $0, standardPorts: c2.standardPorts)
            })
        }
        return out
    }
}

/// The C2 analysers as one pipeline member: the pipeline makes one call per packet for all of them
/// (only identification — UDP, and TCP SYNs for MPTCP joins — and QUIC Initials look at packets; TCP
/// payload arrives through the reassembler),
/// and each part still gets the flow-end and tick calls it needs.
final class C2Analyzers: PacketAnalyzer {
    let name = "c2"
    let identifier: ProtocolIdentifier
    let tls: TLSAnalyzer
    let http: HTTPAnalyzer
    /// Reads the ClientHello of QUIC flows from their first client Initial packets into `tls`'s facts.
    let quic: QUICAnalyzer

    init(identifier: ProtocolIdentifier, tls: TLSAnalyzer, http: HTTPAnalyzer, quic: QUICAnalyzer) {
        self.identifier = identifier
        self.tls = tls
        self.http = http
        self.quic = quic
    }

    var packetTransports: PacketTransports { [.tcp, .udp] }

    func packet(_ context: PacketContext, flows: FlowTable) {
        if context.packet.ipProtocol == IPProtocol.udp {
            identifier.packet(context, flows: flows)
            quic.packet(context, flows: flows)
        } else if context.packet.tcpFlags.contains(.syn) {
            // A SYN's MPTCP MP_JOIN option: the subflow starts mid-stream.
            identifier.packet(context, flows: flows)
        }
    }

    func contributeFlowFields(_ flow: FlowRecord, slot: Int32, into writer: inout JSONWriter) {
        tls.contributeFlowFields(flow, slot: slot, into: &writer)
        http.contributeFlowFields(flow, slot: slot, into: &writer)
    }

    func contributeVendorFields(_ flow: FlowRecord, slot: Int32, into writer: inout JSONWriter) {
        tls.contributeVendorFields(flow, slot: slot, into: &writer)
        http.contributeVendorFields(flow, slot: slot, into: &writer)
    }

    /// QUIC releases its per-flow state; the TLS facts it filled stay readable until the next tick, so
    /// the host-fact tap (later in the pipeline) still labels the flow's end with them.
    func flowEnded(_ flow: FlowRecord, reason: FlowEndReason, slot: Int32) {
        quic.flowEnded(flow, reason: reason, slot: slot)
    }

    func tick(_ now: Timestamp) {
        tls.tick(now)
        http.tick(now)
    }
}
