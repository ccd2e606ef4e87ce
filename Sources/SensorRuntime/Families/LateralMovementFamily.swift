import Analyzers
import ConfigKit
import Detectors
import Events
import HostStage
import Logging

/// The lateral-movement family (`lateral_movement: {enabled}`): the SMB, DCE-RPC and Kerberos
/// analysers on each worker (their `smb.*`/`dce_rpc.*` flow fields are useful on their own), and the
/// lateral-movement detector in the host-level stage unless `lateral-movement.yaml` says
/// `enabled: false`. The detector aggregates per source host across flows; the analysers' facts reach
/// it through the worker's host-fact publisher.
struct LateralMovementFamily: SensorFamily {
    let configuration: SensorConfiguration
    init(configuration: SensorConfiguration) { self.configuration = configuration }

    var name: String { "lateral_movement" }
    var isEnabled: Bool { configuration.lateralMovementEnabled }
    var documents: [any RulesDocument.Type] { [LateralMovementRules.self] }
    var place: PipelinePlace { .labelsFlows }

    func makeAnalyzers(_ worker: inout WorkerContext, _: Void) throws -> [any PacketAnalyzer] {
        let budget = worker.reassembler.parserBudget
        let smb = SMBAnalyzer(budget: budget, files: worker.reassembler.fileHashing)
        let rpc = DCERPCAnalyzer(budget: budget)
        let kerberos = KerberosAnalyzer(budget: budget)
        worker.reassembler.add(smb)
        worker.reassembler.add(rpc)
        worker.reassembler.add(kerberos)
        if worker.hostFacts.wanted.contains(.remoteAccess) {
            smb.observer = worker.hostFacts
            rpc.observer = worker.hostFacts
            kerberos.observer = worker.hostFacts
        }
        // Kerberos over UDP: datagrams, not streams.
        return [kerberos]
    }

    func hostDetectors(_ rules: RulesSet, _: Void) -> [HostDetectorFactory] {
        let lateral = rules[LateralMovementRules.self]
        guard lateral.enabled else { return [] }
        return [HostDetectorFactory(name: "lateral_movement") { LateralMovementDetector(rules: lateral, emitter: $0) }]
    }
}
