import Crypto
import Events
import Foundation
import Logging
import TestSupport
import XCTest
@testable import Evidence

/// Evidence and custody under faults: a full disk, a torn last line, a second run into the same
/// directory, a log naming paths outside the evidence directory, a log that does not verify.
final class CustodyFaultTests: XCTestCase {
    override func setUpWithError() throws { try EvidenceChecks.requireTools() }

    /// A small capture with an evidence-triggering alert under `Rules/` (one evidence file per run).
    var source: String {
        get throws { try XCTUnwrap(TestSupport.captures("c2-nonstd-port").first { $0.hasSuffix("http-on-port-5432.pcap") }) }
    }

    static func closed(_ log: String) throws -> [[String: Any]] {
        try EvidenceChecks.custodyEntries(log).filter { $0["action"] as? String == CustodyAction.closed }
    }

    static func verify(_ log: String, _ extra: [String] = []) throws -> TestSupport.ProcessResult {
        try TestSupport.sensor(["custody", "verify", log] + extra)
    }

    // MARK: Disk full

    /// The disk fills between an evidence file and its custody entry (a tmpfs of 2 MiB, filled up):
    /// the entry's write is cut short. The log is cut back to its last complete entry, the file is
    /// removed (no evidence file without an entry), the slot is given back once, the head does not move;
    /// once there is room the same store keeps capturing; the log verifies and a new start works.
    func testDiskFullAtTheCustodyEntryLeavesNoTornLineAndCaptureGoesOn() throws {
        guard getuid() == 0 else { throw XCTSkip("mounting a tmpfs needs root (CI runs as root)") }
        let work = try TestSupport.temporaryDirectory("custody-full")
        defer { try? FileManager.default.removeItem(at: work) }
        let key = try AgeKey.generate(in: work)
        let mnt = work.appendingPathComponent("evidence")
        try FileManager.default.createDirectory(at: mnt, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        let mount = try TestSupport.run("mount", ["-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", mnt.path])
        guard mount.status == 0 else { throw XCTSkip("cannot mount a tmpfs here: \(mount.stderr)") }
        defer { _ = try? TestSupport.run("umount", [mnt.path]) }

        var c = EvidenceConfiguration()
        c.directory = mnt.path
        c.recipients = [key.recipient]
        c.authorization = "AUTH-FULL-1"
        // Released before the real binary opens the same log (one writer per log).
        var store: EvidenceStore! = try EvidenceStore(configuration: c, sensorName: "s", hostname: "h", wallClock: { 1_800_000_000 })
        let log = mnt.appendingPathComponent("custody.jsonl").path

        /// A capture written up to its close: reserved, created, `bytes` of ciphertext, fsync'd.
        func written(_ stem: String, bytes: Int) throws -> (EvidenceStore.Reservation, [UInt8]) {
            guard case .success(let r) = store.reserve(bytes: 1 << 20, stem: stem) else { throw EvidenceError("refused") }
            let sink = try store.createFile(r)
            let data = (0..<bytes).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
            try data.withUnsafeBytes { try sink.writeCiphertext($0) }
            try sink.close()
            return (r, data)
        }
        /// Its custody entry, padded so that entries are ~3000 bytes (the second one cannot fit in the log's last page).
        func commit(_ r: EvidenceStore.Reservation, _ data: [UInt8]) throws -> EvidenceStore.ClosedRecord {
            let sha = Hex.string(Crypto.SHA256.hash(data: data))
            return try store.commit(r, fileBytes: data.count, sha256: sha) { w in
                w.field("file", r.fileName)
                w.field("sha256", sha)
                w.field("file_bytes", data.count)
                w.field("note", String(repeating: "x", count: 2500))
            }
        }

        let (r1, d1) = try written("20260101T000000Z-first", bytes: 8000)
        XCTAssertEqual(try commit(r1, d1).sequence, 1)
        let (r2, d2) = try written("20260101T000001Z-second", bytes: 8000)
        // Fill what is left of the tmpfs.
        let filler = mnt.appendingPathComponent("filler").path
        let fd = open(filler, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        XCTAssertGreaterThanOrEqual(fd, 0)
        let page = [UInt8](repeating: 0x5a, count: 4096)
        while page.withUnsafeBytes({ write(fd, $0.baseAddress!, $0.count) }) > 0 {}
        XCTAssertEqual(errno, ENOSPC)
        close(fd)

        let before = try Data(contentsOf: URL(fileURLWithPath: log))
        // The next entry (as long as the first) fits only partly in the log's last page: a short write.
        let room = 4096 - before.count % 4096
        XCTAssertTrue(room > 0 && room < before.count, "room \(room) for a \(before.count)-byte entry")
        XCTAssertThrowsError(try commit(r2, d2)) { XCTAssertTrue("\($0)".contains("custody log"), "\($0)") }
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: log)), before, "the cut-short entry was truncated away")
        XCTAssertFalse(FileManager.default.fileExists(atPath: r2.path), "no evidence file without a complete entry")
        XCTAssertFalse(FileManager.default.fileExists(atPath: r2.partialPath), "the partial (ciphertext) file was removed")
        XCTAssertEqual(store.diskUsage, d1.count, "only the committed file counts; the failed slot was given back once")
        XCTAssertEqual(store.openSlots, 0)
        XCTAssertEqual(store.counters.failed, 1)
        XCTAssertEqual(store.custodyHead?.sequence, 1, "the head did not move")

