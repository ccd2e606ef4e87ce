import Analyzers
import ConfigKit
import Detectors
import Events
import Foundation

/// Builds the SMB, DCE-RPC and Kerberos analysers and the lateral-movement detector they feed.
///
/// The analysers always run (their `smb.*`/`dce_rpc.*` flow fields are useful on their own); the detector
/// runs unless `Rules/lateral-movement.yaml` says `enabled: false`. It is appended after the analysers,
/// so on a flow's end it sees the facts its last packets produced.
enum LateralMovementWiring {
    static func rules(_ configuration: SensorConfiguration) throws -> LateralMovementRules {
        guard let dir = RulesDirectory.resolve(configuration.rulesDirectory) else { return LateralMovementRules() }
        let path = "\(dir)/\(LateralMovementRules.fileName)"
        guard FileManager.default.fileExists(atPath: path) else { return LateralMovementRules() }
        return try LateralMovementRules.load(path: path)
    }

    static func add(to analyzers: inout [any PacketAnalyzer], reassembler: StreamReassembler,
                    configuration: SensorConfiguration, emitter: EventEmitter) throws {
        let rules = try rules(configuration)
        let smb = SMBAnalyzer()
        let rpc = DCERPCAnalyzer()
        let kerberos = KerberosAnalyzer()
        reassembler.add(smb)
        reassembler.add(rpc)
        reassembler.add(kerberos)
        analyzers.append(kerberos)
        guard rules.enabled else { return }
        let detector = LateralMovementDetector(rules: rules, emitter: emitter)
        smb.observer = detector
        rpc.observer = detector
        kerberos.observer = detector
        analyzers.append(detector)
    }
}
