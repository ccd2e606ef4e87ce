import Events

/// Exit statuses `replay`, `hunt` and `run` share beyond 0, 1 and 78 (README, docs/LIVE.md).
enum ExitStatus {
    /// An input was damaged part-way; every event before the damage was still written.
    static let inputDamaged: Int32 = 3
    /// EX_IOERR: an output lost events (write error, full queue or spool). Wins over 3 and 1: whatever
    /// else happened, what reached that output is incomplete.
    static let outputLostEvents: Int32 = 74

    /// Names every output that lost events; true when one did.
    static func reportOutputLoss(_ outputs: [(name: String, statistics: SinkStatistics)]) -> Bool {
        var lost = false
        for (name, st) in outputs where st.dropped > 0 {
            printError("error: output \(name) lost \(st.dropped) of \(st.accepted) events (\(st.droppedAlerts) of them alerts)")
            lost = true
        }
        return lost
    }
}
