import Foundation
import TestSupport
import XCTest

/// SIGHUP on `sensor aggregate`: a broken rule set is rejected and the aggregator keeps running; an
/// accepted one reaches every partition's detectors, and the facts applied after it are judged by it.
extension AggregateTests {
    func testSighupReloadReachesEveryPartitionAndABadSetIsRejected() throws {
        let boot = try startBroker(["hostfacts:4"])
        let url = "kafka://\(boot)/hostfacts"
        let dir = try TestSupport.temporaryDirectory("agg-reload")
        defer { try? FileManager.default.removeItem(at: dir) }
        let rules = try TestSupport.rulesCopy(in: dir, editing: "dns-tunneling.yaml", replacing: "alert_score: 60", with: "alert_score: 60")
        let tunnel = rules.appendingPathComponent("dns-tunneling.yaml")
        let original = try String(contentsOf: tunnel, encoding: .utf8)
        let captures = try TestSupport.requiredCaptures([], files: [TestSupport.data("pcaps/dns-tunnel/dnscat2.pcap"),
                                                                    TestSupport.data("pcaps/lateral/LM_psexec_smb_dcerpc_epm_svcctl.pcapng")])
        // With the repository's rules, the captures raise a DNS tunnel and a lateral-movement alert.
        let single = try Self.alerts(try replay(captures))
        XCTAssertEqual(Set(single.identities.map { String($0.split(separator: " ")[1]) }), ["dns_tunneling", "lateral_movement"])

        let aggregator = try BackgroundProcess(TestSupport.sensorBinary, ["aggregate", "--host-facts", url, "--rules", rules.path,
                                                                         "--lateness", "2", "--log-level", "info"],
                                               currentDirectory: TestSupport.repositoryRoot.path)
        XCTAssertTrue(TestSupport.waitUntil(timeout: 30) { aggregator.standardError.contains("partitions assigned") }, aggregator.standardError)
        try original.replacingOccurrences(of: "alert_score: 60", with: "alert_score: [60").write(to: tunnel, atomically: true, encoding: .utf8)
        kill(aggregator.process.processIdentifier, SIGHUP)
        XCTAssertTrue(TestSupport.waitUntil(timeout: 10) { aggregator.standardError.contains("rules reload rejected") }, aggregator.standardError)
        XCTAssertTrue(aggregator.standardError.contains("dns-tunneling.yaml:"), "the reason names the file: \(aggregator.standardError)")
        XCTAssertTrue(aggregator.process.isRunning)
        // A tunnel must now score 95 to alert: dnscat2's channel (about 88) no longer does.
        try original.replacingOccurrences(of: "alert_score: 60", with: "alert_score: 95").write(to: tunnel, atomically: true, encoding: .utf8)
        kill(aggregator.process.processIdentifier, SIGHUP)
        XCTAssertTrue(TestSupport.waitUntil(timeout: 10) { aggregator.standardError.contains("rules applied to the partitions' detectors") },
                      aggregator.standardError)

        _ = try replay(captures + ["--host-facts", "\(url)?spool=\(try spoolDirectory())", "--sensor-name", "reload"])
        var lines: [String] = []
        // The producer's end record concludes each partition (after the 2 s gathering hold): its alerts are out.
        XCTAssertTrue(TestSupport.waitUntil(timeout: 30) {
            if let l = aggregator.readLine(timeout: 0.1) { lines.append(l) }
            return lines.contains { $0.contains("lateral_movement.tool_transfer_execution") }
        }, aggregator.standardError.suffix(2000).description)
        kill(aggregator.process.processIdentifier, SIGTERM)
        aggregator.process.waitUntilExit()
        lines += drain(aggregator, idle: 0.5)
        XCTAssertEqual(aggregator.process.terminationStatus, 0, aggregator.standardError)
        let merged = try Self.alerts(lines)
        XCTAssertEqual(Set(merged.identities.map { String($0.split(separator: " ")[1]) }), ["lateral_movement"],
                       "the reloaded threshold holds the tunnel back: \(merged.identities)")
        XCTAssertEqual(merged.hostStage["reloads"] as? Int, 4, "each of the 4 partitions took the accepted set once: \(merged.hostStage)")
    }
}
