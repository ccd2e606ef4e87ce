import ConfigKit
import Events
import Foundation
import HostStage
import Logging
import Outputs
import PacketCore
import ServiceLifecycle
import Synchronization
import UnixSignals

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
    /// With `exitAtEnd`: wall time from the start within which a first producer must appear on the
    /// partitions this member owns (else nothing would ever end: it stops, `noProducer`); partitions still
    /// without one after it do not hold back the end of the others.
    public var producerWait: Duration = .seconds(60)
    /// The compacted topic of partition checkpoints (nil: none; a new owner rebuilds from the log).
    public var checkpointTopic: String?
    public var checkpointInterval: CheckpointInterval = .packetSeconds(60)
    /// Least wall time between two checkpoint transactions.
    public var checkpointSpacing: Duration = .milliseconds(250)
    public init(hostFacts: KafkaOutputOptions) {
        self.hostFacts = hostFacts
        checkpointTopic = hostFacts.topic + "-checkpoints"
    }
}

public struct AggregateOutcome: Sendable {
    public var counters: HostMergeCounters
    public var facts: UInt64
    public var alerts: UInt64
    public var cpuSeconds: Double
    /// `exitAtEnd` stopped because no producer appeared within `producerWait`.
    public var noProducer: Bool
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
        let emitter = resources.makeEmitter(sinks: sinks, ingress: "aggregate", live: true)
        let store = try options.checkpointTopic.map {
            try KafkaCheckpointStore(options: options.hostFacts, topic: $0, group: options.group, maxRecordBytes: PartitionCheckpoint.maxBytes)
        }
        // SIGHUP reloads the rules as a live sensor does: checked whole, then taken by every partition's
        // detectors between two records.
        let hup = await UnixSignalsSequence(trapping: .sighup)
        let mailbox = ReloadMailbox()
        let stage = AggregatorService(consumer: consumer, detectors: resources.hostDetectors(resources.rules), emitter: emitter,
                                      options: options, checkpoints: store, logger: logger,
                                      reloads: mailbox, makeDetectors: { [resources] in resources.hostDetectors($0) })
        let outputs = EventOutputService(sinks: sinks, logger: logger)
        // Shutdown runs in reverse: the stage concludes and flushes, then the outputs close.
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: [.init(service: outputs),
                       .init(service: RulesReloadService(signals: hup, resources: resources, mailbox: mailbox, logger: logger)),
                       .init(service: stage, successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup)],
            gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        logger.notice("aggregate started", metadata: ["topic": "\(options.hostFacts.topic)", "group": "\(options.group)"])
        try await group.run()
        return AggregateOutcome(counters: stage.totals, facts: stage.facts, alerts: emitter.alertsEmitted, cpuSeconds: stage.cpuSeconds,
                                noProducer: stage.noProducer, outputErrors: outputs.closeErrors, sinkStatistics: sinks.map { ($0.name, $0.statistics) })
    }
}

/// The consumer's thread: polls records into each owned partition's merge, drains the merges, and on
/// shutdown concludes every partition (applying what is buffered), flushes and leaves the group.
final class AggregatorService: Service, @unchecked Sendable {
    let consumer: KafkaRecordConsumer
    /// The detectors a partition new to this member starts with (rebuilt on a rules reload).
    var detectors: [HostDetectorFactory]
    let reloads: ReloadMailbox
    let makeDetectors: (RulesSet) -> [HostDetectorFactory]
    var rulesGeneration = 0
    let emitter: EventEmitter
    let options: AggregateOptions
    /// Nil when checkpoints are off, or after the checkpoint producer failed for good.
    var checkpoints: KafkaCheckpointStore?
    var checkpointCounters = CheckpointCounters()
    var lastCheckpoint = ContinuousClock.now
    /// Set once the last checkpoint is taken: leaving the group revokes the partitions, not to be checkpointed again.
    var stopping = false
    let logger: Logger
    let stopRequested = Atomic<Bool>(false)
    var merges: [Int: HostFactPartitionMerge] = [:]
    /// Partitions revoked by a rebalance, kept until the next assignment says whether they come back.
    var parked: [Int: HostFactPartitionMerge] = [:]
    /// Counters of merges handed to other members (gone from `merges`).
    var departed = HostMergeCounters()
    var departedFacts: UInt64 = 0
    var departedReread: UInt64 = 0
    private(set) var totals = HostMergeCounters()
    private(set) var facts: UInt64 = 0
    /// Records this process read from the topic (`records` and the other merge counters continue a
    /// restored checkpoint's), and of those, records read again after a restore.
    private(set) var read: UInt64 = 0
    private(set) var reread: UInt64 = 0
    private(set) var partitions = 0
    /// CPU seconds of the consumer thread (polling, merging, detectors, writing alerts), for the benchmark.
    private(set) var cpuSeconds: Double = 0
    /// `--exit-at-end` gave up: no producer appeared within `producerWait`.
    private(set) var noProducer = false

