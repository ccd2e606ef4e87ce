import Analyzers
import ConfigKit
import Detectors
import Events
import PacketCore

/// Builds the C2 family: content-based protocol identification and the TLS, HTTP (consumers of the shared
/// TCP reassembly) and QUIC analysers. The non-standard-port and beacon detectors that decide from their
/// facts aggregate across flows, so they run in the host-level stage (`HostDetectorSet`); each flow end
/// carries these analysers' per-flow facts there (`FlowLabels`). Rules come from `c2.yaml` and
/// `beaconing.yaml` in the rules directory.
public enum C2Analyzers {
    static func make(configuration: SensorConfiguration, emitter: EventEmitter,
                     reassembler: StreamReassembler, hostFacts: HostFactPublisher) throws -> [any PacketAnalyzer] {
        let identifier = ProtocolIdentifier(flowCapacity: configuration.flows.capacity)
        let tls = TLSAnalyzer(flowCapacity: configuration.flows.capacity, emitter: emitter, budget: reassembler.parserBudget)
        let http = HTTPAnalyzer(emitter: emitter, budget: reassembler.parserBudget)
        let quic = QUICAnalyzer(flowCapacity: configuration.flows.capacity, tls: tls)
        reassembler.add(identifier)
        reassembler.add(tls)
        reassembler.add(http)
        hostFacts.identifier = identifier
        identifier.ftpDataObserver = hostFacts
        hostFacts.tls = tls
        hostFacts.http = http
        hostFacts.flowEndsFromC2 = true
        return [C2Family(identifier: identifier, tls: tls, http: http, quic: quic, hostFacts: hostFacts)]
    }

    /// `check-rules`: every problem in `c2.yaml` and `beaconing.yaml`, with lines.
    static func checkRules(_ dir: String) -> [ConfigIssue] {
        var issues: [ConfigIssue] = []
        do { _ = try C2PortRules.load(directory: dir) } catch { issues += error.issues }
        do { _ = try BeaconRules.load(directory: dir) } catch { issues += error.issues }
        return issues
    }
}

/// The C2 analysers as one pipeline member: the pipeline makes one call per packet for all of them
/// (only identification and QUIC Initials of UDP look at packets; TCP arrives through the reassembler),
/// and each part still gets the flow-end and tick calls it needs. A flow's end goes to the host-level
/// stage here, with the analysers' facts, before QUIC releases its share of them.
final class C2Family: PacketAnalyzer {
    let name = "c2"
    let identifier: ProtocolIdentifier
    let tls: TLSAnalyzer
    let http: HTTPAnalyzer
    /// Reads the ClientHello of QUIC flows from their first client Initial packets into `tls`'s facts.
    let quic: QUICAnalyzer
    let hostFacts: HostFactPublisher

    init(identifier: ProtocolIdentifier, tls: TLSAnalyzer, http: HTTPAnalyzer, quic: QUICAnalyzer, hostFacts: HostFactPublisher) {
        self.identifier = identifier
        self.tls = tls
        self.http = http
        self.quic = quic
        self.hostFacts = hostFacts
    }

    func packet(_ context: PacketContext, flows: FlowTable) {
        if context.packet.ipProtocol == IPProtocol.udp {
            identifier.packet(context, flows: flows)
            quic.packet(context, flows: flows)
        } else if context.packet.tcpFlags.contains(.syn) {
            identifier.packet(context, flows: flows)  // a SYN's MPTCP MP_JOIN option: the subflow starts mid-stream
        }
    }

    func contributeFlowFields(_ flow: FlowRecord, slot: Int32, into writer: inout JSONWriter) {
        tls.contributeFlowFields(flow, slot: slot, into: &writer)
        http.contributeFlowFields(flow, slot: slot, into: &writer)
    }

    func flowEnded(_ flow: FlowRecord, reason: FlowEndReason, slot: Int32) {
        hostFacts.flowEnded(flow, reason: reason, slot: slot)
        quic.flowEnded(flow, reason: reason, slot: slot)
    }

    func tick(_ now: Timestamp) {
        tls.tick(now)
        http.tick(now)
    }
}
