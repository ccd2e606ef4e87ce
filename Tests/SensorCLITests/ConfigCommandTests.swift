import XCTest
import TestSupport

final class ConfigCommandTests: XCTestCase {
    func testCheckConfigAcceptsExampleAndRejectsBadWithLines() throws {
        let ok = try TestSupport.sensor(["check-config", "Deploy/sensor.example.yaml"])
        XCTAssertEqual(ok.status, 0, ok.stderr)
        let dir = try TestSupport.temporaryDirectory("cfg")
        defer { try? FileManager.default.removeItem(at: dir) }
        let bad = dir.appendingPathComponent("bad.yaml").path
        try "flows:\n  max: 12\noutputs:\n  - kafkaa://x\n".write(toFile: bad, atomically: true, encoding: .utf8)
        let r = try TestSupport.sensor(["check-config", bad])
        XCTAssertEqual(r.status, 78)
        XCTAssertTrue(r.stderr.contains("\(bad):2:"), r.stderr)
        XCTAssertTrue(r.stderr.contains("\(bad):4:"), r.stderr)
        // replay refuses to start on it, with the same messages.
        let replay = try TestSupport.sensor(["replay", "--config", bad, TestSupport.data("pcaps/benign/dns.pcap")])
        XCTAssertNotEqual(replay.status, 0)
        XCTAssertTrue(replay.stderr.contains("\(bad):2:"), replay.stderr)
        XCTAssertTrue(replay.stdout.isEmpty)
    }

    func testConfigAndFlagsApply() throws {
        let dir = try TestSupport.temporaryDirectory("cfg")
        defer { try? FileManager.default.removeItem(at: dir) }
        let cfg = dir.appendingPathComponent("c.yaml").path
        let out = dir.appendingPathComponent("events.json").path
        try "sensor:\n  name: from-config\nflows:\n  events: false\ndns:\n  events: false\noutputs:\n  - file:\(out)\n".write(toFile: cfg, atomically: true, encoding: .utf8)
        let r = try TestSupport.sensor(["replay", "--config", cfg, TestSupport.data("pcaps/benign/dns.pcap")])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.isEmpty, "output went to the file, not stdout")
        let attrs = try FileManager.default.attributesOfItem(atPath: out)
        XCTAssertEqual(((attrs[.posixPermissions] as? NSNumber)?.intValue ?? 0o777) & 0o007, 0, "event files are not world-readable")
        let lines = try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 1, "flow events off: only the stats event")
        XCTAssertTrue(lines[0].contains("\"name\":\"from-config\""))
        // A flag wins over the file.
        let r2 = try TestSupport.sensor(["replay", "--config", cfg, "--flow-events", "--no-dns-events", "--sensor-name", "flag", "--output", "stdout", TestSupport.data("pcaps/benign/dns.pcap")])
        XCTAssertEqual(r2.lines.count, 8)
        XCTAssertTrue(r2.lines[0].contains("\"name\":\"flag\""))
    }

    /// `c2.enabled: false` / `lateral_movement.enabled: false` take the whole family out: no alert from it and
    /// none of its facts on flow events, while the flows themselves are reported as before.
    func testAnalyserFamiliesSwitchOff() throws {
        let dir = try TestSupport.temporaryDirectory("cfg")
        defer { try? FileManager.default.removeItem(at: dir) }
        let cfg = dir.appendingPathComponent("off.yaml").path
        try "c2:\n  enabled: false\nlateral_movement:\n  enabled: false\n".write(toFile: cfg, atomically: true, encoding: .utf8)
        let c2 = TestSupport.data("pcaps/c2-nonstd-port/http-on-port-5432.pcap")
        let lateral = TestSupport.data("pcaps/lateral/20171220_smb_psexec_add_user.pcap")
        for path in [c2, lateral] {
            let on = try TestSupport.events(try TestSupport.sensor(["replay", path]))
            let off = try TestSupport.events(try TestSupport.sensor(["replay", "--config", cfg, path]))
            let alerts = { (e: [[String: Any]]) in e.filter { TestSupport.value($0, "event.dataset") as? String == "spanwatch.alert" } }
            let flows = { (e: [[String: Any]]) in Set(e.compactMap { TestSupport.value($0, "network.community_id") as? String }) }
            XCTAssertFalse(alerts(on).isEmpty, "\(path): alerts with the families on")
            XCTAssertTrue(alerts(off).isEmpty, "\(path): \(alerts(off))")
            XCTAssertEqual(flows(on), flows(off), path)
            for namespace in ["spanwatch.smb", "spanwatch.dce_rpc", "http", "tls"] {
                XCTAssertFalse(off.contains { TestSupport.value($0, namespace) != nil }, "\(path): \(namespace)")
            }
            XCTAssertTrue(on.contains { TestSupport.value($0, path == c2 ? "http" : "spanwatch.smb") != nil }, path)
        }
    }
}
