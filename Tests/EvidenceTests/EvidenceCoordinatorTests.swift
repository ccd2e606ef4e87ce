import Capture
import Events
import Foundation
import Logging
import PacketCore
import SensorRuntime
import TestSupport
import XCTest
@testable import Evidence

/// Several workers on one coordinator, as `sensor run --workers N` wires them: a real pipeline per
/// worker with its own emitter (one shared sink), real captures dealt out packet by packet (so every
/// host pair's packets land on every worker), and an emitter standing for a host-level aggregator.
final class MultiWorkerHarness {
    let work: URL
    let evidenceDir: URL
    let key: AgeKey
    let sink = CollectingSink()
    let store: EvidenceStore
    let coordinator: EvidenceCoordinator
    let managers: [EvidenceManager]
    let pipelines: [Pipeline]
    /// Raises alerts as a host-level aggregator does (its own emitter, observed by the coordinator).
    let aggregator: EventEmitter

    init(workers: Int, triggers: [EvidenceTrigger], configure: (inout EvidenceConfiguration) -> Void = { _ in }) throws {
        work = try TestSupport.temporaryDirectory("evidence-multi")
        evidenceDir = work.appendingPathComponent("evidence")
        key = try AgeKey.generate(in: work)
        var c = EvidenceConfiguration()
        c.directory = evidenceDir.path
        c.recipients = [key.recipient]
        c.authorization = Harness.authorization
        c.lookbackBytes = 8 << 20
        c.lookbackSeconds = 60
        configure(&c)
        store = try EvidenceStore(configuration: c, sensorName: "test-sensor", hostname: "test-host")
        var logger = Logger(label: "evidence-multi")
        logger.logLevel = .critical
        coordinator = EvidenceCoordinator(store: store, triggers: triggers, logger: logger)
        var ms: [EvidenceManager] = [], ps: [Pipeline] = []
        for _ in 0..<workers {
            let emitter = EventEmitter(observer: ObserverInfo(name: "test-sensor", hostname: "test-host"), sinks: [sink])
            let m = try EvidenceManager(coordinator: coordinator, emitter: emitter, logger: logger)
            m.observeAlerts(of: emitter)
            ms.append(m)
            ps.append(Pipeline(flows: FlowTableConfiguration(), emitter: emitter, analyzers: [m]))
        }
        managers = ms
        pipelines = ps
        aggregator = EventEmitter(observer: ObserverInfo(name: "test-sensor", hostname: "test-host"), sinks: [sink])
        coordinator.observeAlerts(of: aggregator)
    }

    deinit { try? FileManager.default.removeItem(at: work) }

    var custodyLog: String { evidenceDir.appendingPathComponent("custody.jsonl").path }

    /// Packet i goes to worker i mod N. Each alert is raised right after the first packet at or past its
    /// time, on the worker that packet went to (`nil`) or on the aggregator's emitter (`true`).
    func replay(_ path: String, alerts: [(Alert, fromAggregator: Bool)], finish: Bool = true) throws {
        let r = try PcapFileReader(path: path)
        var pending = alerts.sorted { $0.0.timestamp < $1.0.timestamp }
        var i = 0
        while let p = try r.next() {
            let w = i % pipelines.count
            i += 1
            pipelines[w].process(p)
            while let a = pending.first, p.timestamp >= a.0.timestamp {
                pending.removeFirst()
                (a.fromAggregator ? aggregator : pipelines[w].emitter).emit(a.0)
            }
        }
        for a in pending { (a.fromAggregator ? aggregator : pipelines[0].emitter).emit(a.0) }
        if finish { for p in pipelines { p.finish(emitStats: false) } }
    }

    var outcomes: [[String: Any]] { sink.dataset("spanwatch.evidence") }
}

final class EvidenceCoordinatorTests: XCTestCase {
    override func setUpWithError() throws { try EvidenceChecks.requireTools() }

