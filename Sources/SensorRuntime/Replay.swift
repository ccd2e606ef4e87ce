import Capture
import Events
import Foundation
import HostStage
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
    /// SIGINT or SIGTERM stopped the reading before the end of the input (what was read is reported).
    public var interrupted = false
}

/// Offline mode: reads capture files (merged in time order) through the same pipeline live capture uses.
public enum Replay {
    /// Builds sinks, pipelines and services from the configuration and runs them to the end of input.
    ///
    /// `flowShard`: only that shard's flows are processed (`FlowShard`); the others' packets still move
    /// the packet clock.
    ///
    /// `workers` above 1: one reader thread hands each packet to one of that many worker pipelines
    /// (`OfflineFanout`), whose host facts merge in host-stage aggregators as live; `cpus` pins the
    /// workers as `capture.cpus` does live. `extraAnalyzers` is called once per worker.
    ///
    /// Throws for problems found before any packet is processed (unreadable input, bad filter, output
    /// that cannot be opened). Damage found part-way is reported in the outcome after a full flush.
    public static func run(files: [String], configuration c: SensorConfiguration, logger: Logger,
                           workers: Int = 1, cpus: [Int] = [], flowShard: FlowShard? = nil,
                           extraSinks: [any EventSink] = [], onlyAlertsOf category: RuleCategory? = nil,
                           extraAnalyzers: (EventEmitter) throws -> [any PacketAnalyzer] = { _ in [] }) async throws -> ReplayOutcome {
        let source = try MergedFileSource(paths: files, filter: c.bpf)
        let resources = try SensorResources(configuration: c, logger: logger)
        resources.geo?.startWatching()
        defer { resources.geo?.stopWatching() }
        // `--host-facts`: the workers' host facts go to Kafka for `sensor aggregate`; no host stage here.
        let hostOut = try c.hostFacts.map { try HostFactsOutput(options: $0, sensorName: c.sensorName) }
        var sinks: [any EventSink] = extraSinks
        let specs = c.outputs.isEmpty && extraSinks.isEmpty ? [OutputSpec.stdout] : c.outputs
        for spec in specs { sinks.append(try spec.makeSink(logger: logger, sensorName: c.sensorName)) }
        // Hunt mode: only the alerts of one category reach the outputs.
        let emitted: [any EventSink] = category.map { c in sinks.map { AlertCategorySink($0, category: c) } } ?? sinks
        let outputs = EventOutputService(sinks: sinks, logger: logger)
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [.init(service: outputs)]
        var processing: [PacketProcessingService] = []
        var aggregators: [HostAggregator] = []
        var reader: FanoutReaderService?
        if workers <= 1 {
            let emitter = resources.makeEmitter(sinks: emitted, ingress: "replay")
            let pipeline = Pipeline(flows: c.flows, emitter: emitter,
                                    analyzers: try WorkerAssembly.makeAnalyzers(resources, emitter: emitter, hostRoute: hostOut.map { WorkerAssembly.HostRoute.kafka($0) } ?? .inline,
                                                                                logger: logger) + extraAnalyzers(emitter))
            let filter = flowShard.map { FlowShardFilter(pipeline: pipeline, shard: $0) }
            processing.append(PacketProcessingService(pipeline: pipeline, source: source, logger: logger, consumer: filter))
        } else {
            // Host-level stage as live: ring [worker][shard], one watermark per worker, one aggregator
            // per shard; listed before the workers so it drains after them on shutdown.
            let shards = hostOut == nil ? max(1, c.live.hostShards) : 0
            let hostRings = (0..<workers).map { _ in (0..<shards).map { _ in SPSCByteRing(capacity: c.live.hostRingKilobytes << 10) } }
            let marks = (0..<workers).map { _ in WorkerWatermark() }
            let detectors = resources.hostDetectors(resources.rules)
            let board = shards > 0 ? HostStageBoard(shards: shards) : nil
            for s in 0..<shards {
                let emitter = resources.makeEmitter(sinks: emitted, ingress: "replay")
                resources.observeHostStage(emitter)
                let aggregator = HostAggregator(shard: s, rings: hostRings.map { $0[s] }, marks: marks, detectors: detectors, emitter: emitter,
                                                stampsAreSequences: true)
                aggregators.append(aggregator)
                services.append(.init(service: HostAggregatorService(aggregator: aggregator, mailbox: nil, metrics: nil, board: board, logger: logger,
                                                                     yieldsToWorkers: true)))
            }
            let fanout = OfflineFanout(workers: workers, ringBytes: Self.workerRingBytes, shard: flowShard)
            for i in 0..<workers {
                let emitter = resources.makeEmitter(sinks: emitted, ingress: "replay")
                let link = HostShardLink(rings: hostRings[i], watermark: marks[i], waitsWhenFull: true)
                let pipeline = Pipeline(flows: c.flows, emitter: emitter,
                                        analyzers: try WorkerAssembly.makeAnalyzers(resources, index: i, emitter: emitter,
                                                                                    hostRoute: hostOut.map { WorkerAssembly.HostRoute.kafka($0) } ?? .rings(link),
                                                                                    logger: logger) + extraAnalyzers(emitter))
                let ringSource = RingPacketSource(fanout: fanout, worker: i)
                let publisher = pipeline.analyzers.lazy.compactMap { ($0 as? HostFactTap)?.publisher }.first
                ringSource.publisher = publisher
                ringSource.onClock = { [unowned pipeline] t in
                    // The first clock record is the input's first packet (which this worker may not get).
                    publisher?.clockStarted(at: t)
                    pipeline.advanceClock(to: t)
                    publisher?.publishWatermark(pipeline.clock)
                }
                processing.append(PacketProcessingService(pipeline: pipeline, source: ringSource, logger: logger,
                                                          cpu: i < cpus.count ? cpus[i] : nil,
                                                          housekeeping: OfflineWorker(index: i, hostRings: hostRings[i], hostStage: i == 0 ? board : nil,
                                                                                     fanout: i == 0 ? fanout : nil),
                                                          threadName: "sensor-worker-\(i)"))
            }
            reader = FanoutReaderService(source: source, fanout: fanout, logger: logger)
        }
        for p in processing {
            services.append(.init(service: reader == nil ? p : OfflineWorkerService(p), successTerminationBehavior: .gracefullyShutdownGroup,
                                  failureTerminationBehavior: .gracefullyShutdownGroup))
        }
        if let reader {
            services.append(.init(service: reader, successTerminationBehavior: .gracefullyShutdownGroup,
                                  failureTerminationBehavior: .gracefullyShutdownGroup))
        }
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        do {
            try await group.run()
        } catch is CaptureError {
            // Already logged; reported through the outcome below.
        }
        var errors = source.errors
        for e in processing.compactMap(\.readError) + [reader?.readError].compactMap({ $0 }) where !errors.contains(e) { errors.append(e) }
        var outcome = ReplayOutcome(counters: PipelineCounters(), flowCounters: FlowTableCounters(), events: 0, alerts: 0,
                                    inputErrors: errors, outputErrors: outputs.closeErrors)
        // Every worker has sent its end records: wait for the cluster (or spool), as an event output closes.
        if let hostOut {
            do { try hostOut.sink.close() } catch { outcome.outputErrors.append("\(hostOut.sink.name): \(error)") }
        }
        for p in processing {
            outcome.counters.add(p.pipeline.counters)
            outcome.flowCounters.add(p.pipeline.flows.counters)
            outcome.events &+= p.pipeline.emitter.eventsEmitted
            outcome.alerts &+= p.pipeline.emitter.alertsEmitted
            outcome.processingCPUSeconds += p.processingCPUSeconds
        }
        for a in aggregators {
            outcome.events &+= a.emitter.eventsEmitted
            outcome.alerts &+= a.emitter.alertsEmitted
        }
        outcome.processingCPUSeconds += reader?.cpuSeconds ?? 0
        // Only a shutdown signal stops the file source (the end of input does not).
        outcome.interrupted = source.wasStopped
        outcome.sinkStatistics = sinks.map { ($0.name, $0.statistics) } + (hostOut.map { [("host facts \($0.sink.name)", $0.sink.statistics)] } ?? [])
        return outcome
    }

