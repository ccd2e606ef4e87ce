import Capture
import Evidence
import Events
import Foundation
import TestSupport
import XCTest

/// Evidence capture in `sensor run` with several workers: one capture per alert for the whole process.
final class LiveEvidenceTests: XCTestCase {
    /// Two workers behind PACKET_FANOUT, evidence on, lateral movement (an alert of the host-level stage,
    /// whose host pair's flows the fan-out spreads over both workers) and a C2 channel replayed onto a
    /// veth pair. Each alert a trigger selects has exactly one outcome: one evidence file, or one refusal.
    /// Each file decrypts with `age -d` and holds exactly the packets `tcpdump -r` selects from the
    /// replayed captures with its scope's BPF (the whole replay is within lookback and duration), in the
    /// order they were sent, merged from both workers; `sensor custody verify` accepts the log and every file.
    func testOneEvidenceFilePerAlertFromEveryWorker() throws {
        guard getuid() == 0 else { throw XCTSkip("needs root for network namespaces (CI runs as root)") }
        for tool in ["ip", "tcpreplay", "age", "age-keygen", "tcpdump"] where !TestSupport.hasTool(tool) {
            throw XCTSkip("\(tool) not installed (scripts/install-deps.sh test)")
        }
        let work = try TestSupport.temporaryDirectory("live-evidence")
        defer { try? FileManager.default.removeItem(at: work) }
        let identity = work.appendingPathComponent("identity.txt").path
        XCTAssertEqual(try TestSupport.run("age-keygen", ["-o", identity]).status, 0)
        let recipient = try TestSupport.run("age-keygen", ["-y", identity]).stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
        // The sensor runs as nobody: its evidence directory is nobody's, under a directory nobody can cross.
        let evidence = URL(fileURLWithPath: "/tmp/sensor-live-evidence-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: evidence, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        defer { try? FileManager.default.removeItem(at: evidence) }
        let nobody = try XCTUnwrap(Int(try TestSupport.run("id", ["-u", "nobody"]).stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)))
        let nogroup = try XCTUnwrap(Int(try TestSupport.run("id", ["-g", "nobody"]).stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)))
        XCTAssertEqual(chown(evidence.path, uid_t(nobody), gid_t(nogroup)), 0)

        let sources = [TestSupport.data("pcaps/lateral/LM_psexec_smb_dcerpc_epm_svcctl.pcapng"),
                       TestSupport.data("pcaps/c2-nonstd-port/http-on-port-5432.pcap")]
        let lab = try VethLab()
        defer { lab.close() }
        let sensor = try lab.startSensor(["--workers", "2", "--user", "nobody", "--rules", "Rules",
                                          "--evidence-dir", evidence.path, "--evidence-recipient", recipient,
                                          "--authorization", "AUTH-LIVE-1"])
        try sensor.waitUntilCapturing()
        try lab.replay(sources)
        Thread.sleep(forTimeInterval: 2.5)
        XCTAssertEqual(sensor.terminate(), 0, sensor.stderr)

        let log = evidence.appendingPathComponent("custody.jsonl").path
        let verify = try TestSupport.sensor(["custody", "verify", log])
        XCTAssertEqual(verify.status, 0, verify.stderr)
        let text = try String(contentsOfFile: log, encoding: .utf8)
        let closed = text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            .filter { $0["action"] as? String == CustodyAction.closed }
        XCTAssertFalse(closed.isEmpty, sensor.stderr)

        // Which alerts a trigger selects, from the rules the sensor ran with.
        let triggers = try EvidenceRules.load(path: TestSupport.repositoryRoot.appendingPathComponent("Rules/evidence.yaml").path).triggers
        let events = try sensor.events()
        let alerts = events.filter { TestSupport.value($0, "event.kind") as? String == "alert" }
        let selected = Set(alerts.filter { a in
            guard let category = TestSupport.value(a, "rule.category") as? String,
                  let severity = (TestSupport.value(a, "event.severity") as? Int).flatMap(Severity.init(rawValue:)) else { return false }
            return triggers.contains { $0.minimumSeverity <= severity && ($0.categories.isEmpty || $0.categories.contains(category)) }
        }.compactMap { TestSupport.value($0, "event.id") as? String })
        XCTAssertTrue(alerts.contains { TestSupport.value($0, "rule.category") as? String == "lateral_movement" }, "the lateral-movement alert")
        XCTAssertFalse(selected.isEmpty)

