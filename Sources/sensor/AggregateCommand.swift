import ArgumentParser
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
        fails to close; 64 for a malformed option; 74 when an output lost events; 78 for a bad config or rules.
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

    func validate() throws {
        guard options.hostFacts != nil else { throw ValidationError("aggregate needs --host-facts kafka://HOST:PORT/TOPIC (or host_facts: in --config)") }
        guard lateness > 0 && lateness <= 86_400 else { throw ValidationError("--lateness must be between 0 and 86400 seconds") }
        guard (1...1024).contains(producerBuffer) else { throw ValidationError("--producer-buffer must be between 1 and 1024 MiB") }
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
    }
}