    /// Packet ring of one offline worker: 4 MiB (records up to 1 MiB; about 2 ms of a busy reader).
    static let workerRingBytes = 4 << 20
}

extension PipelineCounters {
    /// Adds another worker's counters (first and last packet: the earliest and latest).
    mutating func add(_ o: PipelineCounters) {
        packets &+= o.packets
        bytes &+= o.bytes
        capturedBytes &+= o.capturedBytes
        flowPackets &+= o.flowPackets
        decoded &+= o.decoded
        notIP &+= o.notIP
        truncated &+= o.truncated
        malformed &+= o.malformed
        laterFragments &+= o.laterFragments
        unsupportedLinkType &+= o.unsupportedLinkType
        timestampsOutOfRange &+= o.timestampsOutOfRange
        if let f = o.firstPacket, firstPacket.map({ f.nanoseconds < $0.nanoseconds }) ?? true { firstPacket = f }
        if let l = o.lastPacket, lastPacket.map({ l.nanoseconds > $0.nanoseconds }) ?? true { lastPacket = l }
    }
}

extension FlowTableCounters {
    mutating func add(_ o: FlowTableCounters) {
        created &+= o.created
        ended &+= o.ended
        evicted &+= o.evicted
        activeTimeouts &+= o.activeTimeouts
    }
}
