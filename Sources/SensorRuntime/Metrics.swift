import Capture
import Events
import Foundation
import Logging
import Prometheus
import ServiceLifecycle
import Synchronization

/// Counts events per `event.dataset` as they leave one worker's emitter.
///
/// Added to each worker's `EventEmitter` as one more sink, so it is only ever called from that worker's
/// thread and needs no lock; the worker reads it when it publishes its metrics. A handful of datasets
/// exist, so a linear scan comparing the static strings' addresses first is cheaper than hashing.
public final class DatasetCounter: EventSink, @unchecked Sendable {
    public let name = "dataset-counter"
    var datasets: [StaticString] = []
    var counts: [UInt64] = []

    public init() {}

    public func write(_ json: UnsafeRawBufferPointer, metadata: EventMetadata) {
        let d = metadata.dataset
        for i in datasets.indices where datasets[i].utf8Start == d.utf8Start || datasets[i].description == d.description {
            counts[i] &+= 1
            return
        }
        datasets.append(d)
        counts.append(1)
    }

    public func flush() throws {}
    public func close() throws {}
    public var statistics: SinkStatistics { SinkStatistics() }

    /// (dataset, events so far).
    public var snapshot: [(String, UInt64)] { zip(datasets, counts).map { ($0.description, $1) } }
}

/// The metric families the sensor publishes (`SensorMetric`), in a Prometheus registry.
///
/// The registry is injected, never global, so tests and several sensors in one process do not share
/// counters. Workers count in plain integers on the packet path and call `WorkerMetrics.publish` about
/// once a second; every call here is an atomic on a shared counter, so never per packet. Families are
/// made on the registry itself rather than through swift-metrics' factory, which registers them without
/// help text.
public final class SensorMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
    }

    func counter(_ m: SensorMetric, _ dims: [(String, String)] = []) -> Prometheus.Counter {
        precondition(m.kind == .counter)
        return registry.makeCounter(descriptor: m.descriptor, labels: dims)
    }

    func gauge(_ m: SensorMetric, _ dims: [(String, String)] = []) -> Prometheus.Gauge {
        precondition(m.kind == .gauge)
        return registry.makeGauge(descriptor: m.descriptor, labels: dims)
    }

    /// The Prometheus text exposition of every metric.
    public func exposition() -> [UInt8] { registry.emitToBuffer() }
}

extension SensorMetric {
    /// The whole name as the metric name (the unit suffix is already part of it).
    var descriptor: MetricNameDescriptor { MetricNameDescriptor(metricName: rawValue, unitName: "", helpText: help) }
}

/// Turns cumulative totals into counter increments (counters only go up by deltas).
struct DeltaCounter {
    let counter: Prometheus.Counter
    var published: UInt64 = 0

    mutating func publish(_ total: UInt64) {
        guard total > published else { return }
        counter.increment(by: Int64(clamping: total - published))
        published = total
    }
}

/// One worker's metrics, published from its own thread.
public final class WorkerMetrics {
    let metrics: SensorMetrics
    let worker: String
    var packets, bytes, flowsCreated, flowsEnded, evictions, decodeErrors: DeltaCounter
    var received, kernelDrops, interfaceDrops: DeltaCounter
    let activeFlows: Prometheus.Gauge
    var events: [String: DeltaCounter] = [:]
    var alerts: [RuleCategory: DeltaCounter] = [:]

    public init(metrics: SensorMetrics, worker: Int) {
        self.metrics = metrics
        self.worker = String(worker)
        let w = [("worker", self.worker)]
        packets = DeltaCounter(counter: metrics.counter(.packets, w))
        bytes = DeltaCounter(counter: metrics.counter(.bytes, w))
        flowsCreated = DeltaCounter(counter: metrics.counter(.flowsCreated, w))
        flowsEnded = DeltaCounter(counter: metrics.counter(.flowsEnded, w))
        evictions = DeltaCounter(counter: metrics.counter(.flowEvictions, w))
        decodeErrors = DeltaCounter(counter: metrics.counter(.decodeErrors, w))
        received = DeltaCounter(counter: metrics.counter(.captureReceived, w))
        kernelDrops = DeltaCounter(counter: metrics.counter(.captureKernelDrops, w))
        interfaceDrops = DeltaCounter(counter: metrics.counter(.captureInterfaceDrops, w))
        activeFlows = metrics.gauge(.flowsActive, w)
    }

