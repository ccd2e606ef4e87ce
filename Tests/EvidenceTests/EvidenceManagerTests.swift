import Capture
import Events
import Foundation
import Logging
import PacketCore
import SensorRuntime
import TestSupport
import XCTest
@testable import Evidence

/// A wall clock the test moves (retention is wall-clock time; everything else is packet time).
final class TestClock: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Double
    init(_ v: Double) { value = v }
    var now: Double { lock.lock(); defer { lock.unlock() }; return value }
    func advance(_ s: Double) { lock.lock(); value += s; lock.unlock() }
}

/// A real pipeline with the evidence manager, fed from real captures; alerts are constructed for hosts
/// in those captures and raised through the emitter, exactly as a detector raises them.
final class Harness {
    let work: URL
    let evidenceDir: URL
    let key: AgeKey
    let sink = CollectingSink()
    let emitter: EventEmitter
    let store: EvidenceStore
    let manager: EvidenceManager
    let pipeline: Pipeline
    let clock = TestClock(1_800_000_000)
    var configuration: EvidenceConfiguration

    static let purpose = "IR-2026-0412 suspected C2 from workstation"
    static let authorization = "AUTH-2026-0412 signed CISO+Legal"
    static let operatorName = "analyst.jane"

    init(triggers: [EvidenceTrigger], configure: (inout EvidenceConfiguration) -> Void = { _ in }) throws {
        work = try TestSupport.temporaryDirectory("evidence-test")
        evidenceDir = work.appendingPathComponent("evidence")
        key = try AgeKey.generate(in: work)
        var c = EvidenceConfiguration()
        c.directory = evidenceDir.path
        c.recipients = [key.recipient]
        c.authorization = Self.authorization
        c.purpose = Self.purpose
        c.operatorName = Self.operatorName
        c.lookbackBytes = 8 << 20
        c.lookbackSeconds = 60
        configure(&c)
        configuration = c
        emitter = EventEmitter(observer: ObserverInfo(name: "test-sensor", hostname: "test-host"), sinks: [sink])
        let clock = self.clock
        store = try EvidenceStore(configuration: c, sensorName: "test-sensor", hostname: "test-host", wallClock: { clock.now })
        var logger = Logger(label: "evidence-test")
        logger.logLevel = .warning
        manager = try EvidenceManager(store: store, triggers: triggers, emitter: emitter, logger: logger)
        manager.observeAlerts(of: emitter)
        pipeline = Pipeline(flows: FlowTableConfiguration(), emitter: emitter, analyzers: [manager])
    }

    deinit { try? FileManager.default.removeItem(at: work) }

    /// Every event written so far conforms to docs/SCHEMA.md (spanwatch.evidence included).
    func assertEventsConform(file: StaticString = #filePath, line: UInt = #line) throws {
        let schema = try EventSchema.load()
        XCTAssertNotNil(schema.sections["spanwatch.evidence"], file: file, line: line)
        for e in sink.events {
            XCTAssertEqual(schema.problems(e), [], file: file, line: line)
        }
    }

    var custodyLog: String { evidenceDir.appendingPathComponent("custody.jsonl").path }

    /// Replays `path`; each alert is raised right after the first packet at or past its time.
    /// `midRun` runs after every alert (to look at the disk while captures are open).
    func replay(_ path: String, alerts: [Alert], finish: Bool = true, midRun: () -> Void = {}) throws {
        let r = try PcapFileReader(path: path)
        var pending = alerts.sorted { $0.timestamp < $1.timestamp }
        while let p = try r.next() {
            pipeline.process(p)
            while let a = pending.first, p.timestamp >= a.timestamp {
                pending.removeFirst()
                emitter.emit(a)
                midRun()
            }
        }
        for a in pending { emitter.emit(a) }
        if finish { pipeline.finish(emitStats: false) }
    }

    static func alert(_ pair: (a: IPAddress, b: IPAddress, sport: UInt16, dport: UInt16, proto: UInt8, alertAt: Timestamp),
                      at t: Timestamp? = nil, category: RuleCategory = .nonstandardPortC2, severity: Severity = .high,
                      rule: String = "test-evidence-hook") -> Alert {
        Alert(timestamp: t ?? pair.alertAt, category: category, ruleID: rule, ruleName: "Constructed alert for the evidence hook", ruleDescription: "A constructed alert.",
              techniques: [.nonStandardPort], severity: severity, riskScore: 70,
              message: "test alert", source: Endpoint(ip: pair.a, port: pair.sport), destination: Endpoint(ip: pair.b, port: pair.dport),
              ipProtocol: pair.proto)
    }
}

