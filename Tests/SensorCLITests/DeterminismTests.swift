import XCTest
import TestSupport

/// Replay is deterministic: the same capture gives the same events, byte for byte, on every run (no
/// per-process hash seeds or wall-clock time leak into events), which evidence, tests and SIEM
/// de-duplication rely on.
final class DeterminismTests: XCTestCase {
    func testTwoReplaysGiveIdenticalEvents() throws {
        let files = [TestSupport.captures("large").first!, TestSupport.data("pcaps/beacon/test-cc-capture-2.pcap")]
        let a = try TestSupport.sensor(["replay"] + files + ["--log-level", "error"])
        let b = try TestSupport.sensor(["replay"] + files + ["--log-level", "error"])
        XCTAssertEqual(a.status, 0, a.stderr)
        XCTAssertGreaterThan(a.lines.count, 1000)
        // spanwatch.stats carries delivery counts of the outputs so far, which depend on flush timing.
        let events = { (r: TestSupport.ProcessResult) in r.lines.filter { !$0.contains("\"dataset\":\"spanwatch.stats\"") }.sorted() }
        XCTAssertEqual(events(a).count, a.lines.count - 1)
        XCTAssertEqual(events(a), events(b))
    }
}
