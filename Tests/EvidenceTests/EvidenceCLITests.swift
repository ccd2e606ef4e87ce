import Events
import Foundation
import TestSupport
import XCTest
@testable import Evidence

/// The real `sensor` binary with evidence on: `replay` and `custody verify`.
final class EvidenceCLITests: XCTestCase {
    override func setUpWithError() throws { try EvidenceChecks.requireTools() }

    typealias Run = EvidenceReplay.Run

    func replay(_ source: String, extra: [String] = [], key: AgeKey? = nil, work: URL? = nil) throws -> Run {
        try EvidenceReplay.replay(source, extra: extra, key: key, work: work)
    }

    /// The issue's acceptance check, end to end through the CLI, for every capture in c2-nonstd-port/
    /// and beacon/: each evidence file decrypts with `age -d`, capinfos/tshark show its comments, its
    /// packets equal tcpdump's cut for its scope and window, and the custody hashes match. Evidence needs an
    /// alert: the captures that hold no reportable channel (`TestSupport.c2CapturesWithoutReportableChannel`,
    /// premises pinned with tshark in C2CaptureTests) must produce neither alert nor evidence, every other
    /// one must produce both (EvidenceManagerTests runs the same assertions with constructed alerts).
    func testReplayEvidenceAcceptance() throws {
        let captures = TestSupport.captures("c2-nonstd-port") + TestSupport.captures("beacon")
        XCTAssertFalse(captures.isEmpty)
        let triggers = try EvidenceRules.load(path: TestSupport.repositoryRoot.appendingPathComponent("Rules/evidence.yaml").path).triggers
        let ecs = try ECSReference.load()
        var withoutAlerts: [String] = []
        var checked = 0
        for source in captures {
            let run = try replay(source)
            defer { try? FileManager.default.removeItem(at: run.work) }
            XCTAssertEqual(run.result.status, 0, "\(source): \(run.result.stderr)")
            // Evidence and health events are ECS too (ECSConformanceTests covers flows, DNS, alerts and stats).
            for e in run.events { XCTAssertEqual(ecs.problems(e), [], source) }
            // The alerts a trigger in Rules/evidence.yaml selects (category and severity).
            let alerts = run.events.filter { e in
                guard TestSupport.value(e, "event.dataset") as? String == "spanwatch.alert",
                      let category = TestSupport.value(e, "rule.category") as? String,
                      let severity = (TestSupport.value(e, "event.severity") as? Int).flatMap(Severity.init(rawValue:)) else { return false }
                return triggers.contains { ($0.categories.isEmpty || $0.categories.contains(category)) && severity >= $0.minimumSeverity }
            }
            EvidenceChecks.assertNoPlaintextCapture(in: [run.evidenceDir, run.tmp])
            XCTAssertEqual(EvidenceChecks.mode(run.evidenceDir.path), 0o700)
            guard !alerts.isEmpty else {
                withoutAlerts.append((source as NSString).lastPathComponent)
                XCTAssertFalse(FileManager.default.fileExists(atPath: run.custodyLog) && ((try? EvidenceChecks.custodyEntries(run.custodyLog)) ?? []).contains {
                    $0["action"] as? String == "evidence_closed" }, "\(source): evidence without an alert")
                continue
            }
            let entries = try EvidenceChecks.custodyEntries(run.custodyLog).filter { $0["action"] as? String == "evidence_closed" }
            XCTAssertFalse(entries.isEmpty, "\(source): alerts but no evidence")
            let alertIDs = Set(alerts.compactMap { TestSupport.value($0, "event.id") as? String })
            let covered = Set(entries.flatMap { ($0["alerts"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String } })
            XCTAssertEqual(alertIDs.subtracting(covered), [], "\(source): every triggering alert is in an evidence file")
            for entry in entries {
                let ids = (entry["alerts"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }
                XCTAssertTrue(ids.allSatisfy(alertIDs.contains), "custody names emitted, triggering alerts")
                try EvidenceChecks.verify(entry: entry, evidenceDir: run.evidenceDir, source: source, key: run.key, work: run.work,
                                          expectComments: ["sensor: cli-sensor", "authorization: AUTH-CLI-1", "purpose: acceptance test", "operator: ci", "alert \(ids[0])"])
                let ev = run.events.first { TestSupport.value($0, "file.name") as? String == entry["file"] as? String }
                XCTAssertEqual(ev.flatMap { TestSupport.value($0, "file.hash.sha256") as? String }, entry["sha256"] as? String)
            }
            let verify = try TestSupport.sensor(["custody", "verify", run.custodyLog])
            XCTAssertEqual(verify.status, 0, verify.stderr)
            checked += 1
        }
        XCTAssertEqual(Set(withoutAlerts), TestSupport.c2CapturesWithoutReportableChannel.intersection(
            captures.map { ($0 as NSString).lastPathComponent }))
        XCTAssertEqual(checked, captures.count - withoutAlerts.count)
        XCTAssertGreaterThanOrEqual(checked, 7, "evidence checked end to end on most captures")
    }

    /// Evidence stays off without an authorisation reference; with one it needs a recipient; a
    /// world-readable evidence directory stops the sensor at start.
    func testAuthorizationAndDirectoryChecksAtStart() throws {
        let work = try TestSupport.temporaryDirectory("evidence-cli")
        defer { try? FileManager.default.removeItem(at: work) }
        let key = try AgeKey.generate(in: work)
        let source = TestSupport.captures("c2-nonstd-port")[0]
        let dir = work.appendingPathComponent("ev")
        let off = try TestSupport.sensor(["replay", "--output", "file:/dev/null", "--evidence-dir", dir.path, "--evidence-recipient", key.recipient, source])
        XCTAssertEqual(off.status, 0, off.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.path), "no authorisation: nothing is created")
        let noRecipient = try TestSupport.sensor(["replay", "--output", "file:/dev/null", "--evidence-dir", dir.path, "--authorization", "A-1", source])
        XCTAssertNotEqual(noRecipient.status, 0)
        XCTAssertTrue(noRecipient.stderr.contains("recipient"), noRecipient.stderr)
        let bad = try TestSupport.sensor(["replay", "--evidence-recipient", "age1notakey", "--authorization", "A-1", "--evidence-dir", dir.path, source])
        XCTAssertNotEqual(bad.status, 0)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o777])
        try FileManager.default.setAttributes([.posixPermissions: 0o777], ofItemAtPath: dir.path)
        let open = try TestSupport.sensor(["replay", "--output", "file:/dev/null", "--rules", "Rules", "--evidence-dir", dir.path,
                                           "--evidence-recipient", key.recipient, "--authorization", "A-1", source])
        XCTAssertNotEqual(open.status, 0)
        XCTAssertTrue(open.stderr.contains("accessible to others"), open.stderr)
    }

    /// Tampering: flipping one byte of an evidence file, or editing one custody line, makes
    /// `sensor custody verify` fail and name that entry.
    func testCustodyVerifyNamesTheBrokenEntry() throws {
        let work = try TestSupport.temporaryDirectory("custody")
        defer { try? FileManager.default.removeItem(at: work) }
        // Three captures' worth of entries, made by the manager from real traffic.
        let captures = Array(TestSupport.captures("c2-nonstd-port").prefix(3))
        let h = try Harness(triggers: [EvidenceManagerTests.pairTrigger]) { $0.maxConcurrentCaptures = 4 }
        for source in captures {
            let pair = try EvidenceChecks.busiestPair(source)
            try h.replay(source, alerts: [Harness.alert(pair)], finish: false)
            while h.manager.openCaptures > 0 { h.manager.finish(h.pipeline.clock) }
        }
        let log = h.custodyLog
        let entries = try EvidenceChecks.custodyEntries(log)
        XCTAssertEqual(entries.count, 3)
        let ok = try TestSupport.sensor(["custody", "verify", log])
        XCTAssertEqual(ok.status, 0, ok.stderr)
        XCTAssertTrue(ok.stdoutText.contains("3 evidence files"), ok.stdoutText)

        // One byte of the second evidence file flipped.
        let file = try XCTUnwrap(entries[1]["file"] as? String)
        let path = h.evidenceDir.appendingPathComponent(file).path
        var data = try Data(contentsOf: URL(fileURLWithPath: path))
        let original = data
        data[data.count / 2] ^= 0x01
        try data.write(to: URL(fileURLWithPath: path))
        let flipped = try TestSupport.sensor(["custody", "verify", log, "--evidence-dir", h.evidenceDir.path])
        XCTAssertEqual(flipped.status, 2)
        XCTAssertTrue(flipped.stderr.contains("line 2 (seq 2, file \(file))"), flipped.stderr)
        XCTAssertTrue(flipped.stderr.contains("SHA-256"), flipped.stderr)
        try original.write(to: URL(fileURLWithPath: path))
        XCTAssertEqual(try TestSupport.sensor(["custody", "verify", log]).status, 0)

        // One custody line edited (its packet count), and the same edit with the line re-hashed.
        let text = try String(contentsOfFile: log, encoding: .utf8)
        var lines = text.split(separator: "\n").map(String.init)
        let packets = try XCTUnwrap(entries[0]["packets"] as? Int)
        lines[0] = lines[0].replacingOccurrences(of: "\"packets\":\(packets),", with: "\"packets\":\(packets + 1),")
        try (lines.joined(separator: "\n") + "\n").write(toFile: log, atomically: false, encoding: .utf8)
        let edited = try TestSupport.sensor(["custody", "verify", log])
        XCTAssertEqual(edited.status, 2)
        XCTAssertTrue(edited.stderr.contains("line 1 (seq 1, file \(entries[0]["file"]!))"), edited.stderr)
        XCTAssertTrue(edited.stderr.contains("edited"), edited.stderr)

        let body = String(lines[0][..<lines[0].range(of: ",\"entry_sha256\":\"")!.lowerBound]) + "}"
        lines[0] = String(body.dropLast()) + ",\"entry_sha256\":\"\(Hex.string(Crypto.SHA256.hash(data: Array(body.utf8))))\"}"
        try (lines.joined(separator: "\n") + "\n").write(toFile: log, atomically: false, encoding: .utf8)
        let rehashed = try TestSupport.sensor(["custody", "verify", log])
        XCTAssertEqual(rehashed.status, 2)
        XCTAssertTrue(rehashed.stderr.contains("line 2 (seq 2"), rehashed.stderr)
        XCTAssertTrue(rehashed.stderr.contains("prev_sha256"), rehashed.stderr)

        // A removed line breaks the link too.
        try (text.split(separator: "\n").enumerated().filter { $0.offset != 1 }.map { String($0.element) }.joined(separator: "\n") + "\n")
            .write(toFile: log, atomically: false, encoding: .utf8)
        let removed = try TestSupport.sensor(["custody", "verify", log])
        XCTAssertEqual(removed.status, 2)
        XCTAssertTrue(removed.stderr.contains("line 2 (seq 3"), removed.stderr)
    }
}

import Crypto
