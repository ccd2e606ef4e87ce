import Capture
import HostStage
import Evidence
import Events
import Foundation
import Logging
import Outputs
import PacketCore
import ServiceLifecycle
import UnixSignals

/// A directory that holds sensitive data and must be private to the sensor (see `PrivateDirectory`).
public struct PrivateDirectorySpec: Sendable, Equatable {
    public var path: String
    public var mode: mode_t
    public var purpose: String
    public init(path: String, mode: mode_t, purpose: String) {
        self.path = path
        self.mode = mode
        self.purpose = purpose
    }
}

extension SensorConfiguration {
    /// Every directory holding evidence, spooled events, keys or state. Each feature that owns such a
    /// directory adds one line here; `sensor run` creates and checks them all before capturing.
    public var privateDirectories: [PrivateDirectorySpec] {
        var d: [PrivateDirectorySpec] = []
        if let s = privileges.stateDirectory { d.append(PrivateDirectorySpec(path: s, mode: 0o750, purpose: "state")) }
        return d
    }
}

/// Why `sensor run` could not start, with the exit status it maps to.
public enum LiveStartError: Error, CustomStringConvertible {
    case configuration([String])
    case capture(CaptureError)
    case privileges(PrivilegeError)
    case directory(PrivateDirectory.Problem)
    case output(String)
    case metrics(String)

    public var description: String {
        switch self {
        case .configuration(let p): return "invalid configuration: " + p.joined(separator: "; ")
        case .capture(let e): return e.description
        case .privileges(let e): return e.description
        case .directory(let p): return p.description
        case .output(let m): return m
        case .metrics(let m): return m
        }
    }
}

/// What a live run did, for the exit summary.
public struct LiveOutcome: Sendable {
    public var packets: UInt64
    public var flows: UInt64
    public var events: UInt64
    public var capture: LiveCaptureCounters
    public var readErrors: [CaptureError]
    public var outputErrors: [String]
    /// Delivery counters of every output, read after it closed.
    public var sinkStatistics: [(name: String, statistics: SinkStatistics)] = []
}

/// Live mode (`sensor run`): N workers on one interface, each with its own capture handle (fanout
/// member), pinned thread, pipeline and flow table; one set of outputs; a metrics endpoint; SIGHUP reload.
///
/// Start-up has two phases because Linux capabilities are per thread. `prepare` runs on the main thread
/// before anything else has started a thread: it checks the configuration, creates the private
/// directories, opens every capture handle and the metrics socket, and drops to the service user with no
/// capabilities. Only then does `run` start the worker threads, the signal handling and the services,
/// which all inherit the unprivileged state.
///
/// Host-level detector state across workers: the fanout hash keeps every packet of a flow on one worker,
/// so per-flow analysis is complete there. The detectors that aggregate across flows (beaconing, lateral
/// movement, DNS tunnelling, non-standard-port repetition) run in `hostShards` aggregator threads fed by
/// every worker through lock-free SPSC rings, sharded by host address (docs/LIVE.md, "State that spans
/// workers").
public final class LiveSensor {
    public let configuration: SensorConfiguration
    public let sources: [PcapLiveSource]
    public let endpoint: MetricsEndpoint?
    public let privileges: PrivilegeReport
    let sinks: [any EventSink]
    let metrics: SensorMetrics
    /// Rules, family state and GeoIP databases: loaded once, as the service user, for every worker.
    let resources: SensorResources
    let logger: Logger

    init(configuration: SensorConfiguration, sources: [PcapLiveSource], endpoint: MetricsEndpoint?, metrics: SensorMetrics,
         privileges: PrivilegeReport, sinks: [any EventSink], resources: SensorResources, logger: Logger) {
        self.resources = resources
        self.configuration = configuration
        self.sources = sources
        self.endpoint = endpoint
        self.metrics = metrics
        self.privileges = privileges
        self.sinks = sinks
        self.logger = logger
    }

