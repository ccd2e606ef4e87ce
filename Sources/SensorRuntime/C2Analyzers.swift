import Analyzers
import ConfigKit
import Detectors
import Events

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
        let tls = TLSAnalyzer(flowCapacity: configuration.flows.capacity)
        let http = HTTPAnalyzer()
        reassembler.add(identifier)
        reassembler.add(tls)
        reassembler.add(http)
        return [
            identifier, tls, http,
            NonStandardPortDetector(rules: c2Rules, emitter: emitter, identifier: identifier, tls: tls, http: http),
            BeaconDetector(rules: beaconRules, emitter: emitter, tls: tls, http: http, standardPorts: c2Rules.standardPorts),
        ]
    }

    /// `check-rules`: every problem in `c2.yaml` and `beaconing.yaml`, with lines.
    static func checkRules(_ dir: String) -> [ConfigIssue] {
        var issues: [ConfigIssue] = []
        do { _ = try C2PortRules.load(directory: dir) } catch { issues += error.issues }
        do { _ = try BeaconRules.load(directory: dir) } catch { issues += error.issues }
        return issues
    }
}