    /// Publishes the worker's counters (called about once a second on the worker thread).
    public func publish(pipeline: Pipeline, capture: LiveCaptureCounters?, datasets: DatasetCounter) {
        let c = pipeline.counters
        let f = pipeline.flows.counters
        packets.publish(c.packets)
        bytes.publish(c.bytes)
        flowsCreated.publish(f.created)
        flowsEnded.publish(f.ended)
        evictions.publish(f.evicted)
        decodeErrors.publish(c.truncated &+ c.malformed &+ c.timestampsOutOfRange)
        activeFlows.record(Int64(pipeline.flows.activeFlows))
        if let capture {
            received.publish(capture.received)
            kernelDrops.publish(capture.kernelDropped)
            interfaceDrops.publish(capture.interfaceDropped)
        }
        for i in datasets.datasets.indices {
            let name = datasets.datasets[i].description
            if events[name] == nil {
                events[name] = DeltaCounter(counter: metrics.counter(.events, [("dataset", name), ("worker", worker)]))
            }
            events[name]!.publish(datasets.counts[i])
        }
        for (category, n) in pipeline.emitter.alertsByCategory {
            if alerts[category] == nil {
                alerts[category] = DeltaCounter(counter: metrics.counter(.alerts, [("category", category.rawValue), ("worker", worker)]))
            }
            alerts[category]!.publish(n)
        }
    }
}

/// Output metrics, read from the sinks' own statistics when the endpoint is scraped.
final class OutputMetrics: @unchecked Sendable {
    struct PerSink {
        var accepted, delivered, failed, dropped, droppedAlerts, spooled: DeltaCounter
        let spoolBytes: Prometheus.Gauge
    }
    let sinks: [any EventSink]
    let state: Mutex<[PerSink]>

    init(metrics: SensorMetrics, sinks: [any EventSink]) {
        self.sinks = sinks
        var per: [PerSink] = []
        for s in sinks {
            let d = [("output", s.name)]
            per.append(PerSink(accepted: DeltaCounter(counter: metrics.counter(.outputAccepted, d)),
                               delivered: DeltaCounter(counter: metrics.counter(.outputDelivered, d)),
                               failed: DeltaCounter(counter: metrics.counter(.outputFailures, d)),
                               dropped: DeltaCounter(counter: metrics.counter(.outputDropped, d)),
                               droppedAlerts: DeltaCounter(counter: metrics.counter(.outputAlertsDropped, d)),
                               spooled: DeltaCounter(counter: metrics.counter(.outputSpooled, d)),
                               spoolBytes: metrics.gauge(.outputSpoolBytes, d)))
        }
        state = Mutex(per)
    }

    func refresh() {
        state.withLock { per in
            for (i, s) in sinks.enumerated() {
                let st = s.statistics
                per[i].accepted.publish(st.accepted)
                per[i].delivered.publish(st.delivered)
                per[i].failed.publish(st.failed)
                per[i].dropped.publish(st.dropped)
                per[i].droppedAlerts.publish(st.droppedAlerts)
                per[i].spooled.publish(st.spooled)
                per[i].spoolBytes.record(Int64(clamping: st.spoolBytes))
            }
        }
    }
}

/// A minimal HTTP/1.1 responder for `GET /metrics` (Prometheus text format 0.0.4).
///
/// The socket is bound during start-up, before privileges are dropped (so a port below 1024 works
/// with no capability kept), and served from its own thread: one short request at a time, with receive
/// and send timeouts, `Connection: close`. Scrapes are rare (every 15–60 s), so a full HTTP stack would
/// add build time and attack surface for nothing. Loopback by default.
public final class MetricsEndpoint: Service, @unchecked Sendable {
    public let address: ListenAddress
    /// The port actually bound (differs from `address.port` when that is 0).
    public let boundPort: UInt16
    let fd: Int32
    let metrics: SensorMetrics
    let logger: Logger
    let stopped = Atomic<Bool>(false)
    var beforeScrape: [@Sendable () -> Void] = []

