import Foundation
import TestSupport
import XCTest

/// `sensor run --host-facts kafka://…` live: two capture workers behind PACKET_FANOUT publish their host
/// facts to the mock cluster (4 partitions), and `sensor aggregate` raises the cross-flow alerts a plain
/// replay of the same captures raises. Broker, sensor and aggregator all run inside the test's own
/// network namespace, so nothing leaves it.
final class LiveHostFactsTests: XCTestCase {
    func testLiveWorkersPublishAndTheAggregatorRaisesTheReplaysAlerts() throws {
        guard getuid() == 0 else { throw XCTSkip("needs root for network namespaces (CI runs as root)") }
        for tool in ["ip", "tcpreplay", "kcat"] where !TestSupport.hasTool(tool) {
            throw XCTSkip("\(tool) not installed (scripts/install-deps.sh test)")
        }
        let lab = try VethLab()
        defer { lab.close() }
        let broker = try BackgroundProcess("ip", ["netns", "exec", lab.namespace, TestSupport.builtExecutable("kafka-mock-broker"),
                                                  "--topic", "hostfacts:4"])
        defer { _ = broker.command("quit", timeout: 2); broker.stop() }
        let boot = try XCTUnwrap(broker.readLine(timeout: 20), "mock broker did not start: \(broker.standardError)")
        let spool = FileManager.default.temporaryDirectory.appendingPathComponent("live-hf-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: spool, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        defer { try? FileManager.default.removeItem(at: spool) }
        let url = "kafka://\(boot)/hostfacts"

        // Lateral movement (PsExec: ADMIN$ write and svcctl on two connections, likely on two workers),
        // DNS tunnelling and HTTP on an odd port: cross-flow alerts of three detectors.
        let captures = try TestSupport.requiredCaptures([], files: [TestSupport.data("pcaps/lateral/LM_psexec_smb_dcerpc_epm_svcctl.pcapng"),
                                                                    TestSupport.data("pcaps/dns-tunnel/dnscat2.pcap"),
                                                                    TestSupport.data("pcaps/c2-nonstd-port/http-on-port-5432.pcap")])
        let sensor = try lab.startSensor(["--workers", "2", "--allow-root", "--metrics", "off", "--sensor-name", "tap-live",
                                          "--host-facts", "\(url)?spool=\(spool.path)"])
        try sensor.waitUntilCapturing()
        try lab.replay(captures)
        Thread.sleep(forTimeInterval: 2)
        XCTAssertEqual(sensor.terminate(), 0, sensor.stderr)
        // Every packet captured (a lost SMB write would turn the PsExec alert into a plain remote service).
        var finalStats: [Int: [String: Any]] = [:]
        for s in LiveCaptureTests.stats(try sensor.events()) { finalStats[LiveCaptureTests.int(s, "spanwatch.stats.worker")] = s }
        XCTAssertEqual(finalStats.values.map { LiveCaptureTests.int($0, "spanwatch.stats.capture.received") }.reduce(0, +), 302)
        XCTAssertEqual(finalStats.values.map { LiveCaptureTests.int($0, "spanwatch.stats.capture.kernel_dropped") }.reduce(0, +), 0)
        // With --host-facts the sensor's own cross-flow detectors are off: its alerts come from the aggregator.
        let local = try AggregateTests.alerts(try String(contentsOf: sensor.stdoutURL, encoding: .utf8)
            .split(separator: "\n").map(String.init))
        XCTAssertEqual(local.identities, [], "the live sensor must leave the cross-flow alerts to the aggregator")

        let r = try TestSupport.run("ip", ["netns", "exec", lab.namespace, TestSupport.sensorBinary, "aggregate", "--host-facts", url,
                                           "--lateness", "2", "--exit-at-end", "--log-level", "error"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let merged = try AggregateTests.alerts(r.lines)
        let single = try AggregateTests.alerts(try TestSupport.sensor(["replay"] + captures + ["--log-level", "error"]).lines)
        XCTAssertEqual(Set(single.identities.map { $0.split(separator: " ")[1] }), ["lateral_movement", "dns_tunneling", "nonstandard_port_c2"])
        let a = Set(single.identities), b = Set(merged.identities)
        XCTAssertEqual(b, a, "only from aggregate: \(b.subtracting(a).sorted().prefix(3)); only from replay: \(a.subtracting(b).sorted().prefix(3))")
        // Both workers published (one producer per worker of the one sensor process), and every record merged in order.
        XCTAssertEqual(merged.stats["garbage"] as? Int, 0)
        XCTAssertEqual(merged.stats["late"] as? Int, 0)
        XCTAssertGreaterThan(merged.stats["facts"] as? Int ?? 0, 50)
        // Every host-fact record delivered, and the producer's settings taken whole (no librdkafka warning).
        XCTAssertTrue(sensor.stderr.contains("dropped=0 dropped_alerts=0 failed=0 output=\"host facts kafka://"), sensor.stderr)
        XCTAssertFalse(sensor.stderr.contains("librdkafka"), sensor.stderr)
    }
}
