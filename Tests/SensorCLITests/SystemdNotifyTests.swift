import Foundation
import TestSupport
import XCTest

/// A Unix datagram socket the test binds, as systemd's `$NOTIFY_SOCKET` is: what the sensor reports to it.
final class NotifySocket {
    let path: String
    let fd: Int32

    init(directory: URL) throws {
        path = directory.appendingPathComponent("notify").path
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw LabError(message: "socket: \(errno)") }
        var sa = sockaddr_un()
        sa.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        withUnsafeMutableBytes(of: &sa.sun_path) { $0.copyBytes(from: bytes + [0]) }
        let rc = withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else { throw LabError(message: "bind \(path): \(errno)") }
        var tv = timeval(tv_sec: 0, tv_usec: 200_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    /// Datagrams received until `done` holds for what came so far, or `timeout` passes.
    func receive(timeout: TimeInterval, until done: ([String]) -> Bool) -> [String] {
        var got: [String] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline && !done(got) {
            let n = recv(fd, &buf, buf.count, 0)
            if n > 0 { got.append(String(decoding: buf[0..<n], as: UTF8.self)) }
        }
        return got
    }
}

/// `Type=notify` in Deploy/sensor.service: the real sensor, started as systemd starts it (with a
/// `$NOTIFY_SOCKET` and `$WATCHDOG_USEC`), reports readiness once capturing without privileges, feeds the
/// watchdog while its loops run, and says when it stops.
final class SystemdNotifyTests: XCTestCase {
    func testReadyAfterPrivilegesDropThenWatchdogPingsThenStopping() throws {
        guard getuid() == 0 else { throw XCTSkip("needs root for network namespaces (CI runs as root)") }
        let dir = try TestSupport.temporaryDirectory("notify")
        defer { try? FileManager.default.removeItem(at: dir) }
        let socket = try NotifySocket(directory: dir)
        let lab = try VethLab()
        defer { lab.close() }
        // 2 s watchdog: pings every second.
        let sensor = try lab.startSensor(["--workers", "2", "--allow-root", "--metrics", "off"],
                                         environment: ["NOTIFY_SOCKET": socket.path, "WATCHDOG_USEC": "2000000"])

        let ready = socket.receive(timeout: 30) { $0.contains { $0.contains("READY=1") } }
        guard let readyMessage = ready.first(where: { $0.contains("READY=1") }) else {
            return XCTFail("no READY=1 (got \(ready)); stderr: \(sensor.stderr)")
        }
        // Ready means capturing with no privilege left: the handles are open and every capability is gone.
        XCTAssertTrue(sensor.stderr.contains("capture started"), sensor.stderr)
        XCTAssertEqual(sensor.status("CapEff"), "0000000000000000")
        XCTAssertTrue(readyMessage.contains("STATUS=capturing on vcap with 2 worker(s)"), readyMessage)
        XCTAssertFalse(ready.dropLast().contains("WATCHDOG=1"), "no watchdog ping before readiness: \(ready)")

        // The watchdog is fed about once a second while the workers and the aggregator beat.
        let start = Date()
        let pings = socket.receive(timeout: 10) { $0.filter { $0 == "WATCHDOG=1" }.count >= 3 }
        XCTAssertGreaterThanOrEqual(pings.filter { $0 == "WATCHDOG=1" }.count, 3, "\(pings); stderr: \(sensor.stderr)")
        XCTAssertLessThan(Date().timeIntervalSince(start), 6, "pings every WATCHDOG_USEC/2")

        sensor.signal(SIGTERM)
        let stopping = socket.receive(timeout: 10) { $0.contains { $0.hasPrefix("STOPPING=1") } }
        XCTAssertTrue(stopping.contains { $0.hasPrefix("STOPPING=1") }, "\(stopping)")
        XCTAssertEqual(sensor.terminate(), 0, sensor.stderr)
    }

    /// Without `$NOTIFY_SOCKET` (not under systemd) nothing is sent and the sensor runs as before; with a
    /// `$WATCHDOG_PID` naming another process, readiness still goes out but no watchdog ping does.
    func testWatchdogForAnotherProcessIsNotFed() throws {
        guard getuid() == 0 else { throw XCTSkip("needs root for network namespaces (CI runs as root)") }
        let dir = try TestSupport.temporaryDirectory("notify")
        defer { try? FileManager.default.removeItem(at: dir) }
        let socket = try NotifySocket(directory: dir)
        let lab = try VethLab()
        defer { lab.close() }
        let sensor = try lab.startSensor(["--allow-root", "--metrics", "off"],
                                         environment: ["NOTIFY_SOCKET": socket.path, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"])
        let got = socket.receive(timeout: 30) { $0.contains { $0.contains("READY=1") } }
        XCTAssertTrue(got.contains { $0.contains("READY=1") }, "\(got); stderr: \(sensor.stderr)")
        let later = socket.receive(timeout: 3) { _ in false }
        XCTAssertFalse(later.contains("WATCHDOG=1"), "\(later)")
        XCTAssertEqual(sensor.terminate(), 0, sensor.stderr)
    }
}