    /// The privileged phase. Call first thing in the process, before any other thread exists.
    public static func prepare(configuration c: SensorConfiguration, logger: Logger) throws(LiveStartError) -> LiveSensor {
        let problems = c.live.validate()
        guard problems.isEmpty else { throw .configuration(problems) }
        let live = c.live
        let interface = live.interface!
        if c.privileges.group != nil && c.privileges.user == nil {
            throw .configuration(["a group needs a user (give --user too)"])
        }
        if !live.cpus.isEmpty, let bad = live.cpus.first(where: { $0 >= ThreadAffinity.cpuCount }) {
            throw .configuration(["CPU \(bad) does not exist (this machine has \(ThreadAffinity.cpuCount))"])
        }
        let account: Account?
        do {
            account = try c.privileges.user.map { u throws(PrivilegeError) in try Account.lookup(user: u, group: c.privileges.group) }
            // Refuse root before opening anything.
            try LeastPrivilege.check(target: account, allowRoot: c.privileges.allowRoot)
        } catch { throw .privileges(error) }

        let owner = account.map { (uid: $0.uid, gid: $0.gid) }
        for d in c.privateDirectories {
            do { try PrivateDirectory.prepare(d.path, mode: d.mode, owner: owner) } catch { throw .directory(error) }
        }

        // Fanout group ids are per network namespace; the pid keeps two sensors on one host apart. A lone
        // worker joins a group of one too: the defrag flag makes the kernel reassemble IP fragments before
        // delivery, and the sensor should see the same packets whatever its worker count.
        let group: UInt16? = UInt16(truncatingIfNeeded: getpid())
        var sources: [PcapLiveSource] = []
        for _ in 0..<live.workers {
            var o = LiveCaptureOptions(interface: interface)
            o.snapLength = c.snapLength
            o.promiscuous = live.promiscuous
            o.bufferBytes = live.bufferMegabytes << 20
            o.timeoutMilliseconds = live.timeoutMilliseconds
            o.filter = c.bpf
            o.fanoutGroup = group
            do { sources.append(try PcapLiveSource(options: o)) } catch { throw .capture(error) }
        }
        for s in sources { if let w = s.activationWarning { logger.warning("capture: \(w)", metadata: ["interface": "\(interface)"]) } }

        let metrics = SensorMetrics()
        var endpoint: MetricsEndpoint?
        if c.metrics.enabled {
            do { endpoint = try MetricsEndpoint(address: c.metrics.listen, metrics: metrics, logger: logger) } catch {
                throw .metrics("\(error)")
            }
            if !c.metrics.listen.isLoopback {
                logger.warning("metrics endpoint listens beyond loopback", metadata: ["listen": "\(c.metrics.listen)"])
            }
        }

        let report: PrivilegeReport
        do { report = try LeastPrivilege.drop(to: account, allowRoot: c.privileges.allowRoot) } catch { throw .privileges(error) }

        if group != nil {
            // Let any ring block filled before the joins retire, then drain it and install the real filter.
            usleep(UInt32(live.timeoutMilliseconds + 20) * 1000)
            for s in sources {
                do { try s.beginCapture() } catch { throw .capture(error) }
            }
        }

        // Rules, indicator feed, evidence store and GeoIP/ASN databases are opened as the service user:
        // one it cannot read fails now, not at reload.
        let resources: SensorResources
        do { resources = try SensorResources(configuration: c, logger: logger) } catch { throw .configuration([error.description]) }
        // Outputs are opened as the service user, so files it creates are its own.
        var sinks: [any EventSink] = []
        for spec in c.outputs.isEmpty ? [OutputSpec.stdout] : c.outputs {
            do { sinks.append(try spec.makeSink(logger: logger, sensorName: c.sensorName)) } catch { throw .output("\(error)") }
        }
        return LiveSensor(configuration: c, sources: sources, endpoint: endpoint, metrics: metrics, privileges: report,
                          sinks: sinks, resources: resources, logger: logger)
    }

