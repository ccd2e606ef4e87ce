import ConfigKit
import Enrichment
import Events
import Foundation
import HostStage
import Logging
import PacketCore

/// Everything that exists once per process, built once from the validated configuration and handed to
/// every worker and to the host-level stage: the resolved rules directory and every rules document in
/// it, each family's shared state (Public Suffix List, indicator feed, evidence store), and the GeoIP
/// databases.
///
/// `replay`, `hunt` and `run` build one and assemble their pipelines from it (`WorkerAssembly`); a
/// SIGHUP loads a new `RulesSet` through `reloadRules` and the host stage swaps it in whole.
public final class SensorResources: @unchecked Sendable {
    public let configuration: SensorConfiguration
    /// The rules as loaded at start.
    public let rules: RulesSet
    /// GeoIP/ASN databases (nil without enrichment), shared by every emitter.
    public let geo: GeoDatabases?
    let families: [PreparedFamily]
    let logger: Logger

    /// Why the sensor cannot start with this configuration (exit status 78).
    public struct SetupError: Error, CustomStringConvertible {
        public var description: String
        public init(_ description: String) { self.description = description }
    }

    /// Reads every rules document of every enabled family once, prepares each family, and opens the
    /// GeoIP databases. Throws `SetupError` with every problem found.
    public init(configuration c: SensorConfiguration, logger: Logger) throws(SetupError) {
        configuration = c
        self.logger = logger
        let directory = RulesDirectory.resolve(c.rulesDirectory)
        // A rules directory named explicitly must exist: a typo would silently drop every local threshold.
        if let problem = RulesDirectory.explicitProblem(c.rulesDirectory) { throw SetupError(problem) }
        let enabled = SensorFamilies.all.map { $0.init(configuration: c) }.filter(\.isEnabled)
        do {
            rules = try RulesSet.load(directory: directory, kinds: enabled.flatMap(\.documents))
        } catch {
            throw SetupError("invalid rules:\n\(error.description)")
        }
        if directory == nil {
            logger.notice("no rules directory (tried ./Rules, \(RulesDirectory.installedLocations.joined(separator: ", "))): every detector at its defaults")
        } else if !rules.absent.isEmpty {
            logger.info("rules files absent, their defaults apply", metadata: ["directory": "\(directory!)", "files": "\(rules.absent.sorted().joined(separator: ","))"])
        }
        if !c.evidence.enabled && (c.evidence.directory != nil || !c.evidence.recipients.isEmpty || !c.evidence.recipientsFiles.isEmpty) {
            logger.notice("evidence capture is off: no authorization reference configured (--authorization)")
        }
        var families: [PreparedFamily] = []
        for f in enabled {
            do { families.append(try Self.prepare(f, rules: rules, logger: logger)) } catch let e as ConfigIssues {
                throw SetupError("invalid rules or indicators:\n\(e.description)")
            } catch {
                throw SetupError("\(error)")
            }
        }
        self.families = families
        // GeoIP/ASN: a missing or broken database stops the start here, before any packet.
        do { geo = c.enrichment.isEnabled ? try GeoDatabases(configuration: c.enrichment, logger: logger) : nil } catch {
            throw SetupError("enrichment: \(error)")
        }
    }

    static func prepare<F: SensorFamily>(_ family: F, rules: RulesSet, logger: Logger) throws -> PreparedFamily {
        try PreparedFamily(family, rules: rules, logger: logger)
    }

    /// The host detectors of every family for `rules`, in registration order (one set per shard).
    public func hostDetectors(_ rules: RulesSet) -> [HostDetectorFactory] {
        families.flatMap { $0.hostDetectors(rules) }
    }

    /// Lets each family watch a live host-stage aggregator's emitter (replay's inline stage emits
    /// through the worker's own emitter, which the families' analysers already watch).
    public func observeHostStage(_ emitter: EventEmitter) {
        for f in families { f.observeHostStage(emitter) }
    }

    /// The facts the host detectors read, so workers encode nothing else.
    public var hostFacts: HostFactKinds {
        HostFactKinds(rawValue: hostDetectors(rules).reduce(0) { $0 | $1.facts.rawValue })
    }

    /// An emitter for one thread (a worker or a host-stage shard) writing to `sinks`. `live`: its alerts
    /// carry `event.created` (the wall time they were raised); replay output stays a function of the input.
    public func makeEmitter(sinks: [any EventSink], ingress: String, live: Bool = false) -> EventEmitter {
        let c = configuration
        let emitter = EventEmitter(observer: ObserverInfo(name: c.sensorName, ingressInterface: ingress),
                                   sinks: sinks, communityID: CommunityID(seed: c.communityIDSeed),
                                   homeNetworks: NetworkSet(c.homeNetworks), flowEventsEnabled: c.flowEvents,
                                   enricher: geo.map { GeoEnricher(databases: $0) })
        if live { emitter.createdClock = LiveWorker.wallClock }
        return emitter
    }

    /// Loads every rules document of every family (enabled or not, as `check-rules` does) from the
    /// rules directory, for a reload: each file is read once; any problem rejects the whole set.
    public func reloadRules(generation: Int) throws(ConfigIssues) -> RulesSet {
        guard let dir = RulesDirectory.resolve(configuration.rulesDirectory) else {
            throw ConfigIssues([ConfigIssue(file: configuration.rulesDirectory ?? "Rules", line: 0, column: 0,
                                            message: "no rules directory to reload (give --rules or rules.directory)")])
        }
        return try RulesDirectory.load(dir, configuration: configuration, generation: generation)
    }
}
