import Analyzers
import ConfigKit
import Detectors
import Events
import Foundation
import PacketCore

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
        var detector: LateralMovementDetector?
        if rules.enabled {
            let d = LateralMovementDetector(rules: rules, emitter: emitter)
            smb.observer = d
            rpc.observer = d
            kerberos.observer = d
            detector = d
        }
        analyzers.append(LateralMovementTap(kerberos: kerberos, detector: detector))
    }
}

/// One entry in the pipeline's per-packet analyser loop for the Kerberos datagram analyser and the
/// detector: these two are cheap per packet, so one virtual call for both (direct calls on the concrete
/// `let`s below) rather than two entries in the loop.
final class LateralMovementTap: PacketAnalyzer {
    let name = "lateral-movement"
    let kerberos: KerberosAnalyzer
    let detector: LateralMovementDetector?

    init(kerberos: KerberosAnalyzer, detector: LateralMovementDetector?) {
        self.kerberos = kerberos
        self.detector = detector
    }

    func packet(_ context: PacketContext, flows: FlowTable) {
        kerberos.packet(context, flows: flows)
        detector?.packet(context, flows: flows)
    }

    func flowEnded(_ flow: FlowRecord, reason: FlowEndReason, slot: Int32) {
        kerberos.flowEnded(flow, reason: reason, slot: slot)
        detector?.flowEnded(flow, reason: reason, slot: slot)
    }

    func tick(_ now: Timestamp) { detector?.tick(now) }
    func finish(_ now: Timestamp) { detector?.finish(now) }
}