final class EvidenceManagerTests: XCTestCase {
    static let pairTrigger = EvidenceTrigger(name: "c2-test", categories: ["nonstandard_port_c2", "beaconing"], minimumSeverity: .medium,
                                             scope: .hostPair, duration: .seconds(30), lookback: .seconds(60), maxBytes: 64 << 20)

    override func setUpWithError() throws { try EvidenceChecks.requireTools() }

    /// The acceptance assertions, for real, on every capture in c2-nonstd-port/ and beacon/: one alert
    /// for the busiest host pair; the evidence decrypts with `age -d`, capinfos/tshark read it with its
    /// comments, its packets equal tcpdump's cut for the scope over the file's window (lookback
    /// included), the custody hashes match, modes are 0600/0700, no plaintext touches the disk, and the
    /// `spanwatch.evidence` event links the alert to the file and its hash.
    func testEvidenceForEveryC2AndBeaconCapture() throws {
        let captures = TestSupport.captures("c2-nonstd-port") + TestSupport.captures("beacon")
        XCTAssertGreaterThanOrEqual(captures.count, 10)
        for source in captures {
            let pair = try EvidenceChecks.busiestPair(source)
            let h = try Harness(triggers: [Self.pairTrigger])
            let alert = Harness.alert(pair)
            var parts: [Data] = []
            try h.replay(source, alerts: [alert]) {
                // While the capture is open: only ciphertext in the evidence directory, and the worker's part
                // (nameless) holds none of its packets in clear (checked below, once they are known).
                EvidenceChecks.assertNoPlaintextCapture(in: [h.evidenceDir])
                parts += EvidenceChecks.openParts(in: h.evidenceDir)
            }
            XCTAssertFalse(parts.isEmpty, "\(source): the part exists while the capture is open")
            EvidenceChecks.assertNoPlaintextCapture(in: [h.evidenceDir])
            XCTAssertEqual(EvidenceChecks.mode(h.evidenceDir.path), 0o700)
            XCTAssertEqual(EvidenceChecks.mode(h.custodyLog), 0o600)
            XCTAssertEqual(h.manager.coordinator.counters.capturesClosed, 1, source)
            let entries = try EvidenceChecks.custodyEntries(h.custodyLog)
            XCTAssertEqual(entries.count, 1, source)
            let entry = try XCTUnwrap(entries.first)
            XCTAssertEqual(entry["authorization"] as? String, Harness.authorization)
            XCTAssertEqual(entry["operator"] as? String, Harness.operatorName)
            XCTAssertEqual((entry["alerts"] as? [[String: Any]])?.first?["id"] as? String, alert.id)
            XCTAssertEqual((entry["user"] as? [String: Any])?["id"] as? Int, Int(getuid()))
            XCTAssertNotNil(entry["retention_until"])
            let packets = try EvidenceChecks.verify(entry: entry, evidenceDir: h.evidenceDir, source: source, key: h.key, work: h.work,
                                                    expectComments: ["sensor: test-sensor", "alert \(alert.id)", "authorization: \(Harness.authorization)",
                                                                     "purpose: \(Harness.purpose)", "operator: \(Harness.operatorName)"])
            EvidenceChecks.assertNoPlaintext(of: packets, in: parts)
            // Lookback: the pair's packets before the alert are there (the alert is at the pair's middle packet).
            XCTAssertLessThan(try XCTUnwrap(packets.first).timestamp, alert.timestamp.nanoseconds, "\(source): lookback packets present")
            let ev = try XCTUnwrap(h.sink.dataset("spanwatch.evidence").first, source)
            XCTAssertEqual(TestSupport.value(ev, "file.hash.sha256") as? String, entry["sha256"] as? String)
            XCTAssertEqual(TestSupport.value(ev, "spanwatch.evidence.alert_ids") as? [String], [alert.id])
            XCTAssertEqual(TestSupport.value(ev, "file.name") as? String, entry["file"] as? String)
            XCTAssertEqual(TestSupport.value(ev, "spanwatch.evidence.custody.seq") as? Int, 1)
            XCTAssertEqual(CustodyVerifier.verify(path: h.custodyLog).firstProblem, nil)
            try h.assertEventsConform()
        }
    }

