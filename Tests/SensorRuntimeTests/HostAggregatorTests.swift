import Analyzers
import Foundation
import Detectors
import Events
import Logging
import PacketCore
@testable import SensorRuntime
import Synchronization
import XCTest
import TestSupport

/// The host-level stage fed by two "workers" in interleaved order decides exactly as one pipeline does.
final class HostAggregatorTests: XCTestCase {
    final class AlertLog: EventSink, @unchecked Sendable {
        let name = "alerts"
        var alerts: [Alert] = []
        func write(_ json: UnsafeRawBufferPointer, metadata: EventMetadata) {}
        func flush() throws {}
        func close() throws {}
        var statistics: SinkStatistics { SinkStatistics() }
    }

    func emitter(_ log: AlertLog) -> EventEmitter {
        let e = EventEmitter(observer: ObserverInfo(name: "test"), sinks: [log])
        e.alertObservers.append { log.alerts.append($0) }
        return e
    }

    let plan = HostDetectorPlan(c2Rules: C2PortRules(), beaconRules: BeaconRules(), lateralRules: LateralMovementRules(),
                                tunnelRules: nil)

    /// A worker's clock as `Pipeline` keeps it: tick once per packet-clock second, before the packet.
    final class FakeWorker {
        let publisher: HostFactPublisher
        var clock: Int64 = .min
        var nextTick: Int64 = .min
        init(_ p: HostFactPublisher) { publisher = p }
        func at(_ t: Timestamp, _ fact: (HostFactPublisher) -> Void) {
            if t.nanoseconds > clock {
                clock = t.nanoseconds
                if clock >= nextTick {
                    nextTick = (t.seconds + 1) * 1_000_000_000
                    publisher.tick(t)
                }
            }
            publisher.clockStarted(at: t)
            fact(publisher)
        }
        func finish() { publisher.finish(Timestamp(nanoseconds: clock)) }
    }

    static func t(_ s: Double) -> Timestamp { Timestamp(seconds: 1_600_000_000 + s) }

    /// The scenario, in packet-time order: (worker, time, fact). Host A fans out to 12 servers on 445,
    /// alternating workers; host B writes a tool to ADMIN$ on one connection (worker 0) and creates a
    /// service over another (worker 1) — each worker alone sees only half of either pattern.
    static var scenario: [(Int, Timestamp, (HostFactPublisher) -> Void)] {
        let a = IPAddress("10.0.0.5")!, b = IPAddress("10.0.0.6")!, target = IPAddress("10.0.0.9")!
        var s: [(Int, Timestamp, (HostFactPublisher) -> Void)] = []
        for i in 1...12 {
            let server = IPAddress("10.0.1.\(i)")!
            s.append((i % 2, t(Double(i)), { $0.tcpFlowStarted(source: a, destination: server, port: 445, at: t(Double(i))) }))
        }
        let smb = SessionEndpoints(client: b, server: target, serverPort: 445)
        s.append((0, t(20), { $0.observe(.treeConnect(path: "\\\\t\\ADMIN$"), on: smb, at: t(20)) }))
        s.append((0, t(21), { $0.observe(.open(share: "ADMIN$", name: "tool.exe", isPipe: false, writeAccess: true), on: smb, at: t(21)) }))
        s.append((0, t(21.5), { $0.observe(.write(share: "ADMIN$", name: "tool.exe"), on: smb, at: t(21.5)) }))
        let svcctl = RPCInterface(uuid: "367abb81-9844-35f1-ad32-98f038001003")
        s.append((1, t(23), { $0.observe(.rpcCall(interface: svcctl, opnum: 12, pipe: "svcctl"), on: smb, at: t(23)) }))
        // Unrelated traffic keeps both clocks moving.
        for i in 24...40 { s.append((i % 2, t(Double(i)), { _ in })) }
        return s
    }

    func describe(_ alerts: [Alert]) -> [String] {
        alerts.map { "\($0.timestamp) \($0.ruleID) \($0.source.map { "\($0.ip)" } ?? "-") \($0.message)" }.sorted()
    }

    /// One pipeline: the stage inline (what replay runs).
    func reference() -> [Alert] {
        let log = AlertLog()
        let w = FakeWorker(HostFactPublisher(route: .inline(HostDetectorSet(plan: plan, emitter: emitter(log))), plan: plan))
        for (_, t, fact) in Self.scenario { w.at(t, fact) }
        w.finish()
        return log.alerts
    }

