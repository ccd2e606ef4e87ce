import HostStage
import Foundation
import Prometheus
import Detectors
import Events

/// Metrics of one host-level aggregator: records applied, and its emitter's events and alerts under the
/// same families as the workers' (`sensor_events_total`, `sensor_alerts_total`) with `worker="hosts-N"`,
/// so sums over `worker` stay the sensor's totals. Published from the aggregator's thread once a second.
final class HostStageMetrics {
    let metrics: SensorMetrics
    let label: String
    let shard: String
    var facts: DeltaCounter
    var undecodable: DeltaCounter
    let lag: Prometheus.Gauge
    let datasets: DatasetCounter
    var events: [String: DeltaCounter] = [:]
    var alerts: [RuleCategory: DeltaCounter] = [:]
    /// `sensor_detector_state` / `sensor_detector_total` series by "detector field".
    var detectorState: [String: Prometheus.Gauge] = [:]
    var detectorCounts: [String: DeltaCounter] = [:]

    init(metrics: SensorMetrics, shard: Int, datasets: DatasetCounter) {
        self.metrics = metrics
        self.datasets = datasets
        label = "hosts-\(shard)"
        self.shard = String(shard)
        let s = [("shard", String(shard))]
        facts = DeltaCounter(counter: metrics.counter(.hostFacts, s))
        undecodable = DeltaCounter(counter: metrics.counter(.hostFactsUndecodable, s))
        lag = metrics.gauge(.hostStageLag, s)
    }

    func publish(_ a: HostAggregator, statistics: HostStageStatistics) {
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
        publish(statistics.detectors)
    }

    /// The detectors' `spanwatch.stats.host_stage` figures as metrics, so a table at its bound (evicting
    /// state, hence missing detections) can be alerted on (`SensorDetectorEvicting`).
    func publish(_ detectors: [DetectorStatistics]) {
        for d in detectors {
            let detector = d.name.description
            for f in d.state {
                let key = detector + " " + f.name.description
                if detectorState[key] == nil {
                    detectorState[key] = metrics.gauge(.detectorState, dims(detector, f.name))
                }
                detectorState[key]!.set(to: Double(f.value))
            }
            for f in d.counters {
                let key = detector + " " + f.name.description
                if detectorCounts[key] == nil {
                    detectorCounts[key] = DeltaCounter(counter: metrics.counter(.detectorCounts, dims(detector, f.name)))
                }
                detectorCounts[key]!.publish(f.value)
            }
        }
    }

    func dims(_ detector: String, _ field: StaticString) -> [(String, String)] {
        [("shard", shard), ("detector", detector), ("field", field.description)]
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
