import Foundation
import TestSupport
import XCTest

/// Evidence capture in `sensor run` with several workers: one store, one custody chain.
final class LiveEvidenceTests: XCTestCase {
    /// Two workers behind PACKET_FANOUT both keep evidence (the host-level stage's lateral-movement alert
    /// reaches every worker, each captures its share of the host pair): their entries go into one chain,
    /// which `sensor custody verify` accepts with every file. (With a store per worker on the same
    /// directory, both named the capture `…-1`: one worker could not create its file, the other's was
    /// removed under it, and heads kept per store would break the chain.)
    func testTwoWorkersKeepOneCustodyChain() throws {
        guard getuid() == 0 else { throw XCTSkip("needs root for network namespaces (CI runs as root)") }
        for tool in ["ip", "tcpreplay", "age-keygen"] where !TestSupport.hasTool(tool) {
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

        let lab = try VethLab()
        defer { lab.close() }
        let sensor = try lab.startSensor(["--workers", "2", "--user", "nobody", "--rules", "Rules",
                                          "--evidence-dir", evidence.path, "--evidence-recipient", recipient,
                                          "--authorization", "AUTH-LIVE-1"])
        try sensor.waitUntilCapturing()
        try lab.replay([TestSupport.data("pcaps/lateral/LM_psexec_smb_dcerpc_epm_svcctl.pcapng"),
                        TestSupport.data("pcaps/c2-nonstd-port/http-on-port-5432.pcap")])
        Thread.sleep(forTimeInterval: 2.5)
        XCTAssertEqual(sensor.terminate(), 0, sensor.stderr)

        let log = evidence.appendingPathComponent("custody.jsonl").path
        let text = try String(contentsOfFile: log, encoding: .utf8)
        let entries = text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        XCTAssertGreaterThanOrEqual(entries.count, 2, "evidence from both workers: \(sensor.stderr)")
        XCTAssertEqual(entries.compactMap { ($0["seq"] as? NSNumber)?.intValue }, Array(1...max(1, entries.count)))
        let stats = try sensor.events().filter { TestSupport.value($0, "event.dataset") as? String == "sensor.stats" }
        var opened: [Int: Int] = [:]
        for s in stats {
            if let w = TestSupport.value(s, "sensor.stats.worker") as? Int {
                opened[w] = TestSupport.value(s, "sensor.stats.evidence.captures_closed") as? Int
            }
        }
        XCTAssertEqual(opened.count, 2)
        XCTAssertTrue(opened.values.allSatisfy { $0 > 0 }, "both workers kept evidence: \(opened)")
        let verify = try TestSupport.sensor(["custody", "verify", log])
        XCTAssertEqual(verify.status, 0, verify.stderr)
    }
}
