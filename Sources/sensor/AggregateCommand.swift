import ArgumentParser
import HostStage
import Logging
import SensorRuntime

/// `sensor aggregate --host-facts kafka://…`: the cross-flow detectors for many sensors, as a Kafka
/// consumer group (docs/SCALE-OUT.md).
struct Aggregate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the cross-flow detectors on the host facts sensors publish to Kafka (--host-facts), as a consumer group.",
        discussion: """
        Joins the consumer group on the host-fact topic, merges each assigned partition's producers by their \
        packet-time watermarks and runs the beaconing, lateral-movement, DNS-tunnelling and non-standard-port \
        detectors; alerts go to the outputs (stdout by default). SIGTERM or SIGINT closes the detectors' windows, \
        flushes and exits 0.
        Exit status: 0 on success; 1 when the cluster or topic cannot be reached or an output cannot be opened or \
        fails to close; 64 for a malformed option; 66 when --exit-at-end saw no producer within --producer-wait; \
        74 when an output lost events; 78 for a bad config or rules.
        """
    )

    @OptionGroup var options: SensorOptions

    @Option(name: .long, help: "Consumer group (every aggregator of one topic joins the same group).")
    var group: String = "sensor-aggregate"

    @Option(name: .long, help: ArgumentHelp("Seconds a producer may stay silent before the merge goes on without it (its later records count as late).", valueName: "seconds"))
    var lateness: Double = 10

    @Option(name: .long, help: ArgumentHelp("Buffer per producer and partition, in MiB (full: the merge stops waiting for the others, counted).", valueName: "MiB"))
    var producerBuffer: Int = 8

    @Flag(name: .long, help: "Exit once every producer on every assigned partition has ended and its windows are closed (batch runs over replays).")
    var exitAtEnd = false

    @Option(name: .long, help: ArgumentHelp("With --exit-at-end: seconds from the start within which a first producer must appear on the assigned partitions (else exit 66); partitions still without one then do not hold back the end (default 60).", valueName: "seconds"))
    var producerWait: Double?

    @Option(name: .long, help: ArgumentHelp("Compacted topic of partition checkpoints (default: the host-fact topic's name with -checkpoints).", valueName: "topic"))
    var checkpointTopic: String?

    @Option(name: .long, help: ArgumentHelp("Checkpoint each partition every N seconds of its packet clock (60, 60s) or every N records applied (5000r).", valueName: "interval"))
    var checkpointInterval: String = "60s"

    @Flag(name: .long, help: "Write and read no checkpoints: a partition's new owner rebuilds it from the log.")
    var noCheckpoints = false

    /// `--checkpoint-interval`: seconds of packet time, or records with an `r` suffix.
    static func interval(_ text: String) -> CheckpointInterval? {
        if text.hasSuffix("r"), let n = UInt64(text.dropLast()), n > 0 { return .records(n) }
        let digits = text.hasSuffix("s") ? String(text.dropLast()) : text
        if let n = Int64(digits), n > 0, n <= 86_400 * 365 { return .packetSeconds(n) }
        return nil
    }

    func validate() throws {
        guard options.hostFacts != nil else { throw ValidationError("aggregate needs --host-facts kafka://HOST:PORT/TOPIC (or host_facts: in --config)") }
        guard lateness > 0 && lateness <= 86_400 else { throw ValidationError("--lateness must be between 0 and 86400 seconds") }
        guard (1...1024).contains(producerBuffer) else { throw ValidationError("--producer-buffer must be between 1 and 1024 MiB") }
        guard Self.interval(checkpointInterval) != nil else { throw ValidationError("--checkpoint-interval takes seconds of packet time (60, 60s) or records (5000r)") }
        if let w = producerWait {
            guard exitAtEnd else { throw ValidationError("--producer-wait applies only with --exit-at-end") }
            guard w > 0 && w <= 86_400 else { throw ValidationError("--producer-wait must be between 0 and 86400 seconds") }
        }
        if let t = checkpointTopic, t.isEmpty || noCheckpoints { throw ValidationError(t.isEmpty ? "--checkpoint-topic needs a name" : "--checkpoint-topic and --no-checkpoints exclude each other") }
    }

    func run() async throws {
        let c: SensorConfiguration
        do { c = try options.resolve() } catch let e as CLIError { fail("error: \(e.message)", code: e.code) }
        guard let topic = c.hostFacts else { fail("error: aggregate needs --host-facts", code: 64) }
        let logger = options.makeLogger(c)
        var o = AggregateOptions(hostFacts: topic)
        o.group = group
        o.lateness = .milliseconds(Int64(lateness * 1000))
        o.producerBufferBytes = producerBuffer << 20
        o.exitAtEnd = exitAtEnd
        if let w = producerWait { o.producerWait = .milliseconds(Int64(w * 1000)) }
        if noCheckpoints { o.checkpointTopic = nil } else if let t = checkpointTopic { o.checkpointTopic = t }
        o.checkpointInterval = Self.interval(checkpointInterval) ?? .packetSeconds(60)
        let outcome: AggregateOutcome
        do { outcome = try await SensorRuntime.Aggregate.run(options: o, configuration: c, logger: logger) } catch {
            ExitStatus.failStart(error)
        }
        let k = outcome.counters
        logger.info("aggregate finished", metadata: [
            "records": "\(k.records)", "facts": "\(outcome.facts)", "alerts": "\(outcome.alerts)", "late": "\(k.late)",
            "cpu_seconds": "\(outcome.cpuSeconds)", "garbage": "\(k.garbage)", "unknown_version": "\(k.unknownVersion)", "quiet_producers": "\(k.quietProducers)",
        ])
        for e in outcome.outputErrors { printError("error: output: \(e)") }
        if ExitStatus.reportOutputLoss(outcome.sinkStatistics) { throw ExitCode(ExitStatus.outputLostEvents) }
        if !outcome.outputErrors.isEmpty { throw ExitCode(ExitStatus.failure) }
        if outcome.noProducer { throw ExitCode(ExitStatus.noInput) }
    }
}