    /// A second alert for a scope the open capture covers extends it (one file, both alerts, the
    /// extension noted as a packet comment); a third for another pair opens a second capture.
    func testOverlappingAlertsExtendOneCapture() throws {
        let source = try XCTUnwrap(TestSupport.captures("beacon").first { $0.hasSuffix("emotet.pcap") })
        let pair = try EvidenceChecks.busiestPair(source)
        let h = try Harness(triggers: [Self.pairTrigger])
        let first = Harness.alert(pair)
        // A second detector's alert on the same pair while the capture is open.
        let second = Harness.alert(pair, rule: "test-evidence-hook-2")
        try h.replay(source, alerts: [first, second])
        XCTAssertEqual(h.manager.coordinator.counters.capturesOpened, 1)
        XCTAssertEqual(h.manager.coordinator.counters.capturesExtended, 1)
        let entries = try EvidenceChecks.custodyEntries(h.custodyLog)
        XCTAssertEqual(entries.count, 1)
        XCTAssertEqual((entries[0]["alerts"] as? [[String: Any]])?.compactMap { $0["id"] as? String }, [first.id, second.id])
        let packets = try EvidenceChecks.verify(entry: entries[0], evidenceDir: h.evidenceDir, source: source, key: h.key, work: h.work,
                                                expectComments: ["alert \(first.id)"])
        XCTAssertGreaterThan(packets.count, 0)
        let plain = h.work.appendingPathComponent((entries[0]["file"] as! String).replacingOccurrences(of: ".age", with: "")).path
        let comments = try TestSupport.run("tshark", ["-r", plain, "-T", "fields", "-e", "frame.comment"])
        XCTAssertTrue(comments.stdoutText.contains("alert \(second.id)"), "extension comment: \(comments.stdoutText.prefix(500))")
    }

    /// Global caps: a second concurrent capture is refused when the cap is one, and a capture that
    /// would not fit the disk budget is refused; both are counted and reported as events.
    func testGlobalCapsRefuseAndCount() throws {
        let source = try XCTUnwrap(TestSupport.captures("beacon").first { $0.hasSuffix("wmi_to_powershell_empire.pcap") })
        let pair = try EvidenceChecks.busiestPair(source)
        let other = Harness.alert((pair.a, IPAddress(ipv4: 0x0A00_0063), 1, 2, IPProtocol.tcp, pair.alertAt))
        let h = try Harness(triggers: [Self.pairTrigger]) { $0.maxConcurrentCaptures = 1 }
        try h.replay(source, alerts: [Harness.alert(pair), other])
        XCTAssertEqual(h.manager.coordinator.counters.refusedConcurrency, 1)
        XCTAssertEqual(h.store.counters.refusedConcurrency, 1)
        XCTAssertEqual(h.manager.coordinator.counters.capturesClosed, 1)
        let refused = h.sink.dataset("spanwatch.evidence").filter { TestSupport.value($0, "event.outcome") as? String == "failure" }
        XCTAssertEqual(refused.count, 1)
        XCTAssertEqual(TestSupport.value(refused[0], "spanwatch.evidence.refused") as? String, "concurrency_cap")
        try h.assertEventsConform()

        let d = try Harness(triggers: [Self.pairTrigger]) { $0.maxDiskBytes = 100_000 }
        try d.replay(source, alerts: [Harness.alert(pair), other])
        XCTAssertEqual(d.manager.coordinator.counters.refusedDiskCap, 1)
        // The first capture was held to what the budget allowed.
        let entries = try EvidenceChecks.custodyEntries(d.custodyLog)
        XCTAssertEqual(entries.count, 1)
        XCTAssertLessThanOrEqual((entries[0]["file_bytes"] as? NSNumber)?.intValue ?? .max, 100_000)
        XCTAssertNil(CustodyVerifier.verify(path: d.custodyLog).firstProblem)

        // A trigger's own size cap closes the capture; what it holds is still tcpdump's cut of its window.
        var small = Self.pairTrigger
        small.maxBytes = 8192
        let s = try Harness(triggers: [small])
        try s.replay(source, alerts: [Harness.alert(pair)])
        let capped = try EvidenceChecks.custodyEntries(s.custodyLog)
        XCTAssertEqual(capped.first?["close_reason"] as? String, "size_cap")
        XCTAssertLessThanOrEqual((capped.first?["file_bytes"] as? NSNumber)?.intValue ?? .max, 8192)
        try EvidenceChecks.verify(entry: capped[0], evidenceDir: s.evidenceDir, source: source, key: s.key, work: s.work, expectComments: [])
    }

