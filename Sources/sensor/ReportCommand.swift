import ArgumentParser
import Capture
import ConfigKit
import Foundation
import Report
import SensorRuntime

/// `sensor report [-o FILE.html] [replay options] CAPTURE…` or `sensor report --from-events FILE…`: one
/// self-contained HTML page for a case (summary, alert timeline and cards, beaconing, lateral movement,
/// DNS, traffic). The replay runs the normal pipeline with an extra in-memory sink; the page is built
/// from those events exactly as it would be from the same events written to a file.
struct CaseReport: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Write a self-contained HTML case report from captures (replayed) or from event files.",
        discussion: """
        With captures, they are replayed as by `sensor replay` (same options; events also go to any --output \
        given) and the report is built from the events. With --from-events, the report is built from NDJSON \
        the sensor wrote earlier (a file, a Kafka or SIEM export; `-` for standard input), without replaying. \
        The page loads nothing from anywhere (inline styles, SVG charts, a Content-Security-Policy that \
        forbids network loads) and prints. Exit status: as `sensor replay`; 1 when an event file cannot be read.
        """
    )

    @OptionGroup var options: SensorOptions

    @Option(name: [.customShort("o"), .customLong("html")], help: ArgumentHelp("Where the HTML report goes (default: standard output).", valueName: "file.html"))
    var html: String?

    @Option(name: .customLong("from-events"), help: ArgumentHelp("Build from these NDJSON event files instead of replaying captures. Repeatable.", valueName: "events.ndjson"))
    var fromEvents: [String] = []

    @Argument(help: "Capture files or directories (searched recursively for .pcap, .pcapng, .cap).")
    var inputs: [String] = []

    func validate() throws {
        if fromEvents.isEmpty == inputs.isEmpty { throw ValidationError("give capture files, or --from-events FILE (not both)") }
    }

    func run() async throws {
        let builder = ReportBuilder()
        var provenance = ReportProvenance(reportVersion: Sensor.configuration.version)
        var exitCode: Int32 = 0
        if !fromEvents.isEmpty {
            for f in fromEvents {
                do {
                    try builder.add(eventsFile: f)
                    if f != "-" { provenance.eventFiles.append(try DigestedFile(path: f)) }
                } catch { fail("error: \(error)", code: ExitStatus.failure) }
            }
        } else {
            var c: SensorConfiguration
            do { c = try options.resolve() } catch let e as CLIError { fail("error: \(e.message)", code: e.code) }
            // The report's events stay in memory; they go to the config's outputs only when asked for here.
            if options.output.isEmpty { c.outputs = [] }
            let logger = options.makeLogger(c)
            let files: [String]
            do { files = try Hunt.captureFiles(inputs) } catch { fail("error: \(error)", code: ExitStatus.failure) }
            if files.isEmpty { fail("error: no capture files (.pcap, .pcapng, .cap) in \(inputs.joined(separator: " "))", code: ExitStatus.failure) }
            do { provenance.captures = try files.map { try DigestedFile(path: $0) } } catch { fail("error: \(error)", code: ExitStatus.failure) }
            if let dir = RulesDirectory.resolve(c.rulesDirectory) {
                provenance.rulesDirectory = dir
                provenance.rulesFiles = RulesDirectory.yamlFiles(in: dir).compactMap { try? DigestedFile(path: $0) }
            }
            let collector = EventCollector()
            let outcome: ReplayOutcome
            do {
                outcome = try await SensorRuntime.Replay.run(files: files, configuration: c, logger: logger, extraSinks: [collector])
            } catch {
                ExitStatus.failStart(error)
            }
            collector.withEvents { builder.add(ndjson: $0) }
            for e in outcome.outputErrors { printError("error: output: \(e)") }
            let lost = ExitStatus.reportOutputLoss(outcome.sinkStatistics, batch: true)
            if !outcome.inputErrors.isEmpty {
                for e in outcome.inputErrors { printError("error: \(e.description)") }
                printError("error: input damaged; the report covers the packets before the damage")
            }
            if outcome.interrupted { printError("error: report interrupted after \(outcome.counters.packets) packets; it covers the packets before the signal") }
            exitCode = outcome.interrupted ? ExitStatus.interrupted : lost ? ExitStatus.outputLostEvents
                : !outcome.inputErrors.isEmpty ? ExitStatus.inputDamaged : outcome.outputErrors.isEmpty ? 0 : ExitStatus.failure
        }
        let page = builder.render(provenance: provenance)
        if let html {
            do { try Data(page.utf8).write(to: URL(fileURLWithPath: html)) } catch { fail("error: cannot write \(html): \(error)", code: ExitStatus.failure) }
            printError("report: \(builder.alertCount) alert(s), \(page.utf8.count) bytes written to \(html)")
        } else {
            FileHandle.standardOutput.write(Data(page.utf8))
        }
        if exitCode != 0 { throw ExitCode(exitCode) }
    }
}
