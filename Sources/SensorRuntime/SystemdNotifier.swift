import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// systemd's service notification protocol (sd_notify(3)), without libsystemd: one datagram of
/// `KEY=VALUE` lines to the Unix socket named by `$NOTIFY_SOCKET` (a path, or `@name` for the abstract
/// namespace). Under `Type=notify` the unit counts as started at `READY=1`; with `WatchdogSec=` systemd
/// sets `$WATCHDOG_USEC` and restarts the service when `WATCHDOG=1` stops coming.
public final class SystemdNotifier: Sendable {
    let fd: Int32
    let address: [UInt8]
    /// Half of `$WATCHDOG_USEC` (as sd_watchdog_enabled(3) advises); nil without a watchdog, or when
    /// `$WATCHDOG_PID` names another process.
    public let watchdogInterval: Duration?

    /// nil outside systemd (no `$NOTIFY_SOCKET`) or when the socket cannot be made.
    public init?(environment: [String: String] = ProcessInfo.processInfo.environment) {
        guard let path = environment["NOTIFY_SOCKET"], path.count > 1, path.hasPrefix("/") || path.hasPrefix("@") else { return nil }
        var bytes = Array(path.utf8)
        if bytes[0] == UInt8(ascii: "@") { bytes[0] = 0 }
        guard bytes.count < MemoryLayout.size(ofValue: sockaddr_un().sun_path) else { return nil }
        let s = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard s >= 0 else { return nil }
        fd = s
        address = bytes
        let forUs = environment["WATCHDOG_PID"].flatMap { Int32($0) }.map { $0 == getpid() } ?? true
        if forUs, let usec = environment["WATCHDOG_USEC"].flatMap({ UInt64($0) }), usec > 0 {
            watchdogInterval = .microseconds(Int64(clamping: usec / 2))
        } else {
            watchdogInterval = nil
        }
    }

    deinit { close(fd) }

    /// Sends one notification (e.g. `READY=1\nSTATUS=capturing`); false when the datagram did not go.
    @discardableResult
    public func send(_ state: String) -> Bool {
        var sa = sockaddr_un()
        sa.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &sa.sun_path) { p in
            p.copyBytes(from: address)
        }
        // An abstract address is exactly as long as its name; a path one includes its terminating zero.
        let length = MemoryLayout.offset(of: \sockaddr_un.sun_path)! + address.count + (address[0] == 0 ? 0 : 1)
        let message = Array(state.utf8)
        let n = withUnsafePointer(to: &sa) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { a in
                message.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), a, socklen_t(length)) }
            }
        }
        return n == message.count
    }
}

/// When each long-running loop (capture workers, host-level aggregators) last did its periodic work.
/// The watchdog is fed only while every one of them has done so recently: a worker stuck in a call or
/// a spinning aggregator stops the pings, and systemd restarts the sensor.
public final class Heartbeat: Sendable {
    public let name: String
    let last = Atomic<Int64>(Heartbeat.monotonicNanoseconds())

    public init(name: String) { self.name = name }

    /// Called from the loop's own thread, about once a second.
    public func beat() { last.store(Self.monotonicNanoseconds(), ordering: .relaxed) }

    public func age(now: Int64 = Heartbeat.monotonicNanoseconds()) -> Duration {
        .nanoseconds(now &- last.load(ordering: .relaxed))
    }

    /// The heartbeats older than `limit` at `now`.
    public static func stale(_ beats: [Heartbeat], olderThan limit: Duration, now: Int64 = monotonicNanoseconds()) -> [Heartbeat] {
        beats.filter { $0.age(now: now) > limit }
    }

    public static func monotonicNanoseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) &* 1_000_000_000 &+ Int64(ts.tv_nsec)
    }
}

/// The sensor's side of `Type=notify`: `READY=1` when it starts (listed last in the service group, after
/// capture handles are open and privileges dropped), `WATCHDOG=1` every `watchdogInterval` while every
/// heartbeat is younger than `staleAfter`, and `STOPPING=1` first thing at shutdown (it stops first).
final class SystemdNotifyService: Service, @unchecked Sendable {
    let notifier: SystemdNotifier
    let status: String
    let heartbeats: [Heartbeat]
    let logger: Logger

    init(notifier: SystemdNotifier, status: String, heartbeats: [Heartbeat], logger: Logger) {
        self.notifier = notifier
        self.status = status
        self.heartbeats = heartbeats
        self.logger = logger
    }

    /// Loops beat about once a second (plus one capture block timeout); never ask for more than that.
    var staleAfter: Duration { max(notifier.watchdogInterval ?? .zero, .seconds(3)) }

    func run() async throws {
        notifier.send("READY=1\nSTATUS=\(status)")
        defer { notifier.send("STOPPING=1\nSTATUS=stopping: reporting open flows, flushing outputs") }
        guard let interval = notifier.watchdogInterval else {
            try? await gracefulShutdown()
            return
        }
        var warned = false
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            let late = Heartbeat.stale(heartbeats, olderThan: staleAfter)
            if late.isEmpty {
                notifier.send("WATCHDOG=1")
                warned = false
            } else if !warned {
                warned = true
                logger.error("watchdog not fed: a loop stopped doing its periodic work", metadata: [
                    "loops": "\(late.map(\.name).joined(separator: ","))",
                ])
            }
            do { try await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) } } catch { break }
        }
    }
}