    /// Two workers, each with a ring per shard, and `shards` aggregators reading them.
    func stage(shards: Int, log: AlertLog) -> (rings: [[SPSCByteRing]], workers: [FakeWorker], aggregators: [HostAggregator]) {
        let rings = (0..<2).map { _ in (0..<shards).map { _ in SPSCByteRing(capacity: 64 << 10) } }
        let marks = (0..<2).map { _ in WorkerWatermark() }
        let workers = (0..<2).map { FakeWorker(HostFactPublisher(route: .rings(rings[$0], marks[$0]), plan: plan)) }
        let aggregators = (0..<shards).map { s in
            HostAggregator(shard: s, rings: rings.map { $0[s] }, marks: marks, plan: plan, emitter: emitter(log))
        }
        return (rings, workers, aggregators)
    }

    /// Two workers, `shards` aggregators; the aggregators drain at seeded random points in between.
    func sharded(shards: Int, seed: UInt64) -> (alerts: [Alert], dropped: UInt64, facts: UInt64) {
        let log = AlertLog()
        let (rings, workers, aggregators) = stage(shards: shards, log: log)
        var rng = SeededRandom(seed: seed)
        for (w, t, fact) in Self.scenario {
            workers[w].at(t, fact)
            if rng.next() % 3 == 0 { for a in aggregators { a.drain() } }
        }
        workers[1].finish()
        for a in aggregators { a.drain() }
        workers[0].finish()
        for a in aggregators {
            a.drain()
            XCTAssertTrue(a.exhausted)
            a.finish()
        }
        return (log.alerts, rings.joined().reduce(0) { $0 + $1.droppedCount }, aggregators.reduce(0) { $0 + $1.stage.counters.facts })
    }

    func testTwoWorkersInterleavedFireExactlyAsOnePipeline() {
        let expected = reference()
        let rules = Set(expected.map(\.ruleID))
        XCTAssertTrue(rules.contains("lateral_movement.fan_out"), "\(rules)")
        XCTAssertTrue(rules.contains("lateral_movement.tool_transfer_execution"), "\(rules)")
        for seed: UInt64 in [1, 2, 3, 42] {
            for shards in [1, 2] {
                let got = sharded(shards: shards, seed: seed)
                XCTAssertEqual(describe(got.alerts), describe(expected), "seed \(seed), \(shards) shard(s)")
                XCTAssertEqual(got.dropped, 0)
                XCTAssertGreaterThan(got.facts, 0)
            }
        }
    }

    /// An FTP data connection on another worker than its control connection (PACKET_FANOUT hashes each
    /// connection on its own): the announcement travels to every shard, so the port rule knows the data
    /// connection is FTP's, even when it ends long after the announcement's window. Without the
    /// announcement the same session is judged.
    func testFTPDataAnnouncedOnOneWorkerCoversTheConnectionOnAnother() {
        let client = IPAddress("10.0.0.5")!, server = IPAddress("198.51.100.9")!
        let table = FlowTable(configuration: { var c = FlowTableConfiguration(); c.capacity = 64; return c }())
        func packet(_ fromClient: Bool, _ flags: TCPFlags, payload: Int, at t: Timestamp) -> FlowTable.Update {
            var p = DecodedPacket()
            p.timestamp = t
            p.ipVersion = 4; p.ipProtocol = IPProtocol.tcp; p.hasPorts = true; p.tcpFlags = flags
            (p.source, p.destination) = fromClient ? (client, server) : (server, client)
            (p.sourcePort, p.destinationPort) = fromClient ? (50021, 5001) : (5001, 50021)
            p.payloadLength = payload; p.wireLength = 54 + payload; p.capturedLength = p.wireLength
            return table.update(p) { _, _, _ in }
        }
        let slot = packet(true, [.syn], payload: 0, at: Self.t(2)).slot
        _ = packet(false, [.syn, .ack], payload: 0, at: Self.t(2.01))
        _ = packet(true, [.ack], payload: 0, at: Self.t(2.02))
        _ = packet(true, [.ack, .psh], payload: 200, at: Self.t(2.03))
        _ = packet(false, [.ack, .psh], payload: 1400, at: Self.t(300))
        table.setAppProtocol(AppProtocol.http.rawValue, slot: slot)
        let flow = table[slot]
        XCTAssertTrue(flow.isEstablished)

        for announced in [true, false] {
            for shards in [1, 2] {
                let (rings, workers, aggregators) = stage(shards: shards, log: AlertLog())
                workers[0].at(Self.t(1)) {
                    guard announced else { return }
                    $0.ftpDataAnnounced(FTPDataChannels.Expected(host: server, port: 5001, until: Self.t(121)), at: Self.t(1))
                }
                for s in stride(from: 3.0, through: 299, by: 1) { workers[0].at(Self.t(s)) { _ in } }
                workers[1].at(Self.t(300)) { $0.flowEnded(flow, reason: .tcpClosed, slot: slot) }
                for w in workers { w.finish() }
                for a in aggregators { a.drain(); a.finish() }
                let judged = aggregators.reduce(0) { $0 + $1.stage.portDetector.counters.judged }
                XCTAssertEqual(judged, announced ? 0 : 1, "announced: \(announced), \(shards) shard(s)")
                XCTAssertEqual(rings.joined().reduce(0) { $0 + $1.droppedCount }, 0)
            }
        }
    }