    public init(address: ListenAddress, metrics: SensorMetrics, logger: Logger) throws {
        self.address = address
        self.metrics = metrics
        self.logger = logger
        let family = address.isIPv6 ? AF_INET6 : AF_INET
        let s = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard s >= 0 else { throw MetricsEndpointError(message: "socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var rc: Int32
        if address.isIPv6 {
            var sa = sockaddr_in6()
            sa.sin6_family = sa_family_t(AF_INET6)
            sa.sin6_port = address.port.bigEndian
            inet_pton(AF_INET6, address.host, &sa.sin6_addr)
            rc = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
        } else {
            var sa = sockaddr_in()
            sa.sin_family = sa_family_t(AF_INET)
            sa.sin_port = address.port.bigEndian
            inet_pton(AF_INET, address.host, &sa.sin_addr)
            rc = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        }
        guard rc == 0, listen(s, 16) == 0 else {
            let e = String(cString: strerror(errno))
            close(s)
            throw MetricsEndpointError(message: "metrics endpoint \(address): \(e)")
        }
        var ss = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &ss) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(s, $0, &len) } }
        let port: UInt16 = withUnsafePointer(to: &ss) { p in
            address.isIPv6 ? p.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin6_port) }
                : p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin_port) }
        }
        boundPort = port
        fd = s
    }

    deinit { close(fd) }

    /// Work to do right before each scrape (refreshing gauges read from sinks). Set before `run`.
    func addBeforeScrape(_ f: @escaping @Sendable () -> Void) { beforeScrape.append(f) }

    public func run() async throws {
        await withGracefulShutdownHandler {
            await DedicatedThread.run(name: "sensor-metrics") { [self] in serve() }
        } onGracefulShutdown: { [self] in
            stopped.store(true, ordering: .relaxed)
        }
    }

    func serve() {
        while !stopped.load(ordering: .relaxed) {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let n = poll(&p, 1, 200)
            if n <= 0 { continue }
            let c = accept(fd, nil, nil)
            if c < 0 { continue }
            handle(c)
            close(c)
        }
    }

    func handle(_ c: Int32) {
        var tv = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        // Read the request head (bounded); only the request line matters.
        var req: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 2048)
        while req.count < 8192 {
            let n = recv(c, &buf, buf.count, 0)
            if n <= 0 { break }
            req.append(contentsOf: buf[0..<n])
            // The end of the request head; a scrape has no body.
            if req.count >= 4, Array(req.suffix(4)) == [13, 10, 13, 10] { break }
            if req.count >= 2, Array(req.suffix(2)) == [10, 10] { break }
        }
        let line = String(decoding: req.prefix { $0 != 13 && $0 != 10 }, as: UTF8.self)
        let parts = line.split(separator: " ")
        var status = "200 OK", body: [UInt8], type = "text/plain; version=0.0.4; charset=utf-8"
        if parts.count >= 2, parts[0] == "GET" || parts[0] == "HEAD", parts[1] == "/metrics" || parts[1].hasPrefix("/metrics?") {
            for f in beforeScrape { f() }
            body = metrics.exposition()
            if parts[0] == "HEAD" { body = [] }
        } else if parts.count >= 2, parts[0] != "GET" && parts[0] != "HEAD" {
            status = "405 Method Not Allowed"; body = Array("only GET /metrics\n".utf8); type = "text/plain"
        } else {
            status = "404 Not Found"; body = Array("see /metrics\n".utf8); type = "text/plain"
        }
        var out = Array("HTTP/1.1 \(status)\r\nContent-Type: \(type)\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n".utf8)
        out.append(contentsOf: body)
        _ = out.withUnsafeBytes { b in csensorSend(c, b) }
    }
}

func csensorSend(_ fd: Int32, _ b: UnsafeRawBufferPointer) -> Bool {
    var off = 0
    while off < b.count {
        let n = send(fd, b.baseAddress! + off, b.count - off, Int32(MSG_NOSIGNAL))
        if n < 0 { if errno == EINTR { continue }; return false }
        off += n
    }
    return true
}

public struct MetricsEndpointError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}