    /// Retention: once the period passes (wall clock), the file is deleted and the deletion is logged
    /// in the chain; verification still passes and counts it; a `spanwatch.evidence` deletion event follows.
    func testRetentionDeletesAndLogs() throws {
        let source = try XCTUnwrap(TestSupport.captures("c2-nonstd-port").first { $0.hasSuffix("http-on-port-5432.pcap") })
        let pair = try EvidenceChecks.busiestPair(source)
        let h = try Harness(triggers: [Self.pairTrigger]) { $0.retentionSeconds = 3600 }
        try h.replay(source, alerts: [Harness.alert(pair)], finish: false)
        h.pipeline.finish(emitStats: false)
        var entries = try EvidenceChecks.custodyEntries(h.custodyLog)
        let file = try XCTUnwrap(entries.first?["file"] as? String)
        XCTAssertTrue(FileManager.default.fileExists(atPath: h.evidenceDir.appendingPathComponent(file).path))
        XCTAssertTrue(try h.store.enforceRetention().isEmpty, "nothing expires before its time")
        h.clock.advance(3601)
        let deleted = try h.store.enforceRetention()
        XCTAssertEqual(deleted.map(\.fileName), [file])
        XCTAssertFalse(FileManager.default.fileExists(atPath: h.evidenceDir.appendingPathComponent(file).path))
        entries = try EvidenceChecks.custodyEntries(h.custodyLog)
        XCTAssertEqual(entries.count, 2)
        XCTAssertEqual(entries[1]["action"] as? String, "evidence_deleted")
        XCTAssertEqual(entries[1]["file"] as? String, file)
        let report = CustodyVerifier.verify(path: h.custodyLog)
        XCTAssertNil(report.firstProblem)
        XCTAssertEqual(report.filesDeleted, 1)
        h.manager.tick(Timestamp(seconds: 2_000_000_000))
        XCTAssertEqual(h.sink.dataset("spanwatch.evidence").filter { (TestSupport.value($0, "event.type") as? [String]) == ["deletion"] }.count, 1)
        try h.assertEventsConform()

        // A store opened later on the same directory inherits the chain and the inventory.
        var c = h.configuration
        c.retentionSeconds = 0
        let again = try EvidenceStore(configuration: c, sensorName: "s", hostname: "h")
        XCTAssertEqual(again.counters.deleted, 0, "already-deleted files are not deleted twice")
    }