    /// The failure the stage exists to prevent: two workers with detectors of their own each see half
    /// of host A's fan-out and half of host B's tool transfer, and neither fires.
    func testPerWorkerDetectorsMissWhatTheStageSees() {
        let log = AlertLog()
        let workers = (0..<2).map { _ in
            FakeWorker(HostFactPublisher(route: .inline(HostDetectorSet(plan: plan, emitter: emitter(log))), plan: plan))
        }
        for (w, t, fact) in Self.scenario { workers[w].at(t, fact) }
        for w in workers { w.finish() }
        let rules = Set(log.alerts.map(\.ruleID))
        XCTAssertFalse(rules.contains("lateral_movement.fan_out"))
        XCTAssertFalse(rules.contains("lateral_movement.tool_transfer_execution"))
    }

    /// A worker with no traffic does not hold the merge back once its watermark moves (a quiet worker
    /// advances it from the wall clock), and a worker that never publishes holds back only until it finishes.
    func testQuietWorkerWatermarkReleasesTheMerge() {
        let rings = (0..<2).map { _ in [SPSCByteRing(capacity: 64 << 10)] }
        let marks = (0..<2).map { _ in WorkerWatermark() }
        let busy = FakeWorker(HostFactPublisher(route: .rings(rings[0], marks[0]), plan: plan))
        let quiet = HostFactPublisher(route: .rings(rings[1], marks[1]), plan: plan)
        let log = AlertLog()
        let agg = HostAggregator(shard: 0, rings: [rings[0][0], rings[1][0]], marks: marks, plan: plan, emitter: emitter(log))
        let a = IPAddress("10.0.0.5")!
        for i in 1...12 {
            busy.at(Self.t(Double(i)), { $0.tcpFlowStarted(source: a, destination: IPAddress("10.0.1.\(i)")!, port: 445, at: Self.t(Double(i))) })
        }
        XCTAssertEqual(agg.drain(), 0, "the quiet worker could still send something earlier")
        quiet.tick(Self.t(30))
        XCTAssertGreaterThan(agg.drain(), 0)
        XCTAssertEqual(log.alerts.map(\.ruleID), ["lateral_movement.fan_out"])
        XCTAssertFalse(agg.exhausted)
    }

    /// Aggregator alerts reach a worker's observers at its next periodic call, each once; a flood is capped.
    func testAlertInboxHandsAlertsOverOnceAndIsBounded() {
        let inbox = AlertInbox()
        XCTAssertTrue(inbox.take().isEmpty)
        let a = Alert(timestamp: Self.t(1), category: .lateralMovement, ruleID: "r", ruleName: "n", ruleDescription: "d", techniques: [], tactics: [],
                      severity: .low, riskScore: 1, message: "m")
        inbox.post(a)
        inbox.post(a)
        XCTAssertEqual(inbox.take().count, 2)
        XCTAssertTrue(inbox.take().isEmpty)
        for _ in 0..<(AlertInbox.capacity + 5) { inbox.post(a) }
        XCTAssertEqual(inbox.take().count, AlertInbox.capacity)
        XCTAssertEqual(inbox.droppedAtomic.load(ordering: .relaxed), 5)
    }