    init(consumer: KafkaRecordConsumer, detectors: [HostDetectorFactory], emitter: EventEmitter, options: AggregateOptions,
         checkpoints: KafkaCheckpointStore?, logger: Logger, reloads: ReloadMailbox,
         makeDetectors: @escaping (RulesSet) -> [HostDetectorFactory]) {
        self.consumer = consumer
        self.detectors = detectors
        self.reloads = reloads
        self.makeDetectors = makeDetectors
        self.emitter = emitter
        self.options = options
        self.checkpoints = checkpoints
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
            // A rebalance: the partitions' newest state, so whoever gets them resumes exactly here (at
            // shutdown the windows have closed by now: the last checkpoint was taken before).
            if checkpoints != nil, !stopping {
                checkpoint(ids.compactMap { merges[$0] }.filter { $0.checkpointDue(.records(0)) })
            }
            for id in ids { if let m = merges.removeValue(forKey: id) { parked[id] = m } }
            logger.info("partitions revoked", metadata: ["partitions": "\(ids.sorted())"])
        }
        let started = ContinuousClock.now
        var lastPeriodic = started
        var lastRecord = started
        while !stopRequested.load(ordering: .acquiring) {
            var now = ContinuousClock.now
            // Up to a batch of records, then the merges.
            var n = 0
            while n < 4096, consumer.poll(timeoutMs: n == 0 ? 100 : 0, { [self] p, offset, bytes in
                read &+= 1
                merges[p]?.offer(bytes, offset: offset, now: now)
            }) { n += 1 }
            now = ContinuousClock.now
            if n > 0 { lastRecord = now }
            if let rules = reloads.take(newerThan: rulesGeneration) { reload(rules) }
            for m in merges.values { m.drain(now: now) }
            if checkpoints != nil, now - lastCheckpoint >= options.checkpointSpacing {
                lastCheckpoint = now
                checkpoint(merges.values.filter { $0.checkpointDue(options.checkpointInterval) })
            }
            if now - lastPeriodic >= .seconds(1) {
                lastPeriodic = now
                do { try emitter.flush() } catch { logger.error("output flush failed", metadata: ["error": "\(error)"]) }
            }
            if options.exitAtEnd, atEnd(now: now, started: started, lastRecord: lastRecord) { break }
        }
        // The newest state first (a later owner resumes from it), then the windows close.
        if checkpoints != nil { checkpoint(merges.values.filter { $0.checkpointDue(.records(0)) }) }
        stopping = true
        for m in merges.values { m.finish() }
        cpuSeconds = PacketProcessingService.threadCPUSeconds() - cpuStart
        summarise()
        // Leaving the group revokes every partition (they move to `parked`): counted above.
        consumer.close()
        emitStatistics()
        do { try emitter.flush() } catch { logger.error("output flush failed", metadata: ["error": "\(error)"]) }
    }

    /// `--exit-at-end`: every producer of every owned partition has ended (nothing read for a second, every
    /// stream concluded), or none appeared within `producerWait` (`noProducer`, logged). Once that bound
    /// has passed, a partition that never had a producer does not hold back the end of the others.
    func atEnd(now: ContinuousClock.Instant, started: ContinuousClock.Instant, lastRecord: ContinuousClock.Instant) -> Bool {
        let waited = now - started >= options.producerWait
        if waited, !merges.values.contains(where: { !$0.isIdle || $0.counters.concluded > 0 }) {
            noProducer = true
            logger.error("no producer appeared on the owned partitions: stopping (--exit-at-end)", metadata: [
                "waited_seconds": "\(options.producerWait.components.seconds)", "partitions": "\(merges.keys.sorted())", "records": "\(read)"])
            return true
        }
        return !merges.isEmpty && now - lastRecord >= .seconds(1)
            && merges.values.allSatisfy { $0.isIdle && ($0.counters.concluded > 0 || waited) }
    }

    /// A rule set the reloader accepted: every partition held (or parked across a rebalance) takes it.
    func reload(_ rules: RulesSet) {
        rulesGeneration = rules.generation
        detectors = makeDetectors(rules)
        for m in Array(merges.values) + Array(parked.values) { m.reload(rules, detectors: detectors, logger: logger) }
        logger.info("rules applied to the partitions' detectors", metadata: ["generation": "\(rules.generation)", "partitions": "\(merges.count)"])
    }

    /// The group gave this member `ids`: a partition it held before the rebalance resumes where it was;
    /// any other resumes from its newest checkpoint, or without one from the first retained record (its
    /// state is rebuilt from the log).
    func assign(_ ids: [Int]) -> [Int: Int64] {
        var offsets: [Int: Int64] = [:]
        for id in ids {
            if let m = parked.removeValue(forKey: id) {
                m.resumeReading()
                merges[id] = m
                offsets[id] = m.nextOffset
            } else {
                let (m, offset) = restore(id)
                merges[id] = m
                offsets[id] = offset
            }
        }
        // Partitions not given back belong to another member now, which rebuilds them.
        for m in parked.values { departed.add(m.currentCounters); departedFacts &+= m.facts; departedReread &+= m.reread }
        parked = [:]
        logger.info("partitions assigned", metadata: ["partitions": "\(ids.sorted())"])
        return offsets
    }

    func summarise() {
        partitions = merges.count
        var t = departed
        var f = departedFacts
        var again = departedReread
        for m in merges.values { t.add(m.currentCounters); f &+= m.facts; again &+= m.reread }
        totals = t
        facts = f
        reread = again
    }

    /// One `spanwatch.stats` event with the merge's counters (`spanwatch.stats.aggregate`).
    func emitStatistics() {
        let t = totals
        emitter.emit(.stats, at: Timestamp(nanoseconds: Int64(Date().timeIntervalSince1970 * 1e9))) { w in
            w.beginObject("spanwatch"); w.beginObject("stats"); w.beginObject("aggregate")
            w.field("partitions", partitions)
            w.field("records", t.records)
            w.field("read", read)
            w.field("reread", reread)
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
            w.field("checkpoints", checkpointCounters.written)
            w.field("checkpoint_failures", checkpointCounters.failed)
            w.field("restored", checkpointCounters.restored)
            w.field("checkpoint_refused", checkpointCounters.refused)
            w.field("cpu_seconds", cpuSeconds)
            w.endObject()
            // The detectors of the partitions this member held at the end (`shards`: how many; leaving the
            // group parked them).
            HostStageStatistics.sum((Array(merges.values) + Array(parked.values)).map(\.stageStatistics))?.write(into: &w)
            w.endObject(); w.endObject()
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
