import Foundation
import TestSupport
import XCTest

/// Rules, config and indicator files that are not readable regular files: a clear error naming the file,
/// at once. Only a file that does not exist means the built-in defaults. Every run goes through
/// `timeout` (and a memory limit), so a read that never ends fails the test instead of hanging it.
final class RulesFileTests: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws { dir = try TestSupport.temporaryDirectory("rules-file") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    var rules: String { dir.appendingPathComponent("rules").path }
    let capture = TestSupport.data("pcaps/benign/dns.pcap")

    func makeRules() throws {
        try FileManager.default.createDirectory(atPath: rules, withIntermediateDirectories: true)
        chmod(dir.path, 0o755)
        chmod(rules, 0o755)
    }

    /// `sensor ARGS` bounded to 30 s and 2 GiB of address space; status 124 means it hung. `user`: a uid
    /// to run as.
    func bounded(_ arguments: [String], as user: String? = nil) throws -> TestSupport.ProcessResult {
        let drop = user.map { "setpriv --reuid=\($0) --regid=\($0) --clear-groups --inh-caps=-all --bounding-set=-all " } ?? ""
        let quoted = ([TestSupport.sensorBinary] + arguments).map { "'\($0)'" }.joined(separator: " ")
        return try TestSupport.run("/bin/sh", ["-c", "ulimit -v 2097152; exec timeout 30 \(drop)\(quoted)"],
                                   currentDirectory: TestSupport.repositoryRoot.path)
    }

    func assertRefused(_ r: TestSupport.ProcessResult, file: String, reason: String, line: UInt = #line) {
        XCTAssertEqual(r.status, 78, "status (124: it hung): \(r.stderr)", line: line)
        XCTAssertTrue(r.stderr.contains(file) && r.stderr.contains(reason), r.stderr, line: line)
    }

    func testFIFOAsRulesFileIsRefusedAtOnce() throws {
        try makeRules()
        let fifo = rules + "/c2.yaml"
        XCTAssertEqual(mkfifo(fifo, 0o644), 0)
        let started = Date()
        assertRefused(try bounded(["check-rules", rules]), file: fifo, reason: "FIFO")
        assertRefused(try bounded(["replay", "--rules", rules, capture]), file: fifo, reason: "FIFO")
        XCTAssertLessThan(Date().timeIntervalSince(started), 20)
    }

    func testDeviceAsRulesFileIsRefused() throws {
        try makeRules()
        let zero = rules + "/beaconing.yaml"
        XCTAssertEqual(symlink("/dev/zero", zero), 0)
        assertRefused(try bounded(["check-rules", rules]), file: zero, reason: "a device")
        assertRefused(try bounded(["replay", "--rules", rules, capture]), file: zero, reason: "a device")
    }

    /// A directory where a rules file belongs is an error, not the defaults (start-up and check-rules).
    func testDirectoryInPlaceOfRulesFileIsAnError() throws {
        try makeRules()
        for name in ["c2.yaml", "dns-tunneling.yaml", "lateral-movement.yaml"] {
            let path = rules + "/" + name
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
            assertRefused(try bounded(["replay", "--rules", rules, capture]), file: path, reason: "a directory")
            assertRefused(try bounded(["check-rules", rules]), file: path, reason: "a directory")
            try FileManager.default.removeItem(atPath: path)
        }
        // Absent files are the defaults.
        let ok = try bounded(["replay", "--rules", rules, capture])
        XCTAssertEqual(ok.status, 0, ok.stderr)
    }

    /// A rules file the sensor's user cannot read (EACCES) is an error, not the defaults. Root reads
    /// anything, so the sensor runs as nobody here.
    func testPermissionDeniedRulesFileIsAnError() throws {
        guard getuid() == 0, TestSupport.hasTool("setpriv") else { throw XCTSkip("needs root and setpriv to run the sensor as nobody") }
        try makeRules()
        let path = rules + "/c2.yaml"
        try FileManager.default.copyItem(atPath: TestSupport.repositoryRoot.appendingPathComponent("Rules/c2.yaml").path, toPath: path)
        chmod(path, 0o000)
        assertRefused(try bounded(["replay", "--rules", rules, "--output", "stdout", capture], as: "65534"), file: path, reason: "Permission denied")
        chmod(path, 0o644)
        let ok = try bounded(["replay", "--rules", rules, capture], as: "65534")
        XCTAssertEqual(ok.status, 0, "readable again: \(ok.stderr)")
    }

    func testFIFOAsConfigOrIndicatorFileIsRefused() throws {
        let config = dir.appendingPathComponent("sensor.yaml").path
        XCTAssertEqual(mkfifo(config, 0o644), 0)
        assertRefused(try bounded(["check-config", config]), file: config, reason: "FIFO")
        assertRefused(try bounded(["replay", "--config", config, capture]), file: config, reason: "FIFO")
        let feed = dir.appendingPathComponent("feed.csv").path
        XCTAssertEqual(mkfifo(feed, 0o644), 0)
        assertRefused(try bounded(["hunt", "--indicators", feed, capture]), file: feed, reason: "FIFO")
    }

    /// The Public Suffix List named by `dns.psl` is read like every other input file.
    func testFIFOAsPublicSuffixListIsRefused() throws {
        let psl = dir.appendingPathComponent("psl.dat").path
        XCTAssertEqual(mkfifo(psl, 0o644), 0)
        let config = dir.appendingPathComponent("sensor.yaml")
        try "dns:\n  psl: \(psl)\n".write(to: config, atomically: true, encoding: .utf8)
        assertRefused(try bounded(["replay", "--config", config.path, capture]), file: psl, reason: "FIFO")
    }

    /// SIGHUP with a rules file turned into a FIFO: the reload is rejected with the file named, and the
    /// sensor keeps running on the rules it had (before, the reload hung on the FIFO for good).
    func testSighupReloadRejectsAFIFO() throws {
        guard getuid() == 0, TestSupport.hasTool("ip"), TestSupport.hasTool("tcpreplay") else { throw XCTSkip("needs root, ip and tcpreplay") }
        let lab = try VethLab()
        defer { lab.close() }
        try makeRules()
        let sensor = try lab.startSensor(["--allow-root", "--metrics", "off", "--rules", rules])
        try sensor.waitUntilCapturing()
        XCTAssertEqual(mkfifo(rules + "/c2.yaml", 0o644), 0)
        sensor.signal(SIGHUP)
        XCTAssertTrue(sensor.waitFor("rules reload rejected"), sensor.stderr)
        XCTAssertTrue(sensor.stderr.contains("c2.yaml") && sensor.stderr.contains("FIFO"), sensor.stderr)
        try FileManager.default.removeItem(atPath: rules + "/c2.yaml")
        try lab.replay([capture])
        Thread.sleep(forTimeInterval: 0.5)
        XCTAssertEqual(sensor.terminate(), 0, sensor.stderr)
        XCTAssertFalse(LiveCaptureTests.flows(try sensor.events()).isEmpty, "still capturing after the rejected reload")
    }
}
