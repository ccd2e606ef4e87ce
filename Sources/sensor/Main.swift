import ArgumentParser
import Dispatch

/// The process entry point.
///
/// Swift's async `main` hands the main thread to `dispatch_main`, which ends it: by the time a command's
/// `run()` starts, the process already has a dead main thread and pool threads. `sensor run` must drop
/// its privileges while it is the only thread (capabilities are per thread), so this synchronous entry
/// parses the command line, lets `run` do its privileged start-up here, and only then starts the async
/// part on the cooperative pool while the main thread waits.
@main
enum SensorMain {
    static func main() {
        let command: ParsableCommand
        do { command = try Sensor.parseAsRoot() } catch { exit(error) }
        if let live = command as? Run {
            let sensor = live.prepare()
            block { try await live.run(sensor) }
        } else if var asyncCommand = command as? AsyncParsableCommand {
            block { try await asyncCommand.run() }
        } else {
            var c = command
            do { try c.run() } catch { exit(error) }
        }
    }

    /// Ends the process for an error: a `CLIError` with its own status (78 for a bad config file, as
    /// documented), anything else as argument-parser does (64 for a malformed option).
    static func exit(_ error: any Error) -> Never {
        if let e = error as? CLIError { fail("error: \(e.message)", code: e.code) }
        Sensor.exit(withError: error)
    }

    /// Runs `body` on the cooperative pool and hands the main thread to Dispatch, as Swift's async `main`
    /// does (the main queue must be drained: the runtime and the service lifecycle schedule work on it).
    /// The process exits when `body` ends.
    static func block(_ body: @escaping () async throws -> Void) -> Never {
        // The body runs on exactly one task and nothing else touches it: handing it over is safe.
        struct Handover: @unchecked Sendable { let body: () async throws -> Void }
        let handover = Handover(body: body)
        Task.detached {
            do { try await handover.body() } catch { exit(error) }
            Sensor.exit()
        }
        dispatchMain()
    }
}