    /// Every fact kind survives the record encoding: the stage sees what the analysers produced.
    func testRecordsRoundTripThroughTheCodec() {
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: HostFactWriter.capacity, alignment: 16)
        defer { buffer.deallocate() }
        let facts: [RemoteAccessFact] = [
            .treeConnect(path: "\\\\h\\C$"), .open(share: "ADMIN$", name: "a.exe", isPipe: false, writeAccess: true),
            .write(share: "C$", name: "x"), .authentication(AuthenticationAttempt(method: .kerberos, user: "u", domain: "D",
                                                                                 workstation: "W", success: false, status: 24)),
            .authentication(AuthenticationAttempt(method: .ntlm, user: "ü", success: nil, status: 0)),
            .rpcBind(RPCInterface(uuid: "367abb81-9844-35f1-ad32-98f038001003")),
            .rpcCall(interface: nil, opnum: 3, pipe: nil), .rpcCall(interface: RPCInterface(uuid: "x"), opnum: 9, pipe: "p"),
            .dcomActivation(className: nil), .dcomActivation(className: "WbemLevel1Login"), .wmiProcessCreate, .encryptedSMB,
            .kerberosServer,
        ]
        for f in facts {
            var w = HostFactWriter(base: buffer)
            w.reset(stamp: 5, kind: .remoteAccess)
            w.remoteAccess(f)
            var r = HostFactReader(w.bytes)
            XCTAssertEqual(r.i64(), 5)
            XCTAssertEqual(r.u8(), HostFactKind.remoteAccess.rawValue)
            XCTAssertEqual(r.remoteAccess(), f)
            XCTAssertTrue(r.c.isAtEnd)
        }
        // Long strings are cut at a UTF-8 boundary, never mid-character.
        var w = HostFactWriter(base: buffer)
        w.reset(stamp: 0, kind: .remoteAccess)
        let long = String(repeating: "é", count: 400)  // 800 bytes
        w.string(long)
        var r = HostFactReader(w.bytes)
        _ = r.i64(); _ = r.u8()
        let cut = r.string()
        XCTAssertEqual(cut, String(repeating: "é", count: 256))
        // A damaged record is counted, not applied.
        let stage = HostDetectorSet(plan: plan, emitter: emitter(AlertLog()))
        stage.apply(UnsafeRawBufferPointer(start: buffer, count: 9))
        XCTAssertEqual(stage.counters.undecodable, 1)
    }

    /// SIGHUP: an accepted rule set reaches the stage's detectors with their state kept; a file that no
    /// longer loads leaves its detectors on the previous rules.
    func testReloadAppliesNewRulesAndKeepsOldOnesWhenAFileFails() throws {
        let dir = try TestSupport.temporaryDirectory("reload-rules")
        defer { try? FileManager.default.removeItem(at: dir) }
        for f in ["c2.yaml", "beaconing.yaml", "lateral-movement.yaml"] {
            try FileManager.default.copyItem(at: TestSupport.repositoryRoot.appendingPathComponent("Rules/\(f)"), to: dir.appendingPathComponent(f))
        }
        func edit(_ file: String, _ from: String, _ to: String) throws {
            let url = dir.appendingPathComponent(file)
            let text = try String(contentsOf: url, encoding: .utf8)
            XCTAssertTrue(text.contains(from), "\(file) holds \(from)")
            try text.replacingOccurrences(of: from, with: to).write(to: url, atomically: true, encoding: .utf8)
        }
        let stage = HostDetectorSet(plan: plan, emitter: emitter(AlertLog()))
        let logger = Logger(label: "test")
        try edit("c2.yaml", "  threshold: 40\n", "  threshold: 55\n")
        try edit("beaconing.yaml", "  threshold: 0.8\n", "  threshold: 0.9\n")
        try edit("lateral-movement.yaml", "  distinct_hosts: 10\n", "  distinct_hosts: 25\n")
        stage.reload(RulesSnapshot(generation: 1, directory: dir.path, documents: [:]), logger: logger, shard: 0)
        XCTAssertEqual(stage.portDetector.rules.threshold, 55)
        XCTAssertEqual(stage.beaconDetector.rules.threshold, 0.9)
        XCTAssertEqual(stage.lateral?.rules.fanOutDistinctHosts, 25)
        XCTAssertEqual(stage.counters.reloads, 1)
        // Switching a detector off or on takes a restart (the workers' facts were chosen at start).
        try edit("beaconing.yaml", "  enabled: true\n", "  enabled: false\n")
        stage.reload(RulesSnapshot(generation: 2, directory: dir.path, documents: [:]), logger: logger, shard: 0)
        XCTAssertTrue(stage.beaconDetector.rules.enabled)
        // A broken lateral-movement file: that detector keeps 25, the others take their new values.
        try edit("lateral-movement.yaml", "  distinct_hosts: 25\n", "  distinct_hosts: [\n")
        try edit("c2.yaml", "  threshold: 55\n", "  threshold: 60\n")
        stage.reload(RulesSnapshot(generation: 3, directory: dir.path, documents: [:]), logger: logger, shard: 0)
        XCTAssertEqual(stage.lateral?.rules.fanOutDistinctHosts, 25)
        XCTAssertEqual(stage.portDetector.rules.threshold, 60)
    }
}