    static func trigger(duration: Double = 30, maxBytes: Int = 64 << 20) -> EvidenceTrigger {
        EvidenceTrigger(name: "c2-test", categories: ["nonstandard_port_c2", "beaconing"], minimumSeverity: .medium,
                        scope: .hostPair, duration: .seconds(duration), lookback: .seconds(60), maxBytes: maxBytes)
    }

    /// An alert of the host-level stage (raised on neither worker) gives one file holding both workers'
    /// packets of the pair, merged in time order: exactly tcpdump's cut of the source over its window;
    /// one custody entry, one `created` event. A second alert, raised on a worker, extends that capture
    /// for both workers: the file runs past the first alert's end, still exactly tcpdump's cut.
    func testOneFilePerAlertFromEveryWorkerAndExtensionReachesEveryWorker() throws {
        // A capture from t1 whose end falls in a gap of the pair's traffic, before its next packet tx; the
        // second alert comes after a packet inside the capture late enough that its end passes tx. The
        // first capture (of the beacon and C2 sets) with such a gap is used.
        var found: (source: String, pair: (a: IPAddress, b: IPAddress, sport: UInt16, dport: UInt16, proto: UInt8, alertAt: Timestamp),
                    t1: Int64, t2: Int64, duration: Double, firstEnd: Int64)?
        for source in TestSupport.captures("beacon") + TestSupport.captures("c2-nonstd-port") where found == nil {
            let pair = try EvidenceChecks.busiestPair(source)
            let times = try StoredPacket.read(source, filter: "ip host \(pair.a) and ip host \(pair.b)").map(\.timestamp)
            let all = try StoredPacket.read(source).map(\.timestamp)
            for j in (times.count / 4)..<max(times.count / 4, times.count - 1) where found == nil {
                guard let tx = times[(j + 1)...].first(where: { $0 > times[j] + 300_000_000 }), tx - times[j] < 60_000_000_000 else { continue }
                let gap = tx - times[j]
                let d = gap * 3 / 4
                guard let t2 = all.first(where: { $0 >= times[j] + gap * 3 / 10 && $0 < times[j] + d }) else { continue }
                found = (source, pair, times[j], t2, Double(d) / 1e9, times[j] + d)
            }
        }
        let p = try XCTUnwrap(found, "no capture with a gap to extend over")
        let source = p.source, pair = p.pair
        let t1 = Timestamp(nanoseconds: p.t1), t2 = Timestamp(nanoseconds: p.t2)
        let duration = p.duration, firstEnd = p.firstEnd
        let h = try MultiWorkerHarness(workers: 2, triggers: [Self.trigger(duration: duration)])
        let first = Harness.alert(pair, at: t1)
        let second = Harness.alert(pair, at: t2, rule: "test-evidence-hook-2")
        try h.replay(source, alerts: [(first, true), (second, false)])

        let c = h.coordinator.counters
        XCTAssertEqual(c.capturesOpened, 1)
        XCTAssertEqual(c.capturesExtended, 1)
        XCTAssertEqual(c.capturesClosed, 1)
        XCTAssertEqual(h.managers.map { $0.counters.partsJoined }, [1, 1])
        XCTAssertTrue(h.managers.allSatisfy { $0.counters.packetsWritten > 0 }, "both workers wrote their share")
        let entries = try EvidenceChecks.custodyEntries(h.custodyLog)
        XCTAssertEqual(entries.count, 1)
        XCTAssertEqual(entries[0]["workers"] as? Int, 2)
        XCTAssertEqual((entries[0]["alerts"] as? [[String: Any]])?.compactMap { $0["id"] as? String }, [first.id, second.id])
        let packets = try EvidenceChecks.verify(entry: entries[0], evidenceDir: h.evidenceDir, source: source, key: h.key, work: h.work,
                                                expectComments: ["alert \(first.id)"])
        XCTAssertEqual(packets.map(\.timestamp), packets.map(\.timestamp).sorted(), "time order")
        XCTAssertGreaterThan(try XCTUnwrap(packets.last).timestamp, firstEnd, "the extension reached both workers")
        XCTAssertLessThan(try XCTUnwrap(packets.first).timestamp, t1.nanoseconds, "lookback from both rings")
        // Both workers' packets: packet i went to worker i mod 2, and the file has neighbours from each.
        XCTAssertEqual(packets.count, (entries[0]["packets"] as? NSNumber)?.intValue)
        let events = h.outcomes
        XCTAssertEqual(events.count, 1, "one outcome event")
        XCTAssertEqual(TestSupport.value(events[0], "spanwatch.evidence.alert_ids") as? [String], [first.id, second.id])
        XCTAssertEqual(TestSupport.value(events[0], "event.outcome") as? String, "success")
        XCTAssertEqual(h.store.openSlots, 0)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: h.evidenceDir.path).filter { $0.hasSuffix(".partial") }, [])
        XCTAssertNil(CustodyVerifier.verify(path: h.custodyLog).firstProblem)
    }

    /// The size cap is one budget for all workers: the file stays within it (the reservation), closes
    /// with `size_cap`, and what it holds is still in scope and in time order.
    func testSizeCapIsSharedByWorkers() throws {
        let source = try XCTUnwrap(TestSupport.captures("beacon").first { $0.hasSuffix("wmi_to_powershell_empire.pcap") })
        let pair = try EvidenceChecks.busiestPair(source)
        let cap = 16_384
        let h = try MultiWorkerHarness(workers: 2, triggers: [Self.trigger(maxBytes: cap)])
        try h.replay(source, alerts: [(Harness.alert(pair), true)])
        let entries = try EvidenceChecks.custodyEntries(h.custodyLog)
        XCTAssertEqual(entries.count, 1)
        XCTAssertEqual(entries[0]["close_reason"] as? String, "size_cap")
        let bytes = try XCTUnwrap((entries[0]["file_bytes"] as? NSNumber)?.intValue)
        XCTAssertLessThanOrEqual(bytes, cap)
        // Each worker alone would have stayed under the cap with what it wrote; together they filled it.
        XCTAssertGreaterThan(bytes, cap / 2)
        XCTAssertTrue(h.managers.allSatisfy { $0.counters.packetsWritten > 0 })
        let plain = h.work.appendingPathComponent("capped.pcapng").path
        try h.key.decrypt(h.evidenceDir.appendingPathComponent(entries[0]["file"] as! String).path, to: plain)
        let packets = try StoredPacket.read(plain)
        XCTAssertEqual(packets.count, (entries[0]["packets"] as? NSNumber)?.intValue)
        XCTAssertEqual(packets.map(\.timestamp), packets.map(\.timestamp).sorted())
        let scope = try XCTUnwrap((entries[0]["scope"] as? [String: Any])?["bpf"] as? String)
        let inScope = try StoredPacket.read(source, filter: scope)
        for p in packets { XCTAssertTrue(inScope.contains(p), "in scope: \(p)") }
        XCTAssertEqual(h.store.diskUsage, bytes, "the reservation's unused part was given back")
        XCTAssertEqual(h.outcomes.count, 1)
    }

    /// A global cap refuses once per alert, whichever worker raised it: one count, one `denied` event.
    func testRefusalIsDecidedOnce() throws {
        let source = try XCTUnwrap(TestSupport.captures("beacon").first { $0.hasSuffix("wmi_to_powershell_empire.pcap") })
        let pair = try EvidenceChecks.busiestPair(source)
        let other = Harness.alert((pair.a, IPAddress(ipv4: 0x0A00_0063), 1, 2, IPProtocol.tcp, pair.alertAt))
        let h = try MultiWorkerHarness(workers: 3, triggers: [Self.trigger()]) { $0.maxConcurrentCaptures = 1 }
        try h.replay(source, alerts: [(Harness.alert(pair), false), (other, false)])
        XCTAssertEqual(h.coordinator.counters.refusedConcurrency, 1)
        XCTAssertEqual(h.store.counters.refusedConcurrency, 1)
        XCTAssertEqual(h.coordinator.counters.capturesClosed, 1)
        let refused = h.outcomes.filter { TestSupport.value($0, "event.outcome") as? String == "failure" }
        XCTAssertEqual(refused.count, 1)
        XCTAssertEqual(TestSupport.value(refused[0], "spanwatch.evidence.refused") as? String, "concurrency_cap")
        XCTAssertEqual(TestSupport.value(refused[0], "spanwatch.evidence.alert_ids") as? [String], [other.id])
        XCTAssertEqual(h.outcomes.count, 2, "one outcome per alert")
        XCTAssertEqual(try EvidenceChecks.custodyEntries(h.custodyLog).count, 1)
    }

    /// No worker has a packet in scope: no file, no custody entry, one `denied no_packets_in_scope` event
    /// (not one per worker), the slot given back.
    func testEmptyCaptureGivesOneDeniedEvent() throws {
        let source = try XCTUnwrap(TestSupport.captures("c2-nonstd-port").first { $0.hasSuffix("http_on_sip_port.pcap") })
        let pair = try EvidenceChecks.busiestPair(source)
        let h = try MultiWorkerHarness(workers: 4, triggers: [Self.trigger()])
        let alert = Harness.alert((IPAddress(ipv4: 0xC000_0201), IPAddress(ipv4: 0xC000_0202), 1, 2, IPProtocol.tcp, pair.alertAt))
        try h.replay(source, alerts: [(alert, true)])
        XCTAssertEqual(h.coordinator.counters.capturesOpened, 1)
        XCTAssertEqual(h.coordinator.counters.emptyDiscarded, 1)
        XCTAssertEqual(h.managers.map { $0.counters.partsJoined }, [1, 1, 1, 1])
        let events = h.outcomes
        XCTAssertEqual(events.count, 1)
        XCTAssertEqual(TestSupport.value(events[0], "event.reason") as? String, "no_packets_in_scope")
        XCTAssertEqual(TestSupport.value(events[0], "spanwatch.evidence.alert_ids") as? [String], [alert.id])
        XCTAssertEqual((try? String(contentsOfFile: h.custodyLog, encoding: .utf8)) ?? "", "")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: h.evidenceDir.path), ["custody.jsonl"])
        XCTAssertEqual(h.store.diskUsage, 0)
        XCTAssertEqual(h.store.openSlots, 0)
    }

    /// An alert after every worker finished (a host-level detector concluding at shutdown) gets the
    /// lookback of every worker's ring, in one file, counted as such.
    func testAlertAfterEveryWorkerFinishedGetsTheirLookback() throws {
        let source = try XCTUnwrap(TestSupport.captures("c2-nonstd-port").first { $0.hasSuffix("http-on-port-5432.pcap") })
        let pair = try EvidenceChecks.busiestPair(source)
        let h = try MultiWorkerHarness(workers: 2, triggers: [Self.trigger()])
        try h.replay(source, alerts: [])
        let alert = Harness.alert(pair)
        h.aggregator.emit(alert)
        XCTAssertEqual(h.coordinator.counters.afterInput, 1)
        XCTAssertEqual(h.coordinator.counters.capturesClosed, 1)
        XCTAssertEqual(h.coordinator.openCaptures, 0)
        let entries = try EvidenceChecks.custodyEntries(h.custodyLog)
        XCTAssertEqual(entries.count, 1)
        XCTAssertEqual(entries[0]["workers"] as? Int, 2)
        let packets = try EvidenceChecks.verify(entry: entries[0], evidenceDir: h.evidenceDir, source: source, key: h.key, work: h.work,
                                                expectComments: ["alert \(alert.id)"])
        // The whole pair from the lookback start to the capture's end (the rings hold the whole capture).
        let all = try StoredPacket.read(source, filter: "ip host \(pair.a) and ip host \(pair.b)")
        let t = alert.timestamp.nanoseconds
        XCTAssertEqual(packets, all.filter { $0.timestamp >= t - 60_000_000_000 && $0.timestamp <= t + 30_000_000_000 })
        XCTAssertEqual(h.outcomes.count, 1)
    }
}