        // Room again: the same store captures on, and the chain continues where it was.
        try FileManager.default.removeItem(atPath: filler)
        let (r3, d3) = try written("20260101T000002Z-third", bytes: 8000)
        XCTAssertEqual(try commit(r3, d3).sequence, 2)
        let ok = try Self.verify(log)
        XCTAssertEqual(ok.status, 0, ok.stderr)
        XCTAssertTrue(ok.stdoutText.contains("2 entries"), ok.stdoutText)

        // A new start (the real binary) works on this log and adds its own evidence.
        store = nil
        let run = try EvidenceReplay.replay(try source, key: key, work: work, evidenceDir: mnt)
        XCTAssertEqual(run.result.status, 0, run.result.stderr)
        XCTAssertGreaterThan(try Self.closed(log).count, 2)
        XCTAssertEqual(try Self.verify(log).status, 0)
    }

    /// The same through the real binary: `sensor replay` into a tmpfs just large enough for the evidence
    /// file, so the disk is full before the capture is kept (its part and the merged file do not both
    /// fit). The run goes on (flows and alerts
    /// reported, exit 0), the failure is counted, no evidence file is left without an entry and no torn
    /// line; with room again, the next start keeps evidence and the log verifies.
    func testDiskFullDuringReplayLeavesNoEvidenceWithoutAnEntry() throws {
        guard getuid() == 0 else { throw XCTSkip("mounting a tmpfs needs root (CI runs as root)") }
        let sized = try EvidenceReplay.replay(try source)
        defer { try? FileManager.default.removeItem(at: sized.work) }
        XCTAssertEqual(sized.result.status, 0, sized.result.stderr)
        let entries = try Self.closed(sized.custodyLog)
        XCTAssertEqual(entries.count, 1)
        let fileBytes = try XCTUnwrap(entries.first?["file_bytes"] as? Int)

        let mnt = sized.work.appendingPathComponent("full")
        try FileManager.default.createDirectory(at: mnt, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        let pages = (fileBytes + 4095) / 4096
        let mount = try TestSupport.run("mount", ["-t", "tmpfs", "-o", "size=\(pages * 4096),mode=0700", "tmpfs", mnt.path])
        guard mount.status == 0 else { throw XCTSkip("cannot mount a tmpfs here: \(mount.stderr)") }
        defer { _ = try? TestSupport.run("umount", [mnt.path]) }

        let full = try EvidenceReplay.replay(try source, key: sized.key, work: sized.work, evidenceDir: mnt)
        XCTAssertEqual(full.result.status, 0, full.result.stderr)
        XCTAssertTrue(full.result.stderr.contains("no custody entry") && full.result.stderr.contains("No space left"), full.result.stderr)
        XCTAssertFalse(full.dataset("spanwatch.flow").isEmpty, "capture went on")
        XCTAssertFalse(full.dataset("spanwatch.alert").isEmpty)
        let stats = try XCTUnwrap(full.dataset("spanwatch.stats").last)
        XCTAssertEqual(TestSupport.value(stats, "spanwatch.stats.evidence.failures") as? Int, 1)
        XCTAssertEqual(TestSupport.value(stats, "spanwatch.stats.evidence.captures_closed") as? Int, 0)
        let names = try FileManager.default.contentsOfDirectory(atPath: mnt.path)
        XCTAssertEqual(names, ["custody.jsonl"], "no evidence file without its entry, no partial file")
        let log = mnt.appendingPathComponent("custody.jsonl").path
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: log)).count, 0, "no torn line")
        XCTAssertEqual(try Self.verify(log).status, 0)

        // Room again: the next start keeps evidence, and the log verifies with its file.
        XCTAssertEqual(try TestSupport.run("mount", ["-o", "remount,size=2m", mnt.path]).status, 0)
        let after = try EvidenceReplay.replay(try source, key: sized.key, work: sized.work, evidenceDir: mnt)
        XCTAssertEqual(after.result.status, 0, after.result.stderr)
        XCTAssertEqual(try Self.closed(log).count, 1)
        let ok = try Self.verify(log)
        XCTAssertEqual(ok.status, 0, ok.stderr)
        XCTAssertTrue(ok.stdoutText.contains("1 evidence files match"), ok.stdoutText)
    }

    // MARK: Torn last line

    /// Half a line appended by hand (what a crash mid-write leaves): the next start cuts it off, logs the
    /// repair in the chain (bytes removed and their SHA-256) and in a `spanwatch.health` event, and captures on.
    func testTornLastLineIsRepairedAtStartAndTheRepairIsLogged() throws {
        let first = try EvidenceReplay.replay(try source)
        defer { try? FileManager.default.removeItem(at: first.work) }
        XCTAssertEqual(first.result.status, 0, first.result.stderr)
        let entries = try EvidenceChecks.custodyEntries(first.custodyLog)
        XCTAssertFalse(entries.isEmpty)
        let text = try String(contentsOfFile: first.custodyLog, encoding: .utf8)
        let torn = Array(String(text.split(separator: "\n").last!).utf8.prefix(100))
        let h = try XCTUnwrap(FileHandle(forWritingAtPath: first.custodyLog))
        h.seekToEndOfFile()
        h.write(Data(torn))
        try h.close()
        let broken = try Self.verify(first.custodyLog)
        XCTAssertEqual(broken.status, 2, "verify reports the torn line")
        XCTAssertTrue(broken.stderr.contains("incomplete"), broken.stderr)

        let second = try EvidenceReplay.replay(try source, key: first.key, work: first.work)
        XCTAssertEqual(second.result.status, 0, second.result.stderr)
        XCTAssertTrue(second.result.stderr.contains("torn last line"), second.result.stderr)
        let after = try EvidenceChecks.custodyEntries(second.custodyLog)
        let repair = after[entries.count]
        XCTAssertEqual(repair["action"] as? String, "log_repaired")
        XCTAssertEqual(repair["seq"] as? Int, entries.count + 1)
        XCTAssertEqual(repair["removed_bytes"] as? Int, torn.count)
        XCTAssertEqual(repair["removed_sha256"] as? String, Hex.string(Crypto.SHA256.hash(data: torn)))
        XCTAssertEqual((repair["removed_base64"] as? String).flatMap { Data(base64Encoded: $0) }, Data(torn), "the torn bytes are kept in the chain")
        XCTAssertGreaterThan(after.count, entries.count + 1, "the run after the repair kept its evidence")
        let health = second.dataset("spanwatch.health")
        XCTAssertEqual(health.compactMap { TestSupport.value($0, "spanwatch.health.check") as? String }, ["custody_log_repaired"])
        XCTAssertEqual(health.first.flatMap { TestSupport.value($0, "spanwatch.health.removed_bytes") as? Int }, torn.count)
        let ok = try Self.verify(second.custodyLog)
        XCTAssertEqual(ok.status, 0, ok.stderr)
        let schema = try EventSchema.load()
        for e in second.events { XCTAssertEqual(schema.problems(e), []) }
    }

    /// The repair is for the last line only: a complete last line that does not verify is cut off too, but
    /// a broken line with complete lines after it is tampering and the log is refused.
    func testOnlyTheLastLineIsRepaired() throws {
        let work = try TestSupport.temporaryDirectory("custody-repair")
        defer { try? FileManager.default.removeItem(at: work) }
        let log = work.appendingPathComponent("custody.jsonl").path
        let good = CustodyChain.lines([#""action":"note","n":1"#, #""action":"note","n":2"#])
        let bad = #"{"seq":3,"prev_sha256":"x","entry_sha256":"y"}"# + "\n"
        try (good + bad).write(toFile: log, atomically: false, encoding: .utf8)
        chmod(log, 0o600)
        var repaired: CustodyLog? = try CustodyLog(path: log)
        XCTAssertEqual(repaired?.repair?.removedBytes, bad.utf8.count)
        XCTAssertEqual(repaired?.lastSequence, 2)
        repaired = nil
        XCTAssertEqual(try String(contentsOfFile: log, encoding: .utf8), good)

        try (good + bad + CustodyChain.lines([#""action":"note","n":9"#])).write(toFile: log, atomically: false, encoding: .utf8)
        XCTAssertThrowsError(try CustodyLog(path: log)) { XCTAssertTrue("\($0)".contains("refusing"), "\($0)") }
        let lines = good.split(separator: "\n")
        try (String(lines[0].dropLast(3)) + "\n" + lines[1] + "\n").write(toFile: log, atomically: false, encoding: .utf8)
        XCTAssertThrowsError(try CustodyLog(path: log), "an edited first line is not a torn last line")
    }

    // MARK: Same directory, two runs

    /// Two runs of the same input into the same directory make the same alert (time and id) twice: the
    /// second run's files get new names, nothing of the first is overwritten, the sequence continues.
    func testSecondRunIntoTheSameDirectoryOverwritesNothing() throws {
        let first = try EvidenceReplay.replay(try source)
        defer { try? FileManager.default.removeItem(at: first.work) }
        XCTAssertEqual(first.result.status, 0, first.result.stderr)
        let run1 = try Self.closed(first.custodyLog)
        XCTAssertFalse(run1.isEmpty)
        let second = try EvidenceReplay.replay(try source, key: first.key, work: first.work)
        XCTAssertEqual(second.result.status, 0, second.result.stderr)
        let all = try EvidenceChecks.custodyEntries(second.custodyLog)
        XCTAssertEqual(all.compactMap { $0["seq"] as? Int }, Array(1...all.count))
        let closed = try Self.closed(second.custodyLog)
        XCTAssertEqual(closed.count, 2 * run1.count)
        let names = closed.compactMap { $0["file"] as? String }
        XCTAssertEqual(Set(names).count, names.count, "no name used twice: \(names)")
        for e in run1 {
            let path = first.evidenceDir.appendingPathComponent(e["file"] as! String).path
            XCTAssertEqual(CustodyVerifier.sha256(ofFile: path), e["sha256"] as? String, "first run's file intact")
        }
        let maxFirst = run1.compactMap { EvidenceFileName.sequence(of: $0["file"] as! String) }.max()!
        let secondNumbers = closed.dropFirst(run1.count).compactMap { EvidenceFileName.sequence(of: $0["file"] as! String) }
        XCTAssertTrue(secondNumbers.allSatisfy { $0 > maxFirst }, "numbers continue from the log: \(secondNumbers) after \(maxFirst)")
        let ok = try Self.verify(second.custodyLog)
        XCTAssertEqual(ok.status, 0, ok.stderr)
    }

    // MARK: Names from the log

    /// A correctly re-chained log whose entries name `../victim.txt` and an absolute path, both past their
    /// retention, with the victims' real SHA-256: verify refuses the names instead of hashing outside the
    /// directory, and a start (retention runs at once) deletes nothing, counts both and captures on.
    func testLogNamesOutsideTheDirectoryAreNeverReadOrDeleted() throws {
        let work = try TestSupport.temporaryDirectory("custody-names")
        defer { try? FileManager.default.removeItem(at: work) }
        let dir = try work.appendingPathComponent("evidence").creating()
        chmod(dir.path, 0o700)
        let victim = work.appendingPathComponent("victim.txt")
        let other = work.appendingPathComponent("victim2.txt")
        try "keep me\n".write(to: victim, atomically: false, encoding: .utf8)
        try "keep me too\n".write(to: other, atomically: false, encoding: .utf8)
        func entry(_ file: String, _ path: String) -> String {
            #""time":"2020-01-01T00:00:00Z","action":"evidence_closed","file":"\#(file)","sha256":"\#(CustodyVerifier.sha256(ofFile: path)!)","file_bytes":8,"retention_until":"2020-01-02T00:00:00Z","retention_until_epoch":1577923200"#
        }
        let log = dir.appendingPathComponent("custody.jsonl").path
        try CustodyChain.lines([entry("../victim.txt", victim.path), entry(other.path, other.path)])
            .write(toFile: log, atomically: false, encoding: .utf8)
        chmod(log, 0o600)

        let verify = try Self.verify(log)
        XCTAssertEqual(verify.status, 2)
        XCTAssertTrue(verify.stderr.contains("line 1 (seq 1, file ../victim.txt): not a bare file name"), verify.stderr)

        let run = try EvidenceReplay.replay(try source, work: work, evidenceDir: dir)
        XCTAssertEqual(run.result.status, 0, run.result.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: victim.path), "retention did not delete outside the directory")
        XCTAssertTrue(FileManager.default.fileExists(atPath: other.path))
        XCTAssertTrue(run.result.stderr.contains("names a path, not a file"), run.result.stderr)
        let stats = try XCTUnwrap(run.dataset("spanwatch.stats").last)
        XCTAssertEqual(TestSupport.value(stats, "spanwatch.stats.evidence.unsafe_names") as? Int, 2)
        XCTAssertFalse(try EvidenceChecks.custodyEntries(log).contains { $0["action"] as? String == CustodyAction.deleted })
        XCTAssertGreaterThan(try Self.closed(log).count, 2, "evidence capture went on")
    }

    // MARK: A log that does not verify

    /// An entry edited in the middle of the log is tampering, not a crash: the log is not touched, but the
    /// sensor runs with evidence capture off (logged, a `spanwatch.health` event, counted in spanwatch.stats,
    /// each triggering alert refused with `custody_unavailable`) instead of exiting; verify still fails.
    func testBrokenChainTurnsEvidenceOffNotTheSensor() throws {
        let first = try EvidenceReplay.replay(try source)
        defer { try? FileManager.default.removeItem(at: first.work) }
        XCTAssertEqual(first.result.status, 0, first.result.stderr)
        // A second entry after the first run's, so the edited one is not the last line.
        let second = try EvidenceReplay.replay(try source, key: first.key, work: first.work)
        XCTAssertEqual(second.result.status, 0, second.result.stderr)
        var text = try String(contentsOfFile: first.custodyLog, encoding: .utf8)
        text = text.replacingOccurrences(of: "\"operator\":\"ci\"", with: "\"operator\":\"cj\"")
        try text.write(toFile: first.custodyLog, atomically: false, encoding: .utf8)
        let tampered = try Data(contentsOf: URL(fileURLWithPath: first.custodyLog))

        let run = try EvidenceReplay.replay(try source, key: first.key, work: first.work)
        XCTAssertEqual(run.result.status, 0, "capture goes on: \(run.result.stderr)")
        XCTAssertTrue(run.result.stderr.contains("evidence capture is OFF"), run.result.stderr)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: first.custodyLog)), tampered, "the log is left as found")
        XCTAssertFalse(run.dataset("spanwatch.flow").isEmpty, "flows still reported")
        XCTAssertFalse(run.dataset("spanwatch.alert").isEmpty, "alerts still reported")
        let health = run.dataset("spanwatch.health")
        XCTAssertEqual(health.compactMap { TestSupport.value($0, "spanwatch.health.check") as? String }, ["evidence_disabled"])
        let stats = try XCTUnwrap(run.dataset("spanwatch.stats").last)
        XCTAssertEqual(TestSupport.value(stats, "spanwatch.stats.evidence.enabled") as? Bool, false)
        XCTAssertGreaterThan(TestSupport.value(stats, "spanwatch.stats.evidence.refused_custody") as? Int ?? 0, 0)
        XCTAssertTrue(run.dataset("spanwatch.evidence").contains { TestSupport.value($0, "spanwatch.evidence.refused") as? String == "custody_unavailable" })
        let schema = try EventSchema.load()
        for e in run.events { XCTAssertEqual(schema.problems(e), []) }
        let verify = try Self.verify(first.custodyLog)
        XCTAssertEqual(verify.status, 2, verify.stderr)
    }

    /// Two writers on one log would both extend the same head and fork the chain: the second is refused
    /// while the first holds it, and may open it once the first is gone.
    func testOneWriterPerCustodyLog() throws {
        let work = try TestSupport.temporaryDirectory("custody-lock")
        defer { try? FileManager.default.removeItem(at: work) }
        let path = work.appendingPathComponent("custody.jsonl").path
        var first: CustodyLog? = try CustodyLog(path: path)
        try first?.append { $0.field("action", "test") }
        XCTAssertThrowsError(try CustodyLog(path: path)) { error in
            XCTAssertTrue("\(error)".contains("in use by another sensor process"), "\(error)")
        }
        first = nil
        let second = try CustodyLog(path: path)
        XCTAssertEqual(second.lastSequence, 1)
    }

    /// A run that stopped mid-capture leaves a `.partial` file with no custody entry: the next start
    /// removes it, logs the removal in the chain and counts it; an evidence file with an entry is kept.
    func testPartialFileOfAnEarlierRunIsRemovedAndLogged() throws {
        let first = try EvidenceReplay.replay(try source)
        defer { try? FileManager.default.removeItem(at: first.work) }
        XCTAssertEqual(first.result.status, 0, first.result.stderr)
        let dir = (first.custodyLog as NSString).deletingLastPathComponent
        let kept = try Self.closed(first.custodyLog).compactMap { $0["file"] as? String }
        XCTAssertFalse(kept.isEmpty)
        let partial = dir + "/20260101T000000Z-stale-1.pcapng.age.partial"
        XCTAssertTrue(FileManager.default.createFile(atPath: partial, contents: Data(repeating: 0x41, count: 1234),
                                                     attributes: [.posixPermissions: 0o600]))

        let second = try EvidenceReplay.replay(try source, key: first.key, work: first.work)
        XCTAssertEqual(second.result.status, 0, second.result.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: partial))
        for f in kept { XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/" + f), f) }
        let removed = try EvidenceChecks.custodyEntries(first.custodyLog).filter { $0["action"] as? String == CustodyAction.partialRemoved }
        XCTAssertEqual(removed.map { $0["file"] as? String }, ["20260101T000000Z-stale-1.pcapng.age.partial"])
        XCTAssertEqual(removed.first?["file_bytes"] as? Int, 1234)
        let stats = try XCTUnwrap(second.dataset("spanwatch.stats").last)
        XCTAssertEqual(TestSupport.value(stats, "spanwatch.stats.evidence.partials_removed") as? Int, 1)
        XCTAssertEqual(try Self.verify(first.custodyLog).status, 0)
    }

    // MARK: Anchoring

    /// The chain alone does not show a cut-off end (or an emptied log): the head announced in the event
    /// stream (`spanwatch.stats.evidence.custody`, `spanwatch.evidence` custody seq/hash) does, with --expect-head.
    func testExpectedHeadCatchesWhatTheChainCannot() throws {
        let run = try EvidenceReplay.replay(try source)
        defer { try? FileManager.default.removeItem(at: run.work) }
        XCTAssertEqual(run.result.status, 0, run.result.stderr)
        let stats = try XCTUnwrap(run.dataset("spanwatch.stats").last)
        let seq = try XCTUnwrap(TestSupport.value(stats, "spanwatch.stats.evidence.custody.seq") as? Int)
        let hash = try XCTUnwrap(TestSupport.value(stats, "spanwatch.stats.evidence.custody.entry_sha256") as? String)
        let entries = try EvidenceChecks.custodyEntries(run.custodyLog)
        XCTAssertEqual(seq, entries.count)
        XCTAssertEqual(hash, entries.last?["entry_sha256"] as? String)
        let created = try XCTUnwrap(run.dataset("spanwatch.evidence").last { TestSupport.value($0, "event.type") as? [String] == ["creation"] })
        XCTAssertEqual(TestSupport.value(created, "spanwatch.evidence.custody.entry_sha256") as? String, hash)

        let head = ["--expect-head", "\(seq):\(hash)"]
        XCTAssertEqual(try Self.verify(run.custodyLog, head).status, 0)
        // The last entry cut off (its file with it): the chain still verifies, the anchor does not.
        let text = try String(contentsOfFile: run.custodyLog, encoding: .utf8)
        let lines = text.split(separator: "\n")
        if let f = entries.last?["file"] as? String { try FileManager.default.removeItem(at: run.evidenceDir.appendingPathComponent(f)) }
        try (lines.dropLast().map { $0 + "\n" }.joined()).write(toFile: run.custodyLog, atomically: false, encoding: .utf8)
        XCTAssertEqual(try Self.verify(run.custodyLog).status, 0, "undetectable without an anchor")
        let cut = try Self.verify(run.custodyLog, head)
        XCTAssertEqual(cut.status, 2)
        XCTAssertTrue(cut.stderr.contains("anchor seq \(seq)"), cut.stderr)
        // An emptied log verifies; not against the anchor.
        try "".write(toFile: run.custodyLog, atomically: false, encoding: .utf8)
        XCTAssertEqual(try Self.verify(run.custodyLog).status, 0)
        XCTAssertEqual(try Self.verify(run.custodyLog, head).status, 2)
        XCTAssertNotEqual(try Self.verify(run.custodyLog, ["--expect-head", "1:nothex"]).status, 0)
    }
}

