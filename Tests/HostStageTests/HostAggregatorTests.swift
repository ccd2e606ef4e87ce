import Analyzers
import Foundation
import Detectors
import Events
import Logging
import PacketCore
import ConfigKit
@testable import HostStage
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

    /// Port, beacon and lateral-movement detectors with their default rules (as the C2 and lateral families register them).
    let detectors = [
        HostDetectorFactory(name: "nonstandard_port_c2") { NonStandardPortDetector(rules: C2PortRules(), emitter: $0) },
        HostDetectorFactory(name: "beaconing") { BeaconDetector(rules: BeaconRules(), emitter: $0) },
        HostDetectorFactory(name: "lateral_movement") { LateralMovementDetector(rules: LateralMovementRules(), emitter: $0) },
    ]
    var wanted: HostFactKinds { HostFactKinds(rawValue: detectors.reduce(0) { $0 | $1.facts.rawValue }) }
    func inline(_ log: AlertLog) -> HostFactPublisher {
        HostFactPublisher(route: .inline(HostDetectorSet(factories: detectors, emitter: emitter(log))), wanted: wanted)
    }

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
        s.append((0, t(22), { $0.observe(.write(share: "ADMIN$", name: longName), on: smb, at: t(22)) }))
        let svcctl = RPCInterface(uuid: "367abb81-9844-35f1-ad32-98f038001003")
        s.append((1, t(23), { $0.observe(.rpcCall(interface: svcctl, opnum: 12, pipe: "svcctl"), on: smb, at: t(23)) }))
        // Unrelated traffic keeps both clocks moving.
        for i in 24...40 { s.append((i % 2, t(Double(i)), { _ in })) }
        return s
    }

    /// A file name longer than a record carries: cut to `HostFactWriter.maxString` bytes inline as
    /// through the rings.
    static let longName = String(repeating: "x", count: HostFactWriter.maxString + 100) + ".exe"

    func describe(_ alerts: [Alert]) -> [String] {
        alerts.map { "\($0.timestamp) \($0.ruleID) \($0.source.map { "\($0.ip)" } ?? "-") \($0.message)" }.sorted()
    }

    /// One pipeline: the stage inline (what replay runs).
    func reference() -> [Alert] {
        let log = AlertLog()
        let w = FakeWorker(inline(log))
        for (_, t, fact) in Self.scenario { w.at(t, fact) }
        w.finish()
        return log.alerts
    }

    /// Two workers, each with a ring per shard, and `shards` aggregators reading them.
    func stage(shards: Int, log: AlertLog) -> (rings: [[SPSCByteRing]], workers: [FakeWorker], aggregators: [HostAggregator]) {
        let rings = (0..<2).map { _ in (0..<shards).map { _ in SPSCByteRing(capacity: 64 << 10) } }
        let marks = (0..<2).map { _ in WorkerWatermark() }
        let workers = (0..<2).map { FakeWorker(HostFactPublisher(route: .rings(rings[$0], marks[$0]), wanted: wanted)) }
        let aggregators = (0..<shards).map { s in
            HostAggregator(shard: s, rings: rings.map { $0[s] }, marks: marks, detectors: detectors, emitter: emitter(log))
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
        let transfer = expected.first { $0.ruleID == "lateral_movement.tool_transfer_execution" }?.message ?? ""
        XCTAssertTrue(transfer.contains("ADMIN$\\" + String(repeating: "x", count: HostFactWriter.maxString) + " on "), transfer)
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
                workers[1].at(Self.t(300)) { $0.flowEnded(flow, reason: .tcpClosed, labels: FlowLabels()) }
                for w in workers { w.finish() }
                for a in aggregators { a.drain(); a.finish() }
                let judged = aggregators.reduce(0) { $0 + $1.stage.detector(NonStandardPortDetector.self)!.counters.judged }
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
            FakeWorker(inline(log))
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
        let busy = FakeWorker(HostFactPublisher(route: .rings(rings[0], marks[0]), wanted: wanted))
        let quiet = HostFactPublisher(route: .rings(rings[1], marks[1]), wanted: wanted)
        let log = AlertLog()
        let agg = HostAggregator(shard: 0, rings: [rings[0][0], rings[1][0]], marks: marks, detectors: detectors, emitter: emitter(log))
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

    /// Records with equal stamps from two workers are applied in worker order, whichever was published
    /// first: a worker whose watermark equals a queued stamp may still push a record with that stamp, so
    /// a higher worker's record waits for it (what made two-worker replays differ between runs).
    func testEqualStampsGoInWorkerOrderWhateverArrivesFirst() {
        let rings = (0..<2).map { _ in [SPSCByteRing(capacity: 64 << 10)] }
        let marks = (0..<2).map { _ in WorkerWatermark() }
        let workers = (0..<2).map { HostFactPublisher(route: .rings(rings[$0], marks[$0]), wanted: wanted) }
        let agg = HostAggregator(shard: 0, rings: [rings[0][0], rings[1][0]], marks: marks, detectors: detectors, emitter: emitter(AlertLog()))
        workers[1].tick(Self.t(5))
        workers[0].tick(Self.t(4))
        XCTAssertEqual(agg.drain(), 1, "worker 0's record at 4 only: worker 0 may still send one at 5")
        workers[0].tick(Self.t(5))
        XCTAssertEqual(agg.drain(), 1, "worker 0's record at 5 goes first; worker 1's waits for worker 0 to pass 5")
        XCTAssertEqual(agg.applied, [2, 0])
        workers[0].tick(Self.t(6))
        XCTAssertEqual(agg.drain(), 1)
        XCTAssertEqual(agg.applied, [2, 1])
        for w in workers { w.finish(Self.t(6)) }
        XCTAssertEqual(agg.drain(), 1)
        XCTAssertTrue(agg.exhausted)
    }

    /// Long strings are cut at a UTF-8 boundary, never mid-character; a damaged record is counted, not applied.
    func testCodecCutsStringsAtCharactersAndCountsDamage() {
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: HostFactWriter.capacity, alignment: 16)
        defer { buffer.deallocate() }
        var w = HostFactWriter(base: buffer)
        w.reset(stamp: 0, kind: .remoteAccess)
        let long = String(repeating: "é", count: 400)  // 800 bytes
        w.string(long)
        var r = HostFactReader(w.bytes)
        _ = r.i64(); _ = r.u8()
        XCTAssertEqual(r.string(), String(repeating: "é", count: 256))
        let stage = HostDetectorSet(factories: detectors, emitter: emitter(AlertLog()))
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
        let stage = HostDetectorSet(factories: detectors, emitter: emitter(AlertLog()))
        let logger = Logger(label: "test")
        let kinds: [any RulesDocument.Type] = [C2PortRules.self, BeaconRules.self, LateralMovementRules.self]
        try edit("c2.yaml", "  threshold: 40\n", "  threshold: 55\n")
        try edit("beaconing.yaml", "  threshold: 0.8\n", "  threshold: 0.9\n")
        try edit("lateral-movement.yaml", "  distinct_hosts: 10\n", "  distinct_hosts: 25\n")
        stage.reload(try RulesSet.load(directory: dir.path, kinds: kinds, generation: 1), logger: logger, shard: 0)
        XCTAssertEqual(stage.detector(NonStandardPortDetector.self)?.rules.threshold, 55)
        XCTAssertEqual(stage.detector(BeaconDetector.self)?.rules.threshold, 0.9)
        XCTAssertEqual(stage.detector(LateralMovementDetector.self)?.rules.fanOutDistinctHosts, 25)
        XCTAssertEqual(stage.counters.reloads, 1)
        // Switching a detector off or on takes a restart (the workers' facts were chosen at start).
        try edit("beaconing.yaml", "  enabled: true\n", "  enabled: false\n")
        stage.reload(try RulesSet.load(directory: dir.path, kinds: kinds, generation: 2), logger: logger, shard: 0)
        XCTAssertEqual(stage.detector(BeaconDetector.self)?.rules.enabled, true)
        // A broken file rejects the whole set before any detector sees it (the reloader posts nothing).
        try edit("lateral-movement.yaml", "  distinct_hosts: 25\n", "  distinct_hosts: [\n")
        try edit("c2.yaml", "  threshold: 55\n", "  threshold: 60\n")
        XCTAssertThrowsError(try RulesSet.load(directory: dir.path, kinds: kinds, generation: 3)) { e in
            XCTAssertTrue("\(e)".contains("lateral-movement.yaml"), "\(e)")
        }
        XCTAssertEqual(stage.detector(NonStandardPortDetector.self)?.rules.threshold, 55)
    }
}
