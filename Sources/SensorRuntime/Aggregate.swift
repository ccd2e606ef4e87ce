import Events
import Foundation
import HostStage
import Logging
import Outputs
import PacketCore
import ServiceLifecycle
import Synchronization

/// `sensor aggregate`'s settings (besides the sensor configuration: rules, outputs, enrichment).
public struct AggregateOptions: Sendable {
    public var hostFacts: KafkaOutputOptions
    public var group: String = "sensor-aggregate"
    /// Wall time a producer may stay silent before the merge goes on without it; also how long a new
    /// partition gathers its producers before anything is applied.
    public var lateness: Duration = .seconds(10)
    /// Buffer per producer and partition (real memory; full: the merge stops waiting, counted).
    public var producerBufferBytes: Int = 8 << 20
    /// Exit once every assigned partition's producers have all ended and their windows closed (batch use).
    public var exitAtEnd = false
    public init(hostFacts: KafkaOutputOptions) { self.hostFacts = hostFacts }
}

public struct AggregateOutcome: Sendable {
    public var counters: HostMergeCounters
    public var facts: UInt64
    public var alerts: UInt64
    public var cpuSeconds: Double
    public var outputErrors: [String]
    public var sinkStatistics: [(name: String, statistics: SinkStatistics)]
}

/// `sensor aggregate`: the host-level stage as a member of a Kafka consumer group on the host-fact topic.
public enum Aggregate {
    public static func run(options: AggregateOptions, configuration c: SensorConfiguration, logger: Logger) async throws -> AggregateOutcome {
        let resources = try SensorResources(configuration: c, logger: logger)
        resources.geo?.startWatching()
        defer { resources.geo?.stopWatching() }
        let consumer = try KafkaRecordConsumer(options: options.hostFacts, group: options.group)
        // A missing topic or an unreachable cluster is an error now, not a silent wait.
        _ = try consumer.topicPartitions(timeout: max(1, options.hostFacts.flushTimeout))
        var sinks: [any EventSink] = []
        for spec in c.outputs.isEmpty ? [OutputSpec.stdout] : c.outputs { sinks.append(try spec.makeSink()) }
        let emitter = resources.makeEmitter(sinks: sinks, ingress: "aggregate")
        let stage = AggregatorService(consumer: consumer, detectors: resources.hostDetectors(resources.rules), emitter: emitter,
                                      options: options, logger: logger)
        let outputs = EventOutputService(sinks: sinks, logger: logger)
        // Shutdown runs in reverse: the stage concludes and flushes, then the outputs close.
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: [.init(service: outputs),
                       .init(service: stage, successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup)],
            gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        logger.notice("aggregate started", metadata: ["topic": "\(options.hostFacts.topic)", "group": "\(options.group)"])
        try await group.run()
        return AggregateOutcome(counters: stage.totals, facts: stage.facts, alerts: emitter.alertsEmitted, cpuSeconds: stage.cpuSeconds,
                                outputErrors: outputs.closeErrors, sinkStatistics: sinks.map { ($0.name, $0.statistics) })
    }
}

/// The consumer's thread: polls records into each owned partition's merge, drains the merges, and on
/// shutdown concludes every partition (applying what is buffered), flushes and leaves the group.
final class AggregatorService: Service, @unchecked Sendable {
    let consumer: KafkaRecordConsumer
    let detectors: [HostDetectorFactory]
    let emitter: EventEmitter
    let options: AggregateOptions
    let logger: Logger
    let stopRequested = Atomic<Bool>(false)
    var merges: [Int: HostFactPartitionMerge] = [:]
    /// Partitions revoked by a rebalance, kept until the next assignment says whether they come back.
    var parked: [Int: HostFactPartitionMerge] = [:]
    /// Counters of merges handed to other members (gone from `merges`).
    var departed = HostMergeCounters()
    var departedFacts: UInt64 = 0
    private(set) var totals = HostMergeCounters()
    private(set) var facts: UInt64 = 0
    private(set) var partitions = 0
    /// CPU seconds of the consumer thread (polling, merging, detectors, writing alerts), for the benchmark.
    private(set) var cpuSeconds: Double = 0

    init(consumer: KafkaRecordConsumer, detectors: [HostDetectorFactory], emitter: EventEmitter, options: AggregateOptions, logger: Logger) {
        self.consumer = consumer
        self.detectors = detectors
        self.emitter = emitter
        self.options = options
        self.logger = logger
    }

