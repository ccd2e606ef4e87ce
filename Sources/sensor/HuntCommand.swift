import ArgumentParser
import Capture
import ConfigKit
import Events
import Foundation
import Logging
import Synchronization
import PacketCore
import SensorRuntime
import ThreatIntel

/// `sensor hunt --indicators FILE… CAPTURE|DIR…`: applies new intelligence to stored captures.
///
/// The captures go through the replay pipeline unchanged (so analysers publish the same facts they
/// would live) with one matcher over the given indicators; only its alerts are written, then a summary
/// per matched indicator goes to standard error.
struct Hunt: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Retro-hunt: replay stored captures against an indicator set, writing only the matches.",
        discussion: """
        Directories are searched recursively for .pcap, .pcapng and .cap files; everything is merged in \
        time order. Indicators: plain lists, CSV, STIX 2.1 bundles, MISP JSON (see Rules/indicators/README.md). \
        Only these indicators are used (not intel.indicators from the config or Rules/indicators/). \
        Progress goes to standard error (a bar on a terminal, plain lines otherwise), then a summary. \
        Exit status: 0 done (with or without matches); 1 bad input; 3 an input damaged part-way; 64 a malformed \
        option; 74 an output lost events; 78 a bad indicator file or config.
        """
    )

    @OptionGroup var options: SensorOptions
    @OptionGroup var workers: OfflineWorkerOptions

    @Flag(name: .long, help: "No progress output.")
    var quiet = false

    @Argument(help: "Capture files or directories.")
    var inputs: [String]

    func validate() throws {
        if options.indicators.isEmpty { throw ValidationError("hunt needs at least one --indicators FILE") }
    }

    func run() async throws {
        var c: SensorConfiguration
        do { c = try options.resolve() } catch let e as CLIError { fail("error: \(e.message)", code: e.code) }
        let logger = options.makeLogger(c)
        // The hunt set is exactly the given files.
        let paths = options.indicators
        c.intel.indicators = []
        c.intel.rulesIndicators = false
        c.flowEvents = false
        let feed: IndicatorFeed
        do { feed = try IndicatorFeed(paths: paths, logger: logger, fileHashes: c.hashedFileIndicatorTypes) } catch {
            fail("error: invalid indicator file:\n\(error.description)", code: ExitStatus.configuration)
        }
        let files: [String]
        do { files = try Self.captureFiles(inputs) } catch { fail("error: \(error)", code: ExitStatus.failure) }
        if files.isEmpty { fail("error: no capture files (.pcap, .pcapng, .cap) in \(inputs.joined(separator: " "))", code: ExitStatus.failure) }
        let progress = ReplayProgress(label: "hunt", totalBytes: ReplayProgress.measurableSize(files), files: files.count, enabled: !quiet, terminal: isatty(2) == 1)
        // One matcher and one progress counter per worker (each on its worker's thread).
        var matchers: [ThreatIntelMatcher] = []
        let started = ContinuousClock.now
        let outcome: ReplayOutcome
        do {
            outcome = try await SensorRuntime.Replay.run(files: files, configuration: c, logger: logger,
                                                         workers: workers.count, cpus: workers.cpuList, flowShard: workers.shard, onlyAlertsOf: .threatIntel) { emitter in
                let m = ThreatIntelMatcher(feed: feed, emitter: emitter, settings: c.intel.settings)
                emitter.factObservers.append(m)
                matchers.append(m)
                return [ReplayProgress.Counter(progress), m]
            }
        } catch {
            ExitStatus.failStart(error)
        }
        progress.done()
        let elapsed = ContinuousClock.now - started
        let set = feed.current
        var lines: [String] = []
        let types = set.countsByType.sorted { $0.key.rawValue < $1.key.rawValue }.map { "\($0.key.rawValue) \($0.value)" }.joined(separator: ", ")
        let k = outcome.counters
        let secs = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        // Hunt writes alerts only (no spanwatch.stats): refused record times are reported here.
        let refused = k.timestampsOutOfRange > 0 ? " (\(k.timestampsOutOfRange) with a time out of range, analysed at the packet clock)" : ""
        lines.append("hunt: \(files.count) capture file(s), \(k.packets) packets\(refused), \(outcome.flowCounters.created) flows in \(String(format: "%.1f", secs)) s")
        lines.append("hunt: \(set.distinctCount) indicators (\(types)) from \(paths.count) file(s)")
        let summary = IndicatorMatchSummary.merged(matchers.map(\.summary)).sorted { ($0.first, $0.value) < ($1.first, $1.value) }
        var counters = ThreatIntelCounters()
        for m in matchers {
            counters.alerts &+= m.counters.alerts
            counters.suppressed &+= m.counters.suppressed
        }
        lines.append("hunt: \(summary.count) indicator(s) matched, \(counters.alerts) alert(s), \(counters.suppressed) repeat(s) rate-limited")
        for s in summary {
            let hosts = s.hosts.map(\.description).joined(separator: ", ")
            lines.append("  \(s.type.rawValue) \(s.value) [\(s.source)]: \(s.alerts) alert(s), \(s.suppressed) repeat(s); hosts: \(hosts.isEmpty ? "-" : hosts); first \(s.first), last \(s.last)")
        }
        for l in lines { printError(l) }
        for e in outcome.outputErrors { printError("error: output: \(e)") }
        let lost = ExitStatus.reportOutputLoss(outcome.sinkStatistics, batch: true)
        if !outcome.inputErrors.isEmpty {
            for e in outcome.inputErrors { printError("error: \(e.description)") }
            printError("error: input damaged; results cover the packets before the damage")
        }
        if outcome.interrupted {
            printError("error: hunt interrupted after \(k.packets) packets; the matches cover the packets before the signal")
            throw ExitCode(ExitStatus.interrupted)
        }
        if lost { throw ExitCode(ExitStatus.outputLostEvents) }
        if !outcome.inputErrors.isEmpty { throw ExitCode(ExitStatus.inputDamaged) }
        if !outcome.outputErrors.isEmpty { throw ExitCode(ExitStatus.failure) }
    }

    /// Compressed captures are read through their decompressor (CaptureInput), found by content.
    static let captureExtensions = [".pcap", ".pcapng", ".cap"].flatMap { [$0, $0 + ".gz", $0 + ".zst", $0 + ".xz"] }

    /// Files as given, directories searched recursively for capture files; sorted, without duplicates.
    static func captureFiles(_ inputs: [String]) throws -> [String] {
        var out: [String] = []
        let fm = FileManager.default
        for i in inputs {
            if i == "-" { out.append(i); continue }
            var isDir: ObjCBool = false
            guard fm.fileExists(atPath: i, isDirectory: &isDir) else { throw CLIError(message: "\(i): no such file or directory", code: ExitStatus.failure) }
            if !isDir.boolValue { out.append(i); continue }
            guard let e = fm.enumerator(atPath: i) else { continue }
            var found: [String] = []
            while let f = e.nextObject() as? String {
                let lower = f.lowercased()
                guard captureExtensions.contains(where: { lower.hasSuffix($0) }) else { continue }
                let full = i.hasSuffix("/") ? i + f : i + "/" + f
                var d: ObjCBool = false
                if fm.fileExists(atPath: full, isDirectory: &d), !d.boolValue { found.append(full) }
            }
            out += found.sorted()
        }
        var seen = Set<String>()
        return out.filter { seen.insert($0).inserted }
    }
}