        // One outcome event per selected alert (an alert that extended a capture is named in its event).
        let outcomes = events.filter { TestSupport.value($0, "event.dataset") as? String == "spanwatch.evidence" }
        var outcomesPerAlert: [String: Int] = [:]
        for o in outcomes {
            for id in TestSupport.value(o, "spanwatch.evidence.alert_ids") as? [String] ?? [] { outcomesPerAlert[id, default: 0] += 1 }
        }
        for id in selected { XCTAssertEqual(outcomesPerAlert[id], 1, "outcome events for alert \(id)") }
        XCTAssertEqual(Set(outcomesPerAlert.keys), selected, "no outcome for an alert no trigger selects")
        // One file per capture: every selected alert is in at most one custody entry.
        var filesPerAlert: [String: Int] = [:]
        for e in closed {
            for a in e["alerts"] as? [[String: Any]] ?? [] { filesPerAlert[a["id"] as? String ?? "", default: 0] += 1 }
        }
        XCTAssertTrue(filesPerAlert.values.allSatisfy { $0 == 1 }, "one evidence file per alert: \(filesPerAlert)")
        XCTAssertEqual(outcomes.filter { TestSupport.value($0, "event.outcome") as? String == "success" }.count, closed.count)

        // Every file: exactly what tcpdump selects from the replayed captures with its scope, in wire order.
        for e in closed {
            let name = try XCTUnwrap(e["file"] as? String)
            let scope = try XCTUnwrap((e["scope"] as? [String: Any])?["bpf"] as? String)
            let plain = work.appendingPathComponent(name + ".pcapng").path
            let dec = try TestSupport.run("age", ["-d", "-i", identity, "-o", plain, evidence.appendingPathComponent(name).path])
            XCTAssertEqual(dec.status, 0, dec.stderr)
            var got: [(Int64, [UInt8])] = []
            let r = try PcapFileReader(path: plain)
            while let p = try r.next() { got.append((p.timestamp.nanoseconds, Array(p.bytes))) }
            var expected: [[UInt8]] = []
            for (i, s) in sources.enumerated() {
                let cut = work.appendingPathComponent("ref-\(name)-\(i).pcap").path
                let td = try TestSupport.run("tcpdump", ["-n", "-r", s, "-w", cut, scope])
                XCTAssertEqual(td.status, 0, td.stderr)
                let rr = try PcapFileReader(path: cut)
                while let p = try rr.next() { expected.append(Array(p.bytes)) }
            }
            XCTAssertEqual(got.count, expected.count, "\(name) (\(scope)): packets vs tcpdump")
            XCTAssertEqual(got.map(\.0), got.map(\.0).sorted(), "\(name): time order")
            XCTAssertEqual(got.map(\.1).sorted { $0.lexicographicallyPrecedes($1) }, expected.sorted { $0.lexicographicallyPrecedes($1) },
                           "\(name): the same packets as tcpdump '\(scope)'")
            XCTAssertTrue(got.map(\.1) == expected, "\(name): in the order they were sent")
        }
        print("live evidence: \(selected.count) alerts selected, \(closed.count) files (workers \(closed.map { $0["workers"] as? Int ?? 0 }), packets \(closed.map { $0["packets"] as? Int ?? 0 })), \(outcomes.count) outcome events")
        // The lateral pair's file was written by both workers and merged.
        XCTAssertTrue(closed.contains { ($0["workers"] as? Int) == 2 }, "a file merged from both workers: \(closed.map { $0["workers"] ?? "-" })")
        var written: [Int: Int] = [:]
        for s in events where TestSupport.value(s, "event.dataset") as? String == "spanwatch.stats" {
            if let w = TestSupport.value(s, "spanwatch.stats.worker") as? Int {
                written[w] = TestSupport.value(s, "spanwatch.stats.evidence.packets_written") as? Int
            }
        }
        XCTAssertEqual(written.count, 2)
        XCTAssertTrue(written.values.allSatisfy { $0 > 0 }, "both workers wrote evidence: \(written)")
    }
}