    /// Runs until SIGTERM or SIGINT (every flow reported, outputs flushed) or until a worker fails.
    public func run() async throws -> LiveOutcome {
        let c = configuration
        let live = c.live
        let hup = await UnixSignalsSequence(trapping: .sighup)
        let mailbox = ReloadMailbox()
        resources.geo?.startWatching()
        defer { resources.geo?.stopWatching() }
        let outputs = EventOutputService(sinks: sinks, logger: logger)
        let outputMetrics = OutputMetrics(metrics: metrics, sinks: sinks)
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [.init(service: outputs)]
        if let endpoint {
            endpoint.addBeforeScrape { outputMetrics.refresh() }
            services.append(.init(service: endpoint))
        }
        services.append(.init(service: RulesReloadService(signals: hup, resources: resources, mailbox: mailbox, logger: logger)))

        // Host-level stage: ring [worker][shard], one watermark per worker, one aggregator per shard. Listed
        // before the workers, so on shutdown it drains after they stop and before the outputs close.
        // `--host-facts`: the host facts go to Kafka for `sensor aggregate`, no aggregator runs here.
        let hostOut = try c.hostFacts.map { try HostFactsOutput(options: $0, sensorName: c.sensorName) }
        let shards = hostOut == nil ? max(1, live.hostShards) : 0
        let rings = sources.indices.map { _ in (0..<shards).map { _ in SPSCByteRing(capacity: live.hostRingKilobytes << 10) } }
        let marks = sources.indices.map { _ in WorkerWatermark() }
        let detectors = resources.hostDetectors(resources.rules)
        let board = shards > 0 ? HostStageBoard(shards: shards) : nil
        var aggregators: [HostAggregator] = []
        var heartbeats: [Heartbeat] = []
        for s in 0..<shards {
            let counter = DatasetCounter()
            let emitter = resources.makeEmitter(sinks: sinks + [counter], ingress: live.interface ?? "?", live: true)
            resources.observeHostStage(emitter)
            let aggregator = HostAggregator(shard: s, rings: rings.map { $0[s] }, marks: marks, detectors: detectors, emitter: emitter)
            aggregators.append(aggregator)
            let service = HostAggregatorService(
                aggregator: aggregator, mailbox: mailbox, metrics: HostStageMetrics(metrics: metrics, shard: s, datasets: counter),
                board: board, logger: logger)
            heartbeats.append(service.heartbeat)
            services.append(.init(service: service))
        }

        var workers: [(PacketProcessingService, LiveWorker)] = []
        for (i, source) in sources.enumerated() {
            let counter = DatasetCounter()
            let emitter = resources.makeEmitter(sinks: sinks + [counter], ingress: live.interface ?? "?", live: true)
            let pipeline = Pipeline(flows: c.flows, emitter: emitter,
                                    analyzers: try WorkerAssembly.makeAnalyzers(resources, index: i, emitter: emitter,
                                                                                hostRoute: hostOut.map { WorkerAssembly.HostRoute.kafka($0) } ?? .rings(HostShardLink(rings: rings[i], watermark: marks[i])),
                                                                                logger: logger))
            let worker = LiveWorker(index: i, source: source, configuration: live, metrics: WorkerMetrics(metrics: metrics, worker: i),
                                    datasets: counter, logger: logger)
            worker.hostFacts = HostFactDropMetrics(rings: rings[i], metrics: metrics, worker: i)
            if i == 0 { worker.hostStage = board }
            heartbeats.append(worker.heartbeat)
            worker.hostPublisher = pipeline.analyzers.lazy.compactMap { ($0 as? HostFactTap)?.publisher }.first
            let cpu = live.cpus.isEmpty ? nil : live.cpus[i]
            let service = PacketProcessingService(pipeline: pipeline, source: source, logger: logger, cpu: cpu,
                                                  housekeeping: worker, threadName: "sensor-worker-\(i)")
            workers.append((service, worker))
            services.append(.init(service: service, successTerminationBehavior: .gracefullyShutdownGroup,
                                  failureTerminationBehavior: .gracefullyShutdownGroup))
        }
        // Last: it tells systemd the sensor is ready once everything above is running, and stops first.
        if let notifier = SystemdNotifier() {
            let status = "capturing on \(live.interface ?? "") with \(live.workers) worker(s)"
            services.append(.init(service: SystemdNotifyService(notifier: notifier, status: status, heartbeats: heartbeats, logger: logger)))
        }
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        var meta: Logger.Metadata = [
            "interface": "\(live.interface ?? "")", "workers": "\(live.workers)",
            "uid": "\(privileges.uid)", "gid": "\(privileges.gid)",
            "capabilities": "\(String(privileges.effectiveCapabilities, radix: 16))",
            "no_new_privs": "\(privileges.noNewPrivileges)",
        ]
        if !live.cpus.isEmpty { meta["cpus"] = "\(live.cpus.map(String.init).joined(separator: ","))" }
        if let endpoint { meta["metrics"] = "\(endpoint.address.host):\(endpoint.boundPort)" }
        logger.notice("capture started", metadata: meta)
        var failure: Error?
        do { try await group.run() } catch { failure = error }
        var hostOutError: String?
        if let hostOut {
            do { try hostOut.sink.close() } catch { hostOutError = "\(hostOut.sink.name): \(error)" }
        }

        var outcome = LiveOutcome(packets: 0, flows: 0, events: 0, capture: LiveCaptureCounters(), readErrors: [],
                                  outputErrors: outputs.closeErrors)
        for (s, w) in workers {
            outcome.packets &+= s.pipeline.counters.packets
            outcome.flows &+= s.pipeline.flows.counters.created
            outcome.events &+= s.pipeline.emitter.eventsEmitted
            outcome.capture.received &+= w.lastCapture.received
            outcome.capture.kernelDropped &+= w.lastCapture.kernelDropped
            outcome.capture.interfaceDropped &+= w.lastCapture.interfaceDropped
            if let e = s.readError { outcome.readErrors.append(e) }
        }
        for a in aggregators { outcome.events &+= a.emitter.eventsEmitted }
        outcome.sinkStatistics = sinks.map { ($0.name, $0.statistics) } + (hostOut.map { [("host facts \($0.sink.name)", $0.sink.statistics)] } ?? [])
        if let hostOutError { outcome.outputErrors.append(hostOutError) }
        if let failure, outcome.readErrors.isEmpty { throw failure }
        return outcome
    }
}

