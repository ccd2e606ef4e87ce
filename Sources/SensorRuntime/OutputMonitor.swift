import Events
import Logging

/// Logs an output that fails while the sensor runs, as it starts failing, not only in the end-of-run
/// summary: a full disk or an unreachable collector must reach the operator while it still matters.
///
/// It reads the sinks' own counters and failure reasons (no hook on the packet path), once a second from
/// the output service. An output fails when its failed or dropped counters grow or it reports a new
/// reason (a Kafka cluster that went away, a spool that cannot be written). The first failure is logged
/// at once; while it keeps failing, at most one line per `interval` with the events failed and lost since
/// the previous line; the first clean second with deliveries after that logs the recovery. Counts are in
/// `spanwatch.stats.outputs` and the metrics.
final class OutputMonitor: @unchecked Sendable {
    struct Watch {
        var seen = SinkStatistics()
        var reason: String?
        var failing = false
        var lastLog: ContinuousClock.Instant?
        /// Failed and lost since the last line.
        var failed: UInt64 = 0
        var lost: UInt64 = 0
    }

    let sinks: [any EventSink]
    let logger: Logger
    let interval: Duration
    private var watches: [Watch]

    init(sinks: [any EventSink], logger: Logger, interval: Duration = .seconds(60)) {
        self.sinks = sinks
        self.logger = logger
        self.interval = interval
        watches = sinks.map { Watch(seen: $0.statistics) }
    }

    /// Called from one task only (the output service).
    func check(now: ContinuousClock.Instant = .now) {
        for (i, sink) in sinks.enumerated() {
            let st = sink.statistics
            var w = watches[i]
            let newFailed = st.failed &- w.seen.failed, newLost = st.dropped &- w.seen.dropped
            let delivered = st.delivered &- w.seen.delivered
            w.seen = st
            w.failed &+= newFailed
            w.lost &+= newLost
            let reason = sink.failureReason
            let newReason = reason != nil && reason != w.reason
            w.reason = reason
            if newFailed > 0 || newLost > 0 || newReason {
                if !w.failing || w.lastLog.map({ now - $0 >= interval }) ?? true {
                    log(sink, &w, st, message: w.failing ? "output still failing" : "output failing", now: now)
                    w.failing = true
                }
            } else if w.failing && delivered > 0 && newFailed == 0 && newLost == 0 {
                if w.failed > 0 || w.lost > 0 { log(sink, &w, st, message: "output failing", now: now) }
                logger.notice("output delivering again", metadata: ["output": "\(sink.name)"])
                w.failing = false
            }
            watches[i] = w
        }
    }

    private func log(_ sink: any EventSink, _ w: inout Watch, _ st: SinkStatistics, message: Logger.Message, now: ContinuousClock.Instant) {
        var meta: Logger.Metadata = [
            "output": "\(sink.name)", "failed": "\(w.failed)", "lost": "\(w.lost)",
            "total_failed": "\(st.failed)", "total_dropped": "\(st.dropped)", "total_dropped_alerts": "\(st.droppedAlerts)",
        ]
        if let lastLog = w.lastLog { meta["since_seconds"] = "\((now - lastLog).components.seconds)" }
        if let why = sink.failureReason { meta["error"] = "\(why)" }
        // Events lost for good are an error; failures an output recovers from (Kafka re-spools) a warning.
        if w.lost > 0 { logger.error(message, metadata: meta) } else { logger.warning(message, metadata: meta) }
        w.lastLog = now
        w.failed = 0
        w.lost = 0
    }
}
