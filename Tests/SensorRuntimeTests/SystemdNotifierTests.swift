import Foundation
import SensorRuntime
import XCTest

/// sd_notify(3) without libsystemd: what the environment systemd sets means, the abstract socket form, and
/// when a loop counts as stalled. The real binary under a test-bound socket: SystemdNotifyTests.
final class SystemdNotifierTests: XCTestCase {
    func testEnvironmentAsSystemdSetsIt() throws {
        XCTAssertNil(SystemdNotifier(environment: [:]), "not under systemd: nothing to notify")
        XCTAssertNil(SystemdNotifier(environment: ["NOTIFY_SOCKET": "relative/path"]))
        XCTAssertNil(SystemdNotifier(environment: ["NOTIFY_SOCKET": "/" + String(repeating: "x", count: 200)]), "longer than sun_path")
        let plain = try XCTUnwrap(SystemdNotifier(environment: ["NOTIFY_SOCKET": "/run/systemd/notify"]))
        XCTAssertNil(plain.watchdogInterval, "no WatchdogSec=")
        let dog = try XCTUnwrap(SystemdNotifier(environment: ["NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": "30000000"]))
        XCTAssertEqual(dog.watchdogInterval, .seconds(15), "pinged at half the timeout")
        let ours = try XCTUnwrap(SystemdNotifier(environment: ["NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": "30000000",
                                                              "WATCHDOG_PID": "\(getpid())"]))
        XCTAssertEqual(ours.watchdogInterval, .seconds(15))
        let theirs = try XCTUnwrap(SystemdNotifier(environment: ["NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": "30000000",
                                                                "WATCHDOG_PID": "\(getpid() + 1)"]))
        XCTAssertNil(theirs.watchdogInterval, "the watchdog is another process's")
    }

    /// `@name`: the abstract namespace (systemd's own socket under some managers, and the user manager's).
    func testAbstractSocketReceivesTheDatagram() throws {
        let name = "sensor-test-\(UInt32.random(in: 0...UInt32.max))"
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd) }
        var sa = sockaddr_un()
        sa.sun_family = sa_family_t(AF_UNIX)
        let bytes = [UInt8(0)] + Array(name.utf8)
        withUnsafeMutableBytes(of: &sa.sun_path) { $0.copyBytes(from: bytes) }
        let length = socklen_t(MemoryLayout.offset(of: \sockaddr_un.sun_path)! + bytes.count)
        let rc = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        XCTAssertEqual(rc, 0, "bind: \(errno)")
        let notifier = try XCTUnwrap(SystemdNotifier(environment: ["NOTIFY_SOCKET": "@" + name]))
        XCTAssertTrue(notifier.send("READY=1\nSTATUS=capturing"))
        var buf = [UInt8](repeating: 0, count: 512)
        let n = recv(fd, &buf, buf.count, Int32(MSG_DONTWAIT))
        XCTAssertEqual(n > 0 ? String(decoding: buf[0..<n], as: UTF8.self) : "", "READY=1\nSTATUS=capturing")
    }

    func testHeartbeatGoesStaleWhenItsLoopStopsBeating() {
        let a = Heartbeat(name: "worker-0"), b = Heartbeat(name: "hosts-0")
        a.beat(); b.beat()
        let now = Heartbeat.monotonicNanoseconds()
        XCTAssertEqual(Heartbeat.stale([a, b], olderThan: .seconds(3), now: now).map(\.name), [])
        // Four seconds on, with neither loop beating since.
        let later = now + 4_000_000_000
        XCTAssertEqual(Heartbeat.stale([a, b], olderThan: .seconds(3), now: later).map(\.name), ["worker-0", "hosts-0"])
        // Only the loop that beat recently is fresh.
        a.beat()
        Thread.sleep(forTimeInterval: 0.3)
        b.beat()
        XCTAssertEqual(Heartbeat.stale([a, b], olderThan: .milliseconds(150)).map(\.name), ["worker-0"])
    }
}