/// One worker's periodic work, on its own thread: idle clock, reloads, metrics, statistics, loss warnings.
final class LiveWorker: WorkerHousekeeping {
    let index: Int
    let source: PcapLiveSource
    let interface: String
    let statsInterval: Duration
    let lossThreshold: Double
    let metrics: WorkerMetrics?
    let datasets: DatasetCounter
    let logger: Logger
    var lastStats = ContinuousClock.now
    /// Capture counters at the last statistics event (for the per-interval loss fraction).
    var atLastStats = LiveCaptureCounters()
    var lastCapture = LiveCaptureCounters()
    /// The host-level stage's view from this worker: its rings' counters.
    var hostFacts: HostFactDropMetrics?
    var hostPublisher: HostFactPublisher?
    /// Worker 0: the host-level stages' figures, whose sum its statistics carry.
    var hostStage: HostStageBoard?
    /// Beaten at every periodic pass: the systemd watchdog is fed only while every worker beats.
    let heartbeat: Heartbeat

    init(index: Int, source: PcapLiveSource, configuration: LiveConfiguration, metrics: WorkerMetrics?,
         datasets: DatasetCounter, logger: Logger) {
        self.index = index
        self.source = source
        self.interface = configuration.interface ?? ""
        self.statsInterval = .milliseconds(Int64(configuration.statsIntervalSeconds * 1000))
        self.lossThreshold = configuration.lossWarningFraction
        self.metrics = metrics
        self.datasets = datasets
        self.logger = logger
        heartbeat = Heartbeat(name: "worker-\(index)")
    }

