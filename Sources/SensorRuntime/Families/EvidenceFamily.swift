import ConfigKit
import Evidence
import Events
import HostStage
import Logging

/// Alert-triggered evidence capture (`evidence:`, on only with an authorisation reference): one store
/// per process (one custody chain, one set of caps), and on each worker a manager with its lookback
/// ring. Rules: `evidence.yaml`, which must exist when evidence is on (it says which alerts capture).
struct EvidenceFamily: SensorFamily {
    let configuration: SensorConfiguration
    init(configuration: SensorConfiguration) { self.configuration = configuration }

    var name: String { "evidence" }
    var isEnabled: Bool { configuration.evidence.enabled }
    var documents: [any RulesDocument.Type] { [EvidenceRules.self] }
    var place: PipelinePlace { .afterHostFacts }

    /// Why evidence capture cannot start (the sensor does not run without the evidence it was told to keep).
    struct SetupError: Error, CustomStringConvertible {
        var description: String
    }

    struct Shared: @unchecked Sendable {
        let store: EvidenceStore
        let rules: EvidenceRules
    }

    /// Throws for configuration and directory problems; a custody log that cannot be used gives a store
    /// with capture off (logged, announced as `sensor.health`) so that the sensor still runs.
    func prepare(_ rules: RulesSet, logger: Logger) throws -> Shared {
        guard let dir = rules.directory else {
            throw SetupError(description: "evidence capture is on but no rules directory was found (need \(EvidenceRules.fileName) in --rules DIR)")
        }
        guard rules.isPresent(EvidenceRules.self) else {
            throw SetupError(description: "evidence capture is on but \(dir)/\(EvidenceRules.fileName) does not exist (it says which alerts trigger capture)")
        }
        let observer = ObserverInfo(name: configuration.sensorName)
        do {
            let store = try EvidenceStore(configuration: configuration.evidence, sensorName: observer.name, hostname: observer.hostname, logger: logger)
            return Shared(store: store, rules: rules[EvidenceRules.self])
        } catch {
            throw SetupError(description: error.description)
        }
    }

    func makeAnalyzers(_ worker: inout WorkerContext, _ shared: Shared) throws -> [any PacketAnalyzer] {
        let manager = try EvidenceManager(store: shared.store, triggers: shared.rules.triggers, emitter: worker.emitter, logger: worker.logger)
        manager.observeAlerts(of: worker.emitter)
        return [manager]
    }
}
