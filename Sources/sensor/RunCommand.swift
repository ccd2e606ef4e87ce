import ArgumentParser
import Capture
import Logging
import SensorRuntime

#if canImport(Glibc)
import Glibc
#endif

/// `sensor run --interface IF`: live capture on a SPAN or tap port.
struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Capture live from an interface with N pinned workers, dropping to an unprivileged user.",
        discussion: """
        Opens one capture handle per worker (TPACKET_V3 ring, kernel BPF, PACKET_FANOUT hash), then switches \
        to --user with no capabilities and PR_SET_NO_NEW_PRIVS before it processes a single packet. Root is \
        refused without --user or --allow-root. SIGTERM/SIGINT: every open flow is reported and the outputs \
        are flushed, exit 0. SIGHUP: the rules directory is checked and reloaded (a bad set is rejected and \
        the old one stays), and file outputs reopen their path (logrotate).
        Exit status: 0 after SIGTERM; 1 capture, output or metrics failure; 73 a private directory is \
        unsafe or cannot be made; 74 an output lost events while running (failures are logged as they \
        start); 77 privilege problem; 78 bad configuration.
        """
    )

    @OptionGroup var options: SensorOptions

    @Option(name: .long, help: "Interface to capture on.")
    var interface: String?

    @Option(name: .long, help: "Capture workers (each: one ring, one pinned thread, one flow table).")
    var workers: Int?

    @Option(name: .long, help: ArgumentHelp("CPUs to pin the workers to, one per worker.", valueName: "0,1,..."))
    var cpus: String?

    @Option(name: .long, help: "Snap length in bytes.")
    var snaplen: Int?

    @Option(name: .customLong("buffer-mb"), help: "Ring buffer per worker, MiB.")
    var bufferMB: Int?

    @Option(name: .long, help: "User to switch to after opening the interface.")
    var user: String?

    @Option(name: .long, help: "Group to switch to (default: the user's primary group).")
    var group: String?

    @Flag(name: .long, help: "Allow running as root when no --user is given (capabilities are still dropped).")
    var allowRoot = false

    @Flag(inversion: .prefixedNo, help: "Promiscuous mode (default on: a SPAN port's frames are not addressed to this host).")
    var promiscuous: Bool?

    @Option(name: .long, help: "Seconds between spanwatch.stats events per worker.")
    var statsInterval: Double?

    @Option(name: .long, help: "Host-level aggregator threads for the cross-flow detectors (default 1).")
    var hostShards: Int?

    @Option(name: .long, help: ArgumentHelp("Metrics endpoint HOST:PORT (loopback by default), or 'off'.", valueName: "addr"))
    var metrics: String?

    func validate() throws {
        if let w = workers, !(1...256).contains(w) { throw ValidationError("--workers must be between 1 and 256") }
        if let s = snaplen, !(64...262_144).contains(s) { throw ValidationError("--snaplen must be between 64 and 262144") }
        if let b = bufferMB, !(1...16384).contains(b) { throw ValidationError("--buffer-mb must be between 1 and 16384") }
        if let c = cpus, parseCPUList(c) == nil { throw ValidationError("--cpus expects a comma-separated list of CPU numbers, e.g. 0,1") }
        if let s = statsInterval, !(1...86400).contains(s) { throw ValidationError("--stats-interval must be between 1 and 86400") }
        if let s = hostShards, !(1...64).contains(s) { throw ValidationError("--host-shards must be between 1 and 64") }
        if let m = metrics, m != "off" {
            do { _ = try ListenAddress(parsing: m) } catch { throw ValidationError("--metrics \(error.description)") }
        }
    }

    func run() async throws {
        try await run(prepare())
    }

    /// The privileged phase: configuration, handles, privilege drop. `SensorMain` calls it on the main
    /// thread before the concurrency runtime has started any thread: capability sets are per thread, and
    /// a thread started earlier would keep them (and Dispatch's `dispatch_main` would leave a dead main
    /// thread whose /proc status still shows root).
    func prepare() -> LiveSensor {
        var c: SensorConfiguration
        do { c = try options.resolve() } catch let e as CLIError { fail("error: \(e.message)", code: e.code) } catch {
            fail("error: \(error)", code: ExitStatus.failure)
        }
        if let interface { c.live.interface = interface }
        if let workers { c.live.workers = workers }
        if let cpus { c.live.cpus = parseCPUList(cpus) ?? [] }
        if let snaplen { c.snapLength = snaplen }
        if let bufferMB { c.live.bufferMegabytes = bufferMB }
        if let user { c.privileges.user = user }
        if let group { c.privileges.group = group }
        if allowRoot { c.privileges.allowRoot = true }
        if let promiscuous { c.live.promiscuous = promiscuous }
        if let statsInterval { c.live.statsIntervalSeconds = statsInterval }
        if let hostShards { c.live.hostShards = hostShards }
        if metrics == "off" { c.metrics.enabled = false }
        if let metrics, metrics != "off", let a = try? ListenAddress(parsing: metrics) { c.metrics.listen = a }
        let logger = options.makeLogger(c)
        do { return try LiveSensor.prepare(configuration: c, logger: logger) } catch {
            fail("error: \(error.description)", code: ExitStatus.of(error))
        }
    }

    /// The unprivileged phase: workers, outputs, metrics, signals.
    func run(_ sensor: LiveSensor) async throws {
        let logger = options.makeLogger(sensor.configuration)
        let outcome = try await sensor.run()
        logger.notice("capture stopped", metadata: [
            "packets": "\(outcome.packets)", "flows": "\(outcome.flows)", "events": "\(outcome.events)",
            "received": "\(outcome.capture.received)", "kernel_dropped": "\(outcome.capture.kernelDropped)",
            "interface_dropped": "\(outcome.capture.interfaceDropped)",
        ])
        for e in outcome.outputErrors { printError("error: output: \(e)") }
        for e in outcome.readErrors { printError("error: \(e.description)") }
        for (name, st) in outcome.sinkStatistics {
            logger.info("output delivery", metadata: [
                "output": "\(name)", "accepted": "\(st.accepted)", "delivered": "\(st.delivered)", "failed": "\(st.failed)",
                "spooled": "\(st.spooled)", "dropped": "\(st.dropped)", "dropped_alerts": "\(st.droppedAlerts)",
                "spool_bytes": "\(st.spoolBytes)",
            ])
        }
        if ExitStatus.reportOutputLoss(outcome.sinkStatistics) { throw ExitCode(ExitStatus.outputLostEvents) }
        if !outcome.readErrors.isEmpty || !outcome.outputErrors.isEmpty { throw ExitCode(ExitStatus.failure) }
    }
}

extension Substring {
    var trimmingSpaces: Substring {
        var s = self
        while s.first == " " { s = s.dropFirst() }
        while s.last == " " { s = s.dropLast() }
        return s
    }
}
