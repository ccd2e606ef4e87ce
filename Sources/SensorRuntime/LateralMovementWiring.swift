import Analyzers
import ConfigKit
import Detectors
import Events
import Foundation
import PacketCore

/// Builds the SMB, DCE-RPC and Kerberos analysers and connects them to the lateral-movement detector.
///
/// The analysers always run (their `smb.*`/`dce_rpc.*` flow fields are useful on their own); the detector
/// runs unless `Rules/lateral-movement.yaml` says `enabled: false`. It aggregates per source host across
/// flows, so it lives in the host-level stage (`HostDetectorSet`): the analysers' facts reach it as
/// records through `HostFactTap`, which is appended after the analysers, so on a flow's end the stage
/// sees the facts its last packets produced before the flow end itself.
enum LateralMovementWiring {
    static func rules(_ configuration: SensorConfiguration) throws(ConfigIssues) -> LateralMovementRules {
        try rules(directory: RulesDirectory.resolve(configuration.rulesDirectory))
    }

    /// The detector's rules from a resolved rules directory (start and SIGHUP), or the built-in defaults.
    static func rules(directory dir: String?) throws(ConfigIssues) -> LateralMovementRules {
        guard let dir else { return LateralMovementRules() }
        let path = "\(dir)/\(LateralMovementRules.fileName)"
        return try LateralMovementRules.load(path: path, optional: true)
    }

    /// Registers the analysers; returns the Kerberos datagram analyser, which rides in `HostFactTap` (one
    /// per-packet entry for both).
    static func add(reassembler: StreamReassembler, hostFacts: HostFactPublisher) -> KerberosAnalyzer {
        let smb = SMBAnalyzer(budget: reassembler.parserBudget, files: reassembler.fileHashing)
        let rpc = DCERPCAnalyzer(budget: reassembler.parserBudget)
        let kerberos = KerberosAnalyzer(budget: reassembler.parserBudget)
        reassembler.add(smb)
        reassembler.add(rpc)
        reassembler.add(kerberos)
        if hostFacts.wantsLateral {
            smb.observer = hostFacts
            rpc.observer = hostFacts
            kerberos.observer = hostFacts
        }
        return kerberos
    }
}
