import Capture
import Enrichment
import Events
import Foundation
import Logging
import Outputs
import PacketCore
import ServiceLifecycle

/// What a replay run produced, for the CLI's exit status and summary.
public struct ReplayOutcome: Sendable {
    public var counters: PipelineCounters
    public var flowCounters: FlowTableCounters
    public var events: UInt64
    public var alerts: UInt64
    /// Inputs that were damaged part-way (their earlier packets were processed).
    public var inputErrors: [CaptureError]
    public var outputErrors: [String]
    /// Delivery counters of every output, read after it closed (for the end-of-run summary).
    public var sinkStatistics: [(name: String, statistics: SinkStatistics)] = []
}

/// Offline mode: reads capture files (merged in time order) through the same pipeline live capture uses.
public enum Replay {
    /// Builds sinks, pipeline and services from the configuration and runs them to the end of input.
    ///
    /// Throws for problems found before any packet is processed (unreadable input, bad filter, output
    /// that cannot be opened). Damage found part-way is reported in the outcome after a full flush.
    public static func run(files: [String], configuration c: SensorConfiguration, logger: Logger,
                           extraSinks: [any EventSink] = []) async throws -> ReplayOutcome {
        let source = try MergedFileSource(paths: files, filter: c.bpf)
        // GeoIP/ASN: a missing or broken database stops the run here, before any packet.
        let geo = c.enrichment.isEnabled ? try GeoDatabases(configuration: c.enrichment, logger: logger) : nil
        geo?.startWatching()
        defer { geo?.stopWatching() }
        var sinks: [any EventSink] = extraSinks
        let specs = c.outputs.isEmpty && extraSinks.isEmpty ? [OutputSpec.stdout] : c.outputs
        for spec in specs { sinks.append(try spec.makeSink()) }
        let emitter = EventEmitter(observer: ObserverInfo(name: c.sensorName, ingressInterface: "replay"),
                                   sinks: sinks, communityID: CommunityID(seed: c.communityIDSeed),
                                   homeNetworks: NetworkSet(c.homeNetworks), flowEventsEnabled: c.flowEvents,
                                   enricher: geo.map { GeoEnricher(databases: $0) })
        let pipeline = Pipeline(flows: c.flows, emitter: emitter,
                                analyzers: try AnalyzerFactory.makeAnalyzers(configuration: c, emitter: emitter, logger: logger))
        let outputs = EventOutputService(sinks: sinks, logger: logger)
        let processing = PacketProcessingService(pipeline: pipeline, source: source, logger: logger)
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: [
                .init(service: outputs),
                .init(service: processing, successTerminationBehavior: .gracefullyShutdownGroup,
                      failureTerminationBehavior: .gracefullyShutdownGroup),
            ],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        do {
            try await group.run()
        } catch is CaptureError {
            // Already logged; reported through the outcome below.
        }
        var errors = source.errors
        if let e = processing.readError, !errors.contains(e) { errors.append(e) }
        var outcome = ReplayOutcome(counters: pipeline.counters, flowCounters: pipeline.flows.counters,
                                    events: emitter.eventsEmitted, alerts: emitter.alertsEmitted,
                                    inputErrors: errors, outputErrors: outputs.closeErrors)
        outcome.sinkStatistics = sinks.map { ($0.name, $0.statistics) }
        return outcome
    }
}
