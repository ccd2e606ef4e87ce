import Capture
import ConfigKit
import Events
import SensorRuntime

/// Every exit status the CLI returns, in one place (README "Exit status", docs/LIVE.md); each command's
/// help lists the ones it uses.
enum ExitStatus {
    /// A command failed: an input, output or capture could not be opened, an output failed to close.
    static let failure: Int32 = 1
    /// `custody verify`: the chain or a file does not verify.
    static let verificationFailed: Int32 = 2
    /// An input was damaged part-way; every event before the damage was still written.
    static let inputDamaged: Int32 = 3
    /// EX_NOINPUT: `aggregate --exit-at-end` saw no producer on its partitions within `--producer-wait`.
    static let noInput: Int32 = 66
    /// EX_CANTCREAT: a private directory is unsafe or cannot be made.
    static let cannotCreate: Int32 = 73
    /// EX_IOERR: an output lost events (write error, full queue or spool), or a batch run (`replay`,
    /// `hunt`, `report`) ends with events still in a Kafka spool, undelivered. Wins over 3 and 1: whatever
    /// else happened, what reached that output is incomplete.
    static let outputLostEvents: Int32 = 74
    /// EX_NOPERM: privileges (root without --user, an unknown user).
    static let noPermission: Int32 = 77
    /// EX_CONFIG: configuration, rules or indicators are invalid.
    static let configuration: Int32 = 78
    /// 128 + SIGINT: a replay stopped by SIGINT or SIGTERM before the end of its input (wins over the others).
    static let interrupted: Int32 = 130

    /// The status of a live start that failed.
    static func of(_ e: LiveStartError) -> Int32 {
        switch e {
        case .configuration: return configuration
        case .privileges: return noPermission
        case .directory: return cannotCreate
        case .capture, .output, .metrics: return failure
        }
    }

    /// Names every output that lost events; true when one did. `batch`: a run that ends here (not a
    /// service that restarts), where events left in a spool are undelivered too.
    static func reportOutputLoss(_ outputs: [(name: String, statistics: SinkStatistics)], batch: Bool = false) -> Bool {
        var lost = false
        for (name, st) in outputs {
            if st.dropped > 0 {
                printError("error: output \(name) lost \(st.dropped) of \(st.accepted) events (\(st.droppedAlerts) of them alerts)")
                lost = true
            } else if batch && st.spoolBytes > 0 {
                printError("error: output \(name) delivered \(st.delivered) of \(st.accepted) events; the rest wait in its spool (\(st.spoolBytes) bytes) for the next start")
                lost = true
            }
        }
        return lost
    }

    /// Ends the process for an error found before the first packet (`replay`, `hunt`): 78 for
    /// configuration, rules and indicators (EX_CONFIG), 1 for inputs and outputs.
    static func failStart(_ error: Error) -> Never {
        switch error {
        case let e as ConfigIssues: fail("error: invalid rules or indicators:\n\(e.description)", code: configuration)
        case let e as SensorResources.SetupError: fail("error: \(e.description)", code: configuration)
        case let e as CaptureError: fail("error: \(e.description)", code: failure)
        default: fail("error: \(error)", code: failure)
        }
    }
}
