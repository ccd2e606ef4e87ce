import XCTest
import TestSupport

/// SIGTERM mid-replay: the sensor stops reading, reports every flow it has seen, writes its statistics
/// and exits 130, saying the replay was interrupted (swift-service-lifecycle graceful shutdown; outputs
/// drain last).
final class ShutdownTests: XCTestCase {
    func testSIGTERMFlushesEveryFlow() throws {
        let dir = try TestSupport.temporaryDirectory("sigterm")
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("events.json").path
        let large = TestSupport.captures("large").first!
        let p = Process()
        p.executableURL = URL(fileURLWithPath: TestSupport.sensorBinary)
        // Replaying the large capture twice over takes long enough to be interrupted.
        p.arguments = ["replay", large, large, "--output", "file:\(out)", "--log-level", "error"]
        try p.run()
        // Signal once events flow (the signal handlers are in place by then), however slow the start.
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline && ((try? FileManager.default.attributesOfItem(atPath: out)[.size] as? Int) ?? 0) == 0 {
            Thread.sleep(forTimeInterval: 0.05)
        }
        XCTAssertTrue(p.isRunning, "replay finished before the signal; the test needs a longer input")
        kill(p.processIdentifier, SIGTERM)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 130, "an interrupted replay is no success")
        let lines = try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n")
        let events = try lines.map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        let stats = try XCTUnwrap(events.last)
        XCTAssertEqual(TestSupport.value(stats, "event.dataset") as? String, "spanwatch.stats")
        let packets = try XCTUnwrap(TestSupport.value(stats, "spanwatch.stats.packets") as? Int)
        XCTAssertGreaterThan(packets, 0)
        XCTAssertLessThan(packets, 2 * 230_000, "stopped before the end")
        let created = try XCTUnwrap(TestSupport.value(stats, "spanwatch.stats.flows.created") as? Int)
        let finalReports = events.filter {
            TestSupport.value($0, "event.dataset") as? String == "spanwatch.flow" && TestSupport.value($0, "event.reason") as? String != "active_timeout"
        }
        XCTAssertEqual(finalReports.count, created, "every flow seen is reported exactly once")
        XCTAssertEqual(TestSupport.value(stats, "spanwatch.stats.flows.active") as? Int, 0)
    }
}
