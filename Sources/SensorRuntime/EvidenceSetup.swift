import ConfigKit
import Evidence
import Events
import Foundation
import Logging

/// Wires evidence capture into a pipeline: rules, the process's coordinator (and store), one manager per worker.
public enum EvidenceSetup {
    /// Why evidence capture cannot start (the sensor does not run without the evidence it was told to keep).
    public struct SetupError: Error, CustomStringConvertible {
        public var description: String
    }

    /// The store for `configuration`, or nil when evidence capture is off (no authorisation reference).
    /// Throws for configuration and directory problems; a custody log that cannot be used gives a store
    /// with capture off (logged, announced as `sensor.health`) so that the sensor still runs.
    public static func makeStore(configuration c: SensorConfiguration, logger: Logger) throws -> EvidenceStore? {
        guard c.evidence.enabled else { return nil }
        let observer = ObserverInfo(name: c.sensorName)
        do {
            return try EvidenceStore(configuration: c.evidence, sensorName: observer.name, hostname: observer.hostname, logger: logger)
        } catch {
            throw SetupError(description: error.description)
        }
    }

    /// The triggers in `<rules>/evidence.yaml`; a missing file is an error when evidence is on.
    public static func loadTriggers(configuration c: SensorConfiguration) throws -> [EvidenceTrigger] {
        guard let dir = RulesDirectory.resolve(c.rulesDirectory) else {
            throw SetupError(description: "evidence capture is on but no rules directory was found (need \(EvidenceRules.fileName) in --rules DIR)")
        }
        let path = "\(dir)/\(EvidenceRules.fileName)"
        guard FileManager.default.fileExists(atPath: path) else {
            throw SetupError(description: "evidence capture is on but \(path) does not exist (it says which alerts trigger capture)")
        }
        do { return try EvidenceRules.load(path: path) } catch { throw SetupError(description: error.description) }
    }

    /// The process's evidence coordinator (store and triggers), shared by every worker and host-level
    /// aggregator; nil when evidence capture is off.
    public static func makeCoordinator(configuration c: SensorConfiguration, logger: Logger) throws -> EvidenceCoordinator? {
        guard let store = try makeStore(configuration: c, logger: logger) else { return nil }
        return EvidenceCoordinator(store: store, triggers: try loadTriggers(configuration: c), logger: logger)
    }

    /// A worker's evidence manager on `coordinator` (made here when nil: one worker), registered as an
    /// alert observer of its emitter; nil when evidence is off.
    public static func makeManager(configuration c: SensorConfiguration, emitter: EventEmitter, logger: Logger,
                                   coordinator: EvidenceCoordinator?) throws -> EvidenceManager? {
        guard c.evidence.enabled else {
            if c.evidence.directory != nil || !c.evidence.recipients.isEmpty {
                logger.notice("evidence capture is off: no authorization reference configured (--authorization)")
            }
            return nil
        }
        guard let coordinator = try coordinator ?? makeCoordinator(configuration: c, logger: logger) else { return nil }
        let manager = try EvidenceManager(coordinator: coordinator, emitter: emitter, logger: logger)
        manager.observeAlerts(of: emitter)
        return manager
    }
}
