import Analyzers
import ConfigKit
import Detectors
import Events
import PacketCore

/// Builds the C2 family: content-based protocol identification, the TLS and HTTP analysers (all three
/// consumers of the shared TCP reassembly), and the non-standard-port and beacon detectors that decide
/// from their facts. Rules come from `c2.yaml` and `beaconing.yaml` in the rules directory.
public enum C2Analyzers {
    public static func make(configuration: SensorConfiguration, emitter: EventEmitter,
                            reassembler: StreamReassembler) throws -> [any PacketAnalyzer] {
        let dir = RulesDirectory.resolve(configuration.rulesDirectory)
        let c2Rules = try C2PortRules.load(directory: dir)
        let beaconRules = try BeaconRules.load(directory: dir)
        let identifier = ProtocolIdentifier(flowCapacity: configuration.flows.capacity)
        let tls = TLSAnalyzer(flowCapacity: configuration.flows.capacity, emitter: emitter)
        let http = HTTPAnalyzer(emitter: emitter)
        let quic = QUICAnalyzer(flowCapacity: configuration.flows.capacity, tls: tls)
        reassembler.add(identifier)
        reassembler.add(tls)
        reassembler.add(http)
        return [C2Family(
            identifier: identifier, tls: tls, http: http, quic: quic,
            portDetector: NonStandardPortDetector(rules: c2Rules, emitter: emitter, identifier: identifier, tls: tls, http: http),
            beaconDetector: BeaconDetector(rules: beaconRules, emitter: emitter, tls: tls, http: http, standardPorts: c2Rules.standardPorts))]
    }

    /// `check-rules`: every problem in `c2.yaml` and `beaconing.yaml`, with lines.
    static func checkRules(_ dir: String) -> [ConfigIssue] {
        var issues: [ConfigIssue] = []
        do { _ = try C2PortRules.load(directory: dir) } catch { issues += error.issues }
        do { _ = try BeaconRules.load(directory: dir) } catch { issues += error.issues }
        return issues
    }
}

/// The C2 family as one pipeline member: the pipeline makes one call per packet for all five parts
/// (only identification and QUIC Initials of UDP look at packets; TCP arrives through the reassembler), and each part
/// still gets the flow-end, tick and finish calls it needs, in order: analysers before detectors.
final class C2Family: PacketAnalyzer {
    let name = "c2"
    let identifier: ProtocolIdentifier
    let tls: TLSAnalyzer
    let http: HTTPAnalyzer
    /// Reads the ClientHello of QUIC flows from their first client Initial packets into `tls`'s facts.
    let quic: QUICAnalyzer
    let portDetector: NonStandardPortDetector
    let beaconDetector: BeaconDetector

    init(identifier: ProtocolIdentifier, tls: TLSAnalyzer, http: HTTPAnalyzer, quic: QUICAnalyzer, portDetector: NonStandardPortDetector, beaconDetector: BeaconDetector) {
        self.identifier = identifier
        self.tls = tls
        self.http = http
        self.quic = quic
        self.portDetector = portDetector
        self.beaconDetector = beaconDetector
    }

    func packet(_ context: PacketContext, flows: FlowTable) {
        if context.packet.ipProtocol == IPProtocol.udp {
            identifier.packet(context, flows: flows)
            quic.packet(context, flows: flows)
        }
    }

    func contributeFlowFields(_ flow: FlowRecord, slot: Int32, into writer: inout JSONWriter) {
        tls.contributeFlowFields(flow, slot: slot, into: &writer)
        http.contributeFlowFields(flow, slot: slot, into: &writer)
    }

    func flowEnded(_ flow: FlowRecord, reason: FlowEndReason, slot: Int32) {
        portDetector.flowEnded(flow, reason: reason, slot: slot)
        beaconDetector.flowEnded(flow, reason: reason, slot: slot)
        quic.flowEnded(flow, reason: reason, slot: slot)
    }

    func tick(_ now: Timestamp) {
        identifier.tick(now)
        tls.tick(now)
        http.tick(now)
        portDetector.tick(now)
        beaconDetector.tick(now)
    }

    func finish(_ now: Timestamp) {
        portDetector.finish(now)
        beaconDetector.finish(now)
    }
}
