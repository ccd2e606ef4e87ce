import HostStage
import Foundation
import Prometheus
import Events

/// Metrics of one host-level aggregator: records applied, and its emitter's events and alerts under the
/// same families as the workers' (`sensor_events_total`, `sensor_alerts_total`) with `worker="hosts-N"`,
/// so sums over `worker` stay the sensor's totals. Published from the aggregator's thread once a second.
final class HostStageMetrics {
    let metrics: SensorMetrics
    let label: String
    var facts: DeltaCounter
    var undecodable: DeltaCounter
    let lag: Prometheus.Gauge
    let datasets: DatasetCounter
    var events: [String: DeltaCounter] = [:]
    var alerts: [RuleCategory: DeltaCounter] = [:]

    init(metrics: SensorMetrics, shard: Int, datasets: DatasetCounter) {
        self.metrics = metrics
        self.datasets = datasets
        label = "hosts-\(shard)"
        let s = [("shard", String(shard))]
        facts = DeltaCounter(counter: metrics.counter(.hostFacts, s))
        undecodable = DeltaCounter(counter: metrics.counter(.hostFactsUndecodable, s))
        lag = metrics.gauge(.hostStageLag, s)
    }

    func publish(_ a: HostAggregator) {
        facts.publish(a.stage.counters.facts)
        undecodable.publish(a.stage.counters.undecodable)
        if let seconds = Self.lagSeconds(clock: a.clock) { lag.set(to: seconds) }
        for (name, n) in datasets.snapshot {
            if events[name] == nil {
                events[name] = DeltaCounter(counter: metrics.counter(.events, [("dataset", name), ("worker", label)]))
            }
            events[name]!.publish(n)
        }
        for (category, n) in a.emitter.alertsByCategory {
            if alerts[category] == nil {
                alerts[category] = DeltaCounter(counter: metrics.counter(.alerts, [("category", category.rawValue), ("worker", label)]))
            }
            alerts[category]!.publish(n)
        }
    }
}

extension HostStageMetrics {
    /// Wall clock minus the merged packet clock, in seconds (ms resolution); nil before the merge has a
    /// clock. Live, packet times are the kernel's receive times and quiet workers advance their
    /// watermarks from the wall clock, so this stays near the merge's own delay (~10 ms) unless the
    /// aggregator falls behind.
    static func lagSeconds(clock: Int64, now: Double = Date().timeIntervalSince1970) -> Double? {
        guard clock != .min else { return nil }
        let seconds = now - Double(clock) / 1e9
        return (max(0, seconds) * 1000).rounded() / 1000
    }
}

/// A worker's producer-side view of its rings: records dropped because a ring was full
/// (`sensor_host_facts_dropped_total{worker}`), and the `spanwatch.stats.host_facts` fields.
final class HostFactDropMetrics {
    let rings: [SPSCByteRing]
    var dropped: DeltaCounter?
    var pushed: DeltaCounter?

    init(rings: [SPSCByteRing], metrics: SensorMetrics?, worker: Int) {
        self.rings = rings
        let w = [("worker", String(worker))]
        dropped = metrics.map { DeltaCounter(counter: $0.counter(.hostFactsDropped, w)) }
        pushed = metrics.map { DeltaCounter(counter: $0.counter(.hostFactsSent, w)) }
    }

    var droppedTotal: UInt64 { rings.reduce(0) { $0 &+ $1.droppedCount } }
    var pushedTotal: UInt64 { rings.reduce(0) { $0 &+ $1.pushedCount } }

    func publish() {
        dropped?.publish(droppedTotal)
        pushed?.publish(pushedTotal)
    }

    /// `spanwatch.stats.host_facts`: records this worker sent to the host-level stage and dropped (ring full).
    func write(into w: inout JSONWriter) {
        w.beginObject("host_facts")
        w.field("sent", pushedTotal)
        w.field("dropped", droppedTotal)
        w.endObject()
    }
}