    func testUnsafeDirectoryAndMissingAuthorizationAreRefused() throws {
        let work = try TestSupport.temporaryDirectory("evidence-dir")
        defer { try? FileManager.default.removeItem(at: work) }
        let key = try AgeKey.generate(in: work)
        let dir = work.appendingPathComponent("open")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o755])
        var c = EvidenceConfiguration()
        c.directory = dir.path
        c.recipients = [key.recipient]
        c.authorization = "AUTH-1"
        XCTAssertThrowsError(try EvidenceStore(configuration: c, sensorName: "s", hostname: "h")) { e in
            XCTAssertTrue("\(e)".contains("accessible to others"), "\(e)")
        }
        try FileManager.default.setAttributes([.posixPermissions: 0o750], ofItemAtPath: dir.path)
        XCTAssertNoThrow(try EvidenceStore(configuration: c, sensorName: "s", hostname: "h"))
        c.authorization = nil
        XCTAssertFalse(c.enabled)
        XCTAssertThrowsError(try EvidenceStore(configuration: c, sensorName: "s", hostname: "h"))
        c.authorization = "AUTH-1"
        c.recipients = []
        XCTAssertFalse(c.validate().isEmpty, "no recipient: refused (evidence is never kept in clear)")
    }

    /// Triggers select by category and severity; an alert no trigger selects opens nothing.
    func testTriggerSelection() throws {
        let source = try XCTUnwrap(TestSupport.captures("c2-nonstd-port").first { $0.hasSuffix("http_on_sip_port.pcap") })
        let pair = try EvidenceChecks.busiestPair(source)
        let h = try Harness(triggers: [Self.pairTrigger])
        try h.replay(source, alerts: [Harness.alert(pair, severity: .low), Harness.alert(pair, category: .dnsTunneling)])
        XCTAssertEqual(h.manager.coordinator.counters.alertsSeen, 2)
        XCTAssertEqual(h.manager.coordinator.counters.alertsTriggering, 0)
        XCTAssertEqual(h.manager.coordinator.counters.capturesOpened, 0)
        let log = (try? String(contentsOfFile: h.custodyLog, encoding: .utf8)) ?? ""
        XCTAssertTrue(log.isEmpty, "no custody entry without a capture")
    }

    /// A capture that finds no packet in scope (an alert about a host the ring and the rest of the input
    /// never show) keeps no file and no custody entry; it is counted and reported instead.
    func testEmptyCaptureIsDiscardedAndReported() throws {
        let source = try XCTUnwrap(TestSupport.captures("c2-nonstd-port").first { $0.hasSuffix("http_on_sip_port.pcap") })
        let pair = try EvidenceChecks.busiestPair(source)
        let h = try Harness(triggers: [Self.pairTrigger])
        try h.replay(source, alerts: [Harness.alert((IPAddress(ipv4: 0xC000_0201), IPAddress(ipv4: 0xC000_0202), 1, 2, IPProtocol.tcp, pair.alertAt))])
        XCTAssertEqual(h.manager.coordinator.counters.capturesOpened, 1)
        XCTAssertEqual(h.manager.coordinator.counters.emptyDiscarded, 1)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: h.evidenceDir.path).filter { $0.contains(".pcapng") }, [])
        XCTAssertEqual((try? String(contentsOfFile: h.custodyLog, encoding: .utf8)) ?? "", "")
        let ev = h.sink.dataset("spanwatch.evidence")
        XCTAssertEqual(ev.count, 1)
        XCTAssertEqual(ev.first.flatMap { TestSupport.value($0, "event.reason") as? String }, "no_packets_in_scope")
        try h.assertEventsConform()
        // The slot was given back: a later alert can open a capture.
        XCTAssertEqual(h.store.diskUsage, 0)
    }

    /// `timestamp_resolution: us` declares microseconds in every IDB and writes every packet in them.
    func testMicrosecondResolution() throws {
        let source = try XCTUnwrap(TestSupport.captures("c2-nonstd-port").first { $0.hasSuffix("http_large_req_8001.pcap") })
        let pair = try EvidenceChecks.busiestPair(source)
        let h = try Harness(triggers: [Self.pairTrigger]) { $0.timestampResolution = .microseconds }
        try h.replay(source, alerts: [Harness.alert(pair)])
        let entry = try XCTUnwrap(try EvidenceChecks.custodyEntries(h.custodyLog).first)
        let plain = h.work.appendingPathComponent("us.pcapng").path
        try h.key.decrypt(h.evidenceDir.appendingPathComponent(entry["file"] as! String).path, to: plain)
        let cap = try TestSupport.run("capinfos", [plain])
        XCTAssertTrue(cap.stdoutText.contains("microseconds"), cap.stdoutText)
        let packets = try StoredPacket.read(plain)
        let bpf = try XCTUnwrap((entry["scope"] as? [String: Any])?["bpf"] as? String)
        let reference = try StoredPacket.read(source, filter: bpf)
            .map { StoredPacket(timestamp: $0.timestamp / 1000 * 1000, wireLength: $0.wireLength, bytes: $0.bytes) }
            .filter { $0.timestamp >= packets[0].timestamp && $0.timestamp <= packets.last!.timestamp }
        XCTAssertGreaterThan(packets.count, 0)
        XCTAssertEqual(packets, reference)
    }

    /// Packets that make no flow — a later IP fragment, a TCP header cut before its ports — are in a host
    /// scope as tcpdump's `ip host` filter selects them, from the lookback ring and live. A crafted capture:
    /// the pair's SYN, a UDP datagram in two fragments and a cut TCP packet before the alert, the same
    /// after it, and another host's traffic throughout.
    func testPacketsWithoutFlowAreEvidenceToo() throws {
        let a = IPAddress(ipv4: 0x0A01_0001), b = IPAddress(ipv4: 0x0A01_0002), other = IPAddress(ipv4: 0x0A01_0003)
        func ipv4(_ src: IPAddress, _ dst: IPAddress, proto: UInt8, id: UInt16, fragment: UInt16, claimed: Int? = nil, _ payload: [UInt8]) -> [UInt8] {
            let total = 20 + (claimed ?? payload.count)
            var f: [UInt8] = [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00]
            f += [0x45, 0, UInt8(total >> 8), UInt8(total & 0xff), UInt8(id >> 8), UInt8(id & 0xff), UInt8(fragment >> 8), UInt8(fragment & 0xff), 64, proto, 0, 0]
            for x in [src, dst] { let v = UInt32(truncatingIfNeeded: x.low); f += [UInt8(v >> 24), UInt8((v >> 16) & 0xff), UInt8((v >> 8) & 0xff), UInt8(v & 0xff)] }
            return f + payload
        }
        let syn: [UInt8] = [0x9c, 0x40, 0x01, 0xbd, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]
        let udpFirst: [UInt8] = [0x9c, 0x41, 0x00, 0x35, 0, 32, 0, 0] + [UInt8](repeating: 0x41, count: 16)
        let udpLater = [UInt8](repeating: 0x42, count: 8)
        var frames: [(Int64, [UInt8])] = []
        for (round, base) in [Int64(1_700_000_000), 1_700_000_010].enumerated() {
            let id = UInt16(100 + round)
            frames += [(base, ipv4(a, b, proto: 6, id: id, fragment: 0, syn)),
                       (base + 1, ipv4(a, b, proto: 17, id: id, fragment: 0x2000, udpFirst)),          // first fragment, MF
                       (base + 2, ipv4(a, b, proto: 17, id: id, fragment: 3, udpLater)),               // later fragment (offset 24)
                       (base + 3, ipv4(b, a, proto: 6, id: id, fragment: 0, claimed: 20, [0x01, 0xbd])), // TCP cut before its ports
                       (base + 4, ipv4(a, other, proto: 17, id: id, fragment: 3, udpLater))]           // another pair
        }
        let h = try Harness(triggers: [Self.pairTrigger])
        let path = h.work.appendingPathComponent("no-flow.pcap")
        var file: [UInt8] = [0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0, 0]
        func le32(_ v: Int) -> [UInt8] { (0..<4).map { UInt8((v >> (8 * $0)) & 0xff) } }
        for (t, f) in frames { file += le32(Int(t)) + le32(0) + le32(f.count) + le32(f.count) + f }
        try Data(file).write(to: path)

        let alert = Harness.alert((a: a, b: b, sport: 40000, dport: 445, proto: 6, alertAt: Timestamp(seconds: 1_700_000_005)))
        try h.replay(path.path, alerts: [alert])
        XCTAssertEqual(h.manager.counters.packetsWithoutFlow, 6, "two later fragments and two cut packets per round, the other pair's included")
        let entry = try XCTUnwrap(try EvidenceChecks.custodyEntries(h.custodyLog).first)
        let plain = h.work.appendingPathComponent("no-flow.pcapng").path
        try h.key.decrypt(h.evidenceDir.appendingPathComponent(entry["file"] as! String).path, to: plain)
        let bpf = try XCTUnwrap((entry["scope"] as? [String: Any])?["bpf"] as? String)
        let reference = try StoredPacket.read(path.path, filter: bpf)
        XCTAssertEqual(reference.count, 8, "tcpdump's cut: 4 packets of the pair per round")
        XCTAssertEqual(try StoredPacket.read(plain), reference)
    }

    /// `lookback.flow_bytes`: packets from the ring keep headers only once their flow is past the cut-off
    /// (counted from the flow's first byte, independently here from tcpdump's cut); earlier packets and
    /// everything captured live after the alert stay whole. Nothing is dropped.
    func testLookbackFlowCutoffKeepsHeadersPastTheCap() throws {
        // A 1.4 MB Meterpreter session on port 4444 beside small SMB flows: the alert falls inside it.
        let source = try XCTUnwrap(TestSupport.captures("c2-nonstd-port").first { $0.hasSuffix("metasploit-ms017-010-win7x64.pcap") })
        let pair = try EvidenceChecks.busiestPair(source)
        let cutoff = 16384
        let h = try Harness(triggers: [Self.pairTrigger]) { $0.lookbackFlowBytes = cutoff }
        let alert = Harness.alert(pair)
        try h.replay(source, alerts: [alert])
        XCTAssertGreaterThan(h.manager.counters.lookbackHeadersOnly, 0)
        let entry = try XCTUnwrap(try EvidenceChecks.custodyEntries(h.custodyLog).first)
        let plain = h.work.appendingPathComponent("cut.pcapng").path
        try h.key.decrypt(h.evidenceDir.appendingPathComponent(entry["file"] as! String).path, to: plain)
        let comments = try TestSupport.run("capinfos", ["-k", plain]).stdoutText
        XCTAssertTrue(comments.contains("headers only once their flow is past 16384 bytes"), comments)
        let packets = try StoredPacket.read(plain)
        let bpf = try XCTUnwrap((entry["scope"] as? [String: Any])?["bpf"] as? String)
        // Expected: tcpdump's cut, each packet cut to its headers when it was in the ring and its flow had
        // carried `cutoff` wire bytes before it.
        struct FlowID: Hashable { var a: IPAddress; var b: IPAddress; var pa: UInt16; var pb: UInt16; var proto: UInt8 }
        var carried: [FlowID: Int] = [:]
        var expected: [StoredPacket] = []
        for var r in try StoredPacket.read(source, filter: bpf) {
            var d = DecodedPacket()
            let outcome = r.bytes.withUnsafeBytes { PacketDecoder.decode($0, linkType: .ethernet, into: &d) }
            XCTAssertEqual(outcome, .ok)
            let forward = (d.source, d.sourcePort) < (d.destination, d.destinationPort)
            let id = forward ? FlowID(a: d.source, b: d.destination, pa: d.sourcePort, pb: d.destinationPort, proto: d.ipProtocol)
                             : FlowID(a: d.destination, b: d.source, pa: d.destinationPort, pb: d.sourcePort, proto: d.ipProtocol)
            let before = carried[id, default: 0]
            carried[id] = before + r.wireLength
            if r.timestamp <= alert.timestamp.nanoseconds && before >= cutoff { r.bytes = Array(r.bytes.prefix(d.payloadOffset)) }
            expected.append(r)
        }
        expected = expected.filter { $0.timestamp >= packets[0].timestamp && $0.timestamp <= packets.last!.timestamp }
        XCTAssertEqual(packets, expected)
        XCTAssertTrue(packets.contains { $0.bytes.count < $0.wireLength && $0.timestamp <= alert.timestamp.nanoseconds }, "some lookback packets are cut")
        XCTAssertTrue(packets.contains { $0.bytes.count > 200 && $0.timestamp > alert.timestamp.nanoseconds }, "live packets stay whole")
    }

    /// Flow scope: exactly tcpdump's cut for the flow's BPF, and the headers-only snap length applies.
    func testFlowScopeHeadersOnly() throws {
        let source = try XCTUnwrap(TestSupport.captures("c2-nonstd-port").first { $0.hasSuffix("http-single-conn-22.pcap") })
        let pair = try EvidenceChecks.busiestPair(source)
        var trigger = Self.pairTrigger
        trigger.scope = .flow
        let h = try Harness(triggers: [trigger]) { $0.snapLength = 96 }
        try h.replay(source, alerts: [Harness.alert(pair)])
        let entries = try EvidenceChecks.custodyEntries(h.custodyLog)
        let entry = try XCTUnwrap(entries.first)
        XCTAssertEqual((entry["scope"] as? [String: Any])?["kind"] as? String, "flow")
        let name = try XCTUnwrap(entry["file"] as? String)
        let plain = h.work.appendingPathComponent("flow.pcapng").path
        try h.key.decrypt(h.evidenceDir.appendingPathComponent(name).path, to: plain)
        let packets = try StoredPacket.read(plain)
        XCTAssertGreaterThan(packets.count, 0)
        XCTAssertTrue(packets.allSatisfy { $0.bytes.count <= 96 })
        XCTAssertTrue(packets.contains { $0.wireLength > 96 }, "original lengths are kept")
        let bpf = try XCTUnwrap((entry["scope"] as? [String: Any])?["bpf"] as? String)
        let reference = try StoredPacket.read(source, filter: bpf).filter { $0.timestamp >= packets[0].timestamp && $0.timestamp <= packets.last!.timestamp }
        XCTAssertEqual(packets.map(\.timestamp), reference.map(\.timestamp))
        XCTAssertEqual(packets.map { $0.bytes }, reference.map { Array($0.bytes.prefix(96)) })
    }
}
