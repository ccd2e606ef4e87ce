/// Every metric family `/metrics` exports, with its type and the `# HELP` line Prometheus shows.
///
/// One closed list: a family is registered only through its case here (`SensorMetrics.counter`/`gauge`),
/// so none goes out without help text, and the alert rules and dashboard in `Deploy/prometheus/` are
/// checked against what a live sensor really exports.
public enum SensorMetric: String, CaseIterable, Sendable {
    // Per worker (`worker` label).
    case packets = "sensor_packets_total"
    case bytes = "sensor_bytes_total"
    case flowsCreated = "sensor_flows_created_total"
    case flowsEnded = "sensor_flows_ended_total"
    case flowEvictions = "sensor_flow_evictions_total"
    case decodeErrors = "sensor_decode_errors_total"
    case flowsActive = "sensor_flows_active"
    case captureReceived = "sensor_capture_received_total"
    case captureKernelDrops = "sensor_capture_kernel_drops_total"
    case captureInterfaceDrops = "sensor_capture_interface_drops_total"
    case events = "sensor_events_total"
    case alerts = "sensor_alerts_total"
    case hostFactsSent = "sensor_host_facts_sent_total"
    case hostFactsDropped = "sensor_host_facts_dropped_total"
    // Per host-level aggregator (`shard` label).
    case hostFacts = "sensor_host_facts_total"
    case hostFactsUndecodable = "sensor_host_facts_undecodable_total"
    case hostStageLag = "sensor_host_stage_lag_seconds"
    // Per host-level aggregator, cross-flow detector and field (`shard`, `detector`, `field` labels).
    case detectorState = "sensor_detector_state"
    case detectorCounts = "sensor_detector_total"
    // Per output (`output` label).
    case outputAccepted = "sensor_output_events_accepted_total"
    case outputDelivered = "sensor_output_events_delivered_total"
    case outputFailures = "sensor_output_failures_total"
    case outputDropped = "sensor_output_events_dropped_total"
    case outputAlertsDropped = "sensor_output_alerts_dropped_total"
    case outputSpooled = "sensor_output_events_spooled_total"
    case outputSpoolBytes = "sensor_output_spool_bytes"

    public enum Kind: String, Sendable { case counter, gauge }

    public var kind: Kind {
        switch self {
        case .flowsActive, .hostStageLag, .detectorState, .outputSpoolBytes: return .gauge
        default: return .counter
        }
    }

    public var help: String {
        switch self {
        case .packets: return "Packets the worker decoded."
        case .bytes: return "Bytes of the packets the worker decoded (wire length)."
        case .flowsCreated: return "Flows the worker's flow table created."
        case .flowsEnded: return "Flows that ended (FIN/RST, idle or active timeout, shutdown)."
        case .flowEvictions: return "Flows evicted early because the flow table was full."
        case .decodeErrors: return "Packets that were truncated, malformed or had a timestamp out of range."
        case .flowsActive: return "Flows open in the worker's flow table."
        case .captureReceived: return "Packets the kernel delivered to the worker's capture ring."
        case .captureKernelDrops: return "Packets the kernel dropped because the worker's capture ring was full."
        case .captureInterfaceDrops: return "Packets the network interface or its driver dropped."
        case .events: return "Events emitted, by event.dataset and worker (hosts-N: a host-level aggregator)."
        case .alerts: return "Alerts emitted, by rule category and worker (hosts-N: a host-level aggregator)."
        case .hostFactsSent: return "Records the worker sent to the host-level aggregators."
        case .hostFactsDropped: return "Records the worker dropped because a host-level aggregator's ring was full."
        case .hostFacts: return "Records the host-level aggregator applied."
        case .hostFactsUndecodable: return "Records the host-level aggregator could not decode."
        case .hostStageLag: return "Seconds the host-level aggregator's merged packet clock trails the wall clock."
        case .detectorState: return "State a cross-flow detector holds now, and its bounds (field max_*): a table at its bound evicts."
        case .detectorCounts: return "Counts of a cross-flow detector since start (inputs, alerts, suppressed, *_evicted at its bounds)."
        case .outputAccepted: return "Events the output accepted from the pipeline."
        case .outputDelivered: return "Events the output delivered to its destination."
        case .outputFailures: return "Delivery failures of the output (each retried, spooled or counted as dropped)."
        case .outputDropped: return "Events the output lost (queue or spool full, or undeliverable)."
        case .outputAlertsDropped: return "Alerts among the events the output lost."
        case .outputSpooled: return "Events the output wrote to its disk spool while its destination was unreachable."
        case .outputSpoolBytes: return "Bytes waiting in the output's disk spool."
        }
    }
}