    func run() async throws {
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await DedicatedThread.run(name: "sensor-aggregate") { [self] in loop() }
            } onGracefulShutdown: { [self] in
                stopRequested.store(true, ordering: .releasing)
            }
        } onCancel: { [self] in
            stopRequested.store(true, ordering: .releasing)
        }
    }

    func loop() {
        let cpuStart = PacketProcessingService.threadCPUSeconds()
        consumer.onAssign = { [unowned self] ids in assign(ids) }
        consumer.onRevoke = { [unowned self] ids in
            for id in ids { if let m = merges.removeValue(forKey: id) { parked[id] = m } }
            logger.info("partitions revoked", metadata: ["partitions": "\(ids.sorted())"])
        }
        var lastPeriodic = ContinuousClock.now
        var lastRecord = ContinuousClock.now
        while !stopRequested.load(ordering: .acquiring) {
            var now = ContinuousClock.now
            // Up to a batch of records, then the merges.
            var n = 0
            while n < 4096, consumer.poll(timeoutMs: n == 0 ? 100 : 0, { [self] p, offset, bytes in
                merges[p]?.offer(bytes, offset: offset, now: now)
            }) { n += 1 }
            now = ContinuousClock.now
            if n > 0 { lastRecord = now }
            for m in merges.values { m.drain(now: now) }
            if now - lastPeriodic >= .seconds(1) {
                lastPeriodic = now
                do { try emitter.flush() } catch { logger.error("output flush failed", metadata: ["error": "\(error)"]) }
            }
            if options.exitAtEnd, !merges.isEmpty, now - lastRecord >= .seconds(1),
               merges.values.allSatisfy({ $0.isIdle && $0.counters.concluded > 0 }) {
                break
            }
        }
        for m in merges.values { m.finish() }
        cpuSeconds = PacketProcessingService.threadCPUSeconds() - cpuStart
        summarise()
        // Leaving the group revokes every partition (they move to `parked`): counted above.
        consumer.close()
        emitStatistics()
        do { try emitter.flush() } catch { logger.error("output flush failed", metadata: ["error": "\(error)"]) }
    }

    /// The group gave this member `ids`: a partition it held before the rebalance resumes where it was;
    /// any other starts from the first retained record (its state is rebuilt from the log).
    func assign(_ ids: [Int]) -> [Int: Int64] {
        var offsets: [Int: Int64] = [:]
        for id in ids {
            if let m = parked.removeValue(forKey: id) {
                merges[id] = m
                offsets[id] = m.nextOffset
            } else {
                merges[id] = HostFactPartitionMerge(partition: id, detectors: detectors, emitter: emitter,
                                                    ringBytes: options.producerBufferBytes, lateness: options.lateness)
                offsets[id] = KafkaRecordConsumer.beginning
            }
        }
        // Partitions not given back belong to another member now, which rebuilds them.
        for m in parked.values { departed.add(m.currentCounters); departedFacts &+= m.facts }
        parked = [:]
        logger.info("partitions assigned", metadata: ["partitions": "\(ids.sorted())"])
        return offsets
    }

    func summarise() {
        partitions = merges.count
        var t = departed
        var f = departedFacts
        for m in merges.values { t.add(m.currentCounters); f &+= m.facts }
        totals = t
        facts = f
    }

    /// One `spanwatch.stats` event with the merge's counters (`spanwatch.stats.aggregate`).
    func emitStatistics() {
        let t = totals
        emitter.emit(.stats, at: Timestamp(nanoseconds: Int64(Date().timeIntervalSince1970 * 1e9))) { w in
            w.beginObject("spanwatch"); w.beginObject("stats"); w.beginObject("aggregate")
            w.field("partitions", partitions)
            w.field("records", t.records)
            w.field("facts", facts)
            w.field("garbage", t.garbage)
            w.field("unknown_version", t.unknownVersion)
            w.field("undecodable", t.undecodable)
            w.field("late", t.late)
            w.field("quiet_producers", t.quietProducers)
            w.field("forced", t.forced)
            w.field("after_end", t.afterEnd)
            w.field("too_many_producers", t.tooManyProducers)
            w.field("concluded", t.concluded)
            w.field("alerts", emitter.alertsEmitted)
            w.field("cpu_seconds", cpuSeconds)
            w.endObject(); w.endObject(); w.endObject()
        }
    }
}

extension HostMergeCounters {
    mutating func add(_ o: HostMergeCounters) {
        records &+= o.records
        garbage &+= o.garbage
        unknownVersion &+= o.unknownVersion
        undecodable &+= o.undecodable
        late &+= o.late
        quietProducers &+= o.quietProducers
        forced &+= o.forced
        afterEnd &+= o.afterEnd
        tooManyProducers &+= o.tooManyProducers
        concluded &+= o.concluded
    }
}
