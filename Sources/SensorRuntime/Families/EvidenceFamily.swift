import ConfigKit
import Evidence
import Events
import HostStage
import Logging

/// Alert-triggered evidence capture (`evidence:`, on only with an authorisation reference): one
/// coordinator per process (one capture per alert, one store, one custody chain, one set of caps) that
/// hears every alert, the host-level aggregators' included, and on each worker a manager with its
/// lookback ring that writes its share of each capture. Rules: `evidence.yaml`, which must exist when
/// evidence is on (it says which alerts capture).
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


    /// Throws for configuration and directory problems; a custody log that cannot be used gives a store
    /// with capture off (logged, announced as `spanwatch.health`) so that the sensor still runs.
    func prepare(_ rules: RulesSet, logger: Logger) throws -> EvidenceCoordinator {
        guard let dir = rules.directory else {
            throw SetupError(description: "evidence capture is on but no rules directory was found (need \(EvidenceRules.fileName) in --rules DIR)")
        }
        guard rules.isPresent(EvidenceRules.self) else {
            throw SetupError(description: "evidence capture is on but \(dir)/\(EvidenceRules.fileName) does not exist (it says which alerts trigger capture)")
        }
        let observer = ObserverInfo(name: configuration.sensorName)
        do {
            let store = try EvidenceStore(configuration: configuration.evidence, sensorName: observer.name, hostname: observer.hostname, logger: logger)
            return EvidenceCoordinator(store: store, triggers: rules[EvidenceRules.self].triggers, logger: logger)
        } catch {
            throw SetupError(description: error.description)
        }
    }

    func makeAnalyzers(_ worker: inout WorkerContext, _ coordinator: EvidenceCoordinator) throws -> [any PacketAnalyzer] {
        let manager = try EvidenceManager(coordinator: coordinator, emitter: worker.emitter, logger: worker.logger)
        manager.observeAlerts(of: worker.emitter)
        return [manager]
    }

    func observeHostStage(_ emitter: EventEmitter, _ coordinator: EvidenceCoordinator) {
        coordinator.observeAlerts(of: emitter)
    }
}