extension EvidenceManagerTests {
    /// A capture whose file cannot be created at close (a file by its name appeared in the directory): it
    /// fails, and the capture's slot and reserved bytes are given back exactly once (they used to be given
    /// back twice, leaving the disk accounting negative and one more concurrent capture allowed than configured).
    func testFailedCommitGivesTheSlotBackOnce() throws {
        let source = try XCTUnwrap(TestSupport.captures("c2-nonstd-port").first { $0.hasSuffix("http-on-port-5432.pcap") })
        let pair = try EvidenceChecks.busiestPair(source)
        let h = try Harness(triggers: [Self.pairTrigger])
        try h.replay(source, alerts: [Harness.alert(pair)], finish: false)
        XCTAssertEqual(h.manager.openCaptures, 1)
        XCTAssertGreaterThan(h.store.diskUsage, 0)
        // While open, the capture has no name on disk (its part is unlinked); the file appears at close.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: h.evidenceDir.path), ["custody.jsonl"])
        XCTAssertEqual(EvidenceChecks.openParts(in: h.evidenceDir).count, 1)
        let name = try XCTUnwrap(h.manager.coordinator.open.first?.reservation.fileName)
        XCTAssertTrue(FileManager.default.createFile(atPath: h.evidenceDir.appendingPathComponent(name + ".partial").path, contents: Data([1])))
        h.pipeline.finish(emitStats: false)
        XCTAssertEqual(h.manager.coordinator.counters.failures, 1)
        XCTAssertEqual(h.manager.coordinator.counters.capturesClosed, 0)
        XCTAssertEqual(h.store.counters.failed, 1, "one failure, counted once")
        XCTAssertEqual(h.store.diskUsage, 0, "reserved bytes given back once")
        XCTAssertEqual(h.store.openSlots, 0)
        XCTAssertEqual((try? String(contentsOfFile: h.custodyLog, encoding: .utf8)) ?? "", "", "no entry for a file that is not there")
    }
}