    func periodic(_ pipeline: Pipeline, idle: Bool) {
        heartbeat.beat()
        if idle, let now = Self.wallClock() { pipeline.advanceClock(to: now) }
        if let cap = source.statistics() { lastCapture = cap }
        metrics?.publish(pipeline: pipeline, capture: lastCapture, datasets: datasets)
        hostFacts?.publish()
        let now = ContinuousClock.now
        if now - lastStats >= statsInterval {
            let seconds = Double((now - lastStats).components.seconds)
            lastStats = now
            emitStatistics(pipeline, intervalSeconds: seconds)
        }
    }

    /// A quiet link (every block timeout): the packet clock follows the wall clock and the host-level
    /// aggregators hear it at once, so a worker without traffic holds their merge back by one block
    /// timeout, not a second.
    func idle(_ pipeline: Pipeline) {
        if let now = Self.wallClock() { pipeline.advanceClock(to: now) }
        hostPublisher?.publishWatermark(pipeline.clock)
    }

    func finish(_ pipeline: Pipeline) {
        pipeline.finish(reason: .endOfInput, emitStats: false)
        // Outputs write what they hold first, so the final statistics show what each of them lost.
        try? pipeline.emitter.flush()
        // The stages conclude once every worker has ended (this one included): their final figures.
        hostStage?.waitUntilConcluded(timeout: HostStageBoard.concludeWait)
        if let cap = source.statistics() { lastCapture = cap }
        emitStatistics(pipeline, intervalSeconds: Double((ContinuousClock.now - lastStats).components.seconds))
        metrics?.publish(pipeline: pipeline, capture: lastCapture, datasets: datasets)
        hostFacts?.publish()
    }

    /// A `spanwatch.stats` event with the capture counters, and a `spanwatch.health` warning when the share of
    /// packets the kernel dropped over the interval is above the threshold.
    func emitStatistics(_ pipeline: Pipeline, intervalSeconds: Double) {
        let cap = lastCapture
        pipeline.emitStatistics(captureStats: CaptureStatistics(received: cap.received, kernelDropped: cap.kernelDropped,
                                                                interfaceDropped: cap.interfaceDropped), worker: index,
                                      extra: { [hostFacts, hostStage] w in
                                          hostFacts?.write(into: &w)
                                          hostStage?.sum?.write(into: &w)
                                      })
        let received = cap.received &- atLastStats.received
        let dropped = cap.kernelDropped &- atLastStats.kernelDropped
        let ifDropped = cap.interfaceDropped &- atLastStats.interfaceDropped
        atLastStats = cap
        guard received > 0 else { return }
        let fraction = Double(dropped) / Double(received)
        guard fraction > lossThreshold else { return }
        let percent = (fraction * 10000).rounded() / 100
        let message = "capture loss \(percent)% on \(interface) (worker \(index)): kernel dropped \(dropped) of \(received) packets in \(Int(intervalSeconds)) s"
        logger.warning("\(message)")
        pipeline.emitter.emit(.health, at: pipeline.clock, severity: 2) { w in
            w.field("message", message)
            w.beginObject("spanwatch"); w.beginObject("health")
            w.field("check", "capture_loss")
            w.field("interface", interface)
            w.field("worker", index)
            w.field("loss_fraction", fraction)
            w.field("threshold", lossThreshold)
            w.field("received", received)
            w.field("kernel_dropped", dropped)
            w.field("interface_dropped", ifDropped)
            w.field("interval_seconds", intervalSeconds)
            w.endObject(); w.endObject()
        }
    }

    /// The wall clock as a packet time; nil (the clock stays) when the host's clock is outside the
    /// packet times the sensor accepts, checked as every captured record is.
    static func wallClock() -> Timestamp? {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Timestamp(captureSeconds: Int64(ts.tv_sec), fraction: Int64(ts.tv_nsec), fractionUnit: 1)
    }
}
