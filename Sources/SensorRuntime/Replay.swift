import Capture
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
    /// CPU seconds of the processing thread (see `PacketProcessingService.processingCPUSeconds`).
    public var processingCPUSeconds: Double = 0
}

/// Offline mode: reads capture files (merged in time order) through the same pipeline live capture uses.
public enum Replay {
    /// Builds sinks, pipeline and services from the configuration and runs them to the end of input.
    ///
    /// Throws for problems found before any packet is processed (unreadable input, bad filter, output
    /// that cannot be opened). Damage found part-way is reported in the outcome after a full flush.
    public static func run(files: [String], configuration c: SensorConfiguration, logger: Logger,
                           extraSinks: [any EventSink] = [], onlyAlertsOf category: RuleCategory? = nil,
                           extraAnalyzers: (EventEmitter) throws -> [any PacketAnalyzer] = { _ in [] }) async throws -> ReplayOutcome {
        let source = try MergedFileSource(paths: files, filter: c.bpf)
        let resources = try SensorResources(configuration: c, logger: logger)
        resources.geo?.startWatching()
        defer { resources.geo?.stopWatching() }
        var sinks: [any EventSink] = extraSinks
        let specs = c.outputs.isEmpty && extraSinks.isEmpty ? [OutputSpec.stdout] : c.outputs
        for spec in specs { sinks.append(try spec.makeSink()) }
        // Hunt mode: only the alerts of one category reach the outputs.
        let emitted: [any EventSink] = category.map { c in sinks.map { AlertCategorySink($0, category: c) } } ?? sinks
        let emitter = resources.makeEmitter(sinks: emitted, ingress: "replay")
        let pipeline = Pipeline(flows: c.flows, emitter: emitter,
                                analyzers: try WorkerAssembly.makeAnalyzers(resources, emitter: emitter, logger: logger) + extraAnalyzers(emitter))
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
        outcome.processingCPUSeconds = processing.processingCPUSeconds
        return outcome
    }
}
