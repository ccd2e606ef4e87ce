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
        let total = files.reduce(Int64(0)) { $0 + ((try? FileManager.default.attributesOfItem(atPath: $1)[.size] as? Int64) ?? 0) }
        let progress = HuntProgress(totalBytes: total, files: files.count, enabled: !quiet, terminal: isatty(2) == 1)
        // One matcher and one progress counter per worker (each on its worker's thread).
        var matchers: [ThreatIntelMatcher] = []
        let started = ContinuousClock.now
        let outcome: ReplayOutcome
        do {
            outcome = try await SensorRuntime.Replay.run(files: files, configuration: c, logger: logger,
                                                         workers: workers.count, cpus: workers.cpuList, onlyAlertsOf: .threatIntel) { emitter in
                let m = ThreatIntelMatcher(feed: feed, emitter: emitter, settings: c.intel.settings)
                emitter.factObservers.append(m)
                matchers.append(m)
                return [HuntProgress.Counter(progress), m]
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
        // Hunt writes alerts only (no sensor.stats): refused record times are reported here.
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
        let lost = ExitStatus.reportOutputLoss(outcome.sinkStatistics)
        if !outcome.inputErrors.isEmpty {
            for e in outcome.inputErrors { printError("error: \(e.description)") }
            printError("error: input damaged; results cover the packets before the damage")
        }
        if lost { throw ExitCode(ExitStatus.outputLostEvents) }
        if !outcome.inputErrors.isEmpty { throw ExitCode(ExitStatus.inputDamaged) }
        if !outcome.outputErrors.isEmpty { throw ExitCode(ExitStatus.failure) }
    }

    static let captureExtensions = [".pcap", ".pcapng", ".cap"]

    /// Files as given, directories searched recursively for capture files; sorted, without duplicates.
    static func captureFiles(_ inputs: [String]) throws -> [String] {
        var out: [String] = []
        let fm = FileManager.default
        for i in inputs {
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

/// Progress of a hunt on standard error: a redrawn bar with rate and ETA on a terminal, a plain line
/// every few seconds otherwise (logs, CI). Each worker counts in its own `Counter` (an analyser on its
/// thread: no lock per packet) and adds to the shared totals every 4096 packets; the worker that does so
/// after the print interval prints.
///
/// Progress is estimated from the captured bytes of the packets seen against the total size of the
/// input files (record headers counted at 16 bytes each), so it is approximate and capped below 100 %
/// until the end.
final class HuntProgress: @unchecked Sendable {
    let totalBytes: Int64
    let files: Int
    let enabled: Bool
    let terminal: Bool
    let packets = Atomic<Int64>(0)
    let bytes = Atomic<Int64>(0)
    let start = ContinuousClock.now
    /// Nanoseconds since `start` of the last print (claimed with a compare-and-exchange).
    let lastPrint = Atomic<Int64>(0)

    init(totalBytes: Int64, files: Int, enabled: Bool, terminal: Bool) {
        self.totalBytes = max(totalBytes, 1)
        self.files = files
        self.enabled = enabled
        self.terminal = terminal
    }

    final class Counter: PacketAnalyzer, @unchecked Sendable {
        let name = "hunt_progress"
        let progress: HuntProgress
        var packets: Int64 = 0
        var bytes: Int64 = 0

        init(_ progress: HuntProgress) { self.progress = progress }

        func packet(_ context: PacketContext, flows: FlowTable) {
            packets &+= 1
            bytes &+= Int64(context.packet.capturedLength) &+ 16
            guard packets & 4095 == 0 else { return }
            progress.add(packets: packets, bytes: bytes)
            packets = 0
            bytes = 0
        }

        func finish(_ now: Timestamp) { progress.add(packets: packets, bytes: bytes, mayReport: false) }
    }

    func add(packets p: Int64, bytes b: Int64, mayReport: Bool = true) {
        packets.wrappingAdd(p, ordering: .relaxed)
        bytes.wrappingAdd(b, ordering: .relaxed)
        guard mayReport, enabled else { return }
        let e = ContinuousClock.now - start
        let now = e.components.seconds &* 1_000_000_000 &+ e.components.attoseconds / 1_000_000_000
        let last = lastPrint.load(ordering: .relaxed)
        guard now - last >= (terminal ? 250_000_000 : 5_000_000_000),
              lastPrint.compareExchange(expected: last, desired: now, ordering: .relaxed).exchanged else { return }
        report(final: false)
    }

    func done() {
        guard enabled else { return }
        report(final: true)
        if terminal { fputs("\n", stderr) }
    }

    func report(final: Bool) {
        let e = ContinuousClock.now - start
        let secs = max(Double(e.components.seconds) + Double(e.components.attoseconds) / 1e18, 0.001)
        let bytes = self.bytes.load(ordering: .relaxed)
        let packets = self.packets.load(ordering: .relaxed)
        let fraction = final ? 1.0 : min(Double(bytes) / Double(totalBytes), 0.999)
        let rate = Double(bytes) / secs / 1_048_576
        let pps = Double(packets) / secs
        let eta = fraction > 0 && !final ? secs * (1 - fraction) / fraction : 0
        let pct = String(format: "%5.1f%%", fraction * 100)
        let tail = "\(packets) packets, \(String(format: "%.1f", rate)) MiB/s, \(String(format: "%.0f", pps)) pkt/s, " +
            (final ? "done in \(String(format: "%.1f", secs)) s" : "ETA \(Self.duration(eta))")
        if terminal {
            let width = 30
            let filled = Int(fraction * Double(width))
            let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
            fputs("\r\u{1B}[2Khunt [\(bar)] \(pct) \(tail)", stderr)
        } else {
            fputs("hunt: progress \(pct) \(tail)\n", stderr)
        }
    }

    static func duration(_ s: Double) -> String {
        let t = Int(s.rounded())
        return t >= 3600 ? "\(t / 3600)h\(String(format: "%02d", t % 3600 / 60))m" : t >= 60 ? "\(t / 60)m\(String(format: "%02d", t % 60))s" : "\(t)s"
    }
}
