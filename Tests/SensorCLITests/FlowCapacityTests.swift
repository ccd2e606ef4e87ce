import XCTest
import TestSupport

/// `flows.max` / `--max-flows` are bounded, and the bound itself is cheap to start with: every table
/// sized by it (flow table, analysers' per-slot state) is reserved zero-filled and paged in on use.
final class FlowCapacityTests: XCTestCase {
    static let top = 16_777_216

    /// Wall time and peak resident memory of one `sensor` run, from GNU time.
    func measure(_ arguments: [String], in dir: URL) throws -> (status: Int32, seconds: Double, megabytes: Double, stderr: String) {
        let report = dir.appendingPathComponent("time-\(UUID().uuidString)").path
        let r = try TestSupport.run("/usr/bin/time", ["-f", "%e %M", "-o", report, TestSupport.sensorBinary] + arguments,
                                    currentDirectory: TestSupport.repositoryRoot.path)
        let fields = try String(contentsOfFile: report, encoding: .utf8).split(whereSeparator: \.isWhitespace)
        let seconds = try XCTUnwrap(fields.first.flatMap { Double($0) }, "\(fields)")
        let kilobytes = try XCTUnwrap(fields.last.flatMap { Double($0) }, "\(fields)")
        return (r.status, seconds, kilobytes / 1024, r.stderr)
    }

    /// A replay of a tiny capture with the largest allowed table starts as fast and as small as with the
    /// default one. Measured (debug build, 2 shared cores): 0.49–0.66 s and 39 MB at 16,777,216 flows,
    /// 0.42–0.68 s and 39–40 MB at the default; with the tables initialised eagerly 5.35 s and 920 MB.
    func testMaximumFlowCapacityStartsSmall() throws {
        let dir = try TestSupport.temporaryDirectory("flow-capacity")
        defer { try? FileManager.default.removeItem(at: dir) }
        let capture = TestSupport.data("pcaps/benign/dns.pcap")
        let base = try measure(["replay", "--output", "file:/dev/null", capture], in: dir)
        XCTAssertEqual(base.status, 0, base.stderr)
        let top = try measure(["replay", "--max-flows", "\(Self.top)", "--output", "file:/dev/null", capture], in: dir)
        XCTAssertEqual(top.status, 0, top.stderr)
        print("flow capacity \(Self.top): \(top.seconds) s, \(top.megabytes) MB; default: \(base.seconds) s, \(base.megabytes) MB")
        XCTAssertLessThan(top.megabytes - base.megabytes, 64, "resident memory grows with use, not with capacity")
        XCTAssertLessThan(top.seconds, base.seconds + 1, "no start-up work proportional to capacity")
    }

    /// Over the bound: the flag is a usage error (64) naming the option and its range; in a config file
    /// it is a configuration error (78) with FILE:LINE:COLUMN, from `check-config` and `replay` alike.
    func testOverBoundIsRejected() throws {
        let capture = TestSupport.data("pcaps/benign/dns.pcap")
        for value in ["99999999999999", "\(Self.top + 1)", "1000", "lots"] {
            let r = try TestSupport.sensor(["replay", "--max-flows", value, capture])
            XCTAssertEqual(r.status, 64, "\(value): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("--max-flows"), r.stderr)
            XCTAssertTrue(r.stderr.contains("1024 to \(Self.top)"), r.stderr)
            XCTAssertTrue(r.stdout.isEmpty)
        }
        let dir = try TestSupport.temporaryDirectory("flow-capacity")
        defer { try? FileManager.default.removeItem(at: dir) }
        let config = dir.appendingPathComponent("big.yaml").path
        try "flows:\n  max: 100000000\n".write(toFile: config, atomically: true, encoding: .utf8)
        let check = try TestSupport.sensor(["check-config", config])
        XCTAssertEqual(check.status, 78, check.stderr)
        XCTAssertTrue(check.stderr.contains("\(config):2:8: "), check.stderr)
        XCTAssertTrue(check.stderr.contains("between 1024 and \(Self.top)"), check.stderr)
        let replay = try TestSupport.sensor(["replay", "--config", config, capture])
        XCTAssertEqual(replay.status, 78, replay.stderr)
        XCTAssertTrue(replay.stderr.contains("\(config):2:8: "), replay.stderr)
        XCTAssertTrue(replay.stdout.isEmpty)
    }
}
