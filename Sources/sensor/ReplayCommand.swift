import ArgumentParser
import Capture
import Foundation
import ConfigKit
import Logging
import SensorRuntime

#if canImport(Glibc)
import Glibc
#endif

/// `sensor replay FILE...`: the offline (DFIR) mode.
struct Replay: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Process pcap/pcapng files through the pipeline (several files merge in time order).",
        discussion: """
        All times are packet times, so a replay yields the events live capture would have. `-` reads a capture \
        from standard input; gzip, zstd and xz-compressed captures are recognised by content and read through \
        `gzip -dc`, `zstd -dc`, `xz -dc`. Progress goes to standard error (a bar on a terminal, a line every \
        5 s otherwise) unless --quiet.
        Exit status: 0 on success; 1 when an input or output cannot be opened or an output fails to close; 3 \
        when an input was damaged part-way (every event before the damage is still written); 64 for a malformed \
        option; 74 when an output lost events or left some undelivered in its spool (before 3 and 1); 78 for a \
        bad config, rules directory or rules file; 130 when SIGINT or SIGTERM stopped it (before all others).
        """
    )

    @OptionGroup var options: SensorOptions
    @OptionGroup var workers: OfflineWorkerOptions

    @Flag(name: .long, help: "No progress output.")
    var quiet = false

    @Argument(help: "Capture files (pcap or pcapng, or gzip/zstd/xz-compressed; - for standard input).")
    var files: [String]

    func run() async throws {
        let c: SensorConfiguration
        do { c = try options.resolve() } catch let e as CLIError { fail("error: \(e.message)", code: e.code) }
        let logger = options.makeLogger(c)
        let progress = ReplayProgress(label: "replay", totalBytes: ReplayProgress.measurableSize(files), files: files.count,
                                      enabled: !quiet, terminal: isatty(2) == 1)
        let outcome: ReplayOutcome
        do {
            outcome = try await SensorRuntime.Replay.run(files: files, configuration: c, logger: logger,
                                                               workers: workers.count, cpus: workers.cpuList, flowShard: workers.shard) { _ in
                [ReplayProgress.Counter(progress)]
            }
        } catch {
            ExitStatus.failStart(error)
        }
        progress.done()
        let k = outcome.counters
        logger.log(level: outcome.interrupted ? .warning : .info, outcome.interrupted ? "replay interrupted" : "replay finished", metadata: [
            "packets": "\(k.packets)", "bytes": "\(k.bytes)", "flows": "\(outcome.flowCounters.created)",
            "events": "\(outcome.events)", "alerts": "\(outcome.alerts)", "evicted": "\(outcome.flowCounters.evicted)", "cpu_seconds": "\(String(format: "%.3f", outcome.processingCPUSeconds))",
        ])
        for (name, st) in outcome.sinkStatistics {
            logger.info("output delivery", metadata: [
                "output": "\(name)", "accepted": "\(st.accepted)", "delivered": "\(st.delivered)", "failed": "\(st.failed)",
                "spooled": "\(st.spooled)", "dropped": "\(st.dropped)", "dropped_alerts": "\(st.droppedAlerts)",
                "spool_bytes": "\(st.spoolBytes)",
            ])
        }
        for e in outcome.outputErrors { printError("error: output: \(e)") }
        let lost = ExitStatus.reportOutputLoss(outcome.sinkStatistics, batch: true)
        if !outcome.inputErrors.isEmpty {
            for e in outcome.inputErrors { printError("error: \(e.description)") }
            printError("error: input damaged; results cover the packets before the damage")
        }
        if outcome.interrupted {
            printError("error: replay interrupted after \(k.packets) packets; events cover the packets before the signal")
            throw ExitCode(ExitStatus.interrupted)
        }
        if lost { throw ExitCode(ExitStatus.outputLostEvents) }
        if !outcome.inputErrors.isEmpty { throw ExitCode(ExitStatus.inputDamaged) }
        if !outcome.outputErrors.isEmpty { throw ExitCode(ExitStatus.failure) }
    }
}

func printError(_ s: String) {
    var line = s
    line.append("\n")
    fputs(line, stderr)
}

func fail(_ message: String, code: Int32) -> Never {
    printError(message)
    exit(code)
}
