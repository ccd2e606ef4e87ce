import Capture
import Detectors
import Events
import Foundation
import HostStage
import Logging
import PacketCore
import SensorRuntime
import TestSupport
import XCTest

/// A detector state saved half-way through a real capture's host facts and restored into fresh
/// detectors decides the second half as the detectors that saw everything did (`sensor aggregate`'s
/// checkpoints), for each of the four cross-flow detectors and through a partition's merge; and
/// checkpoint bytes that are not a checkpoint are an error, never a crash.
final class CheckpointRoundTripTests: XCTestCase {
    /// Every field an analyst sees of an alert (its `event.id` is a hash of these).
    static func describe(_ a: Alert) -> String {
        "\(a.ruleID) \(a.timestamp) \(a.source.map { "\($0.ip)" } ?? "-") \(a.destination.map { "\($0.ip):\($0.port ?? 0)" } ?? "-") risk \(a.riskScore) \(a.message)"
    }

    let configuration = SensorConfiguration()
    lazy var resources: SensorResources = try! SensorResources(configuration: configuration, logger: Logger(label: "test"))

    func emitter(_ out: @escaping (String) -> Void) -> EventEmitter {
        let e = EventEmitter(observer: ObserverInfo(name: "test"), sinks: [ShardedReplayTests.Collector()], homeNetworks: NetworkSet(configuration.homeNetworks),
                             flowEventsEnabled: false)
        e.alertObservers.append { out(Self.describe($0)) }
        return e
    }

    /// The host-fact records one worker sends for `files`, in its order (the bytes a partition's merge applies).
    func records(_ files: [String]) throws -> [[UInt8]] {
        let ring = SPSCByteRing(capacity: 1 << 20)
        let link = HostShardLink(rings: [ring], watermark: WorkerWatermark())
        let workerEmitter = emitter { _ in }
        let pipeline = Pipeline(flows: configuration.flows, emitter: workerEmitter,
                                analyzers: try WorkerAssembly.makeAnalyzers(resources, emitter: workerEmitter, hostRoute: .rings(link),
                                                                            logger: Logger(label: "test")))
        var out: [[UInt8]] = []
        func take() { while let r = ring.peek() { out.append(Array(r)); ring.pop() } }
        let source = try MergedFileSource(paths: files)
        while case .delivered = try source.dispatchOrIdle(maxPackets: 64, to: pipeline) { take() }
        pipeline.finish(emitStats: false)
        take()
        XCTAssertEqual(ring.droppedCount, 0)
        return out
    }

    func factory(_ name: String) throws -> [HostDetectorFactory] {
        let f = resources.hostDetectors(resources.rules).filter { $0.name == name }
        XCTAssertEqual(f.count, 1, "no host detector \(name)")
        return f
    }

    /// Alerts of one detector set fed every record, and of one fed `records[..<cut]`, saved, restored
    /// into a fresh set and fed the rest.
    func roundTrip(_ factories: [HostDetectorFactory], _ records: [[UInt8]], cut: Int) throws -> (whole: [String], split: [String]) {
        var whole: [String] = [], split: [String] = []
        let end = Timestamp(nanoseconds: records.last.map { r in r.withUnsafeBytes { $0.loadUnaligned(as: Int64.self) } } ?? 0)
        let all = HostDetectorSet(factories: factories, emitter: emitter { whole.append($0) })
        for r in records { r.withUnsafeBytes { all.apply($0) } }
        all.finish(end)

        let first = HostDetectorSet(factories: factories, emitter: emitter { split.append($0) })
        for r in records[..<cut] { r.withUnsafeBytes { first.apply($0) } }
        var w = StateWriter()
        first.saveState(&w)
        let second = HostDetectorSet(factories: factories, emitter: emitter { split.append($0) })
        var r = StateReader(w.bytes)
        try second.restoreState(&r)
        XCTAssertTrue(r.isAtEnd)
        // Saved again, the restored state writes as many bytes (dictionary order may differ).
        var again = StateWriter()
        second.saveState(&again)
        XCTAssertEqual(again.bytes.count, w.bytes.count)
        for rec in records[cut...] { rec.withUnsafeBytes { second.apply($0) } }
        second.finish(end)
        return (whole.sorted(), split.sorted())
    }

    func checkDetector(_ name: String, captures: String) throws {
        let recs = try records(TestSupport.captures(captures))
        XCTAssertGreaterThan(recs.count, 100)
        let f = try factory(name)
        for cut in [recs.count / 4, recs.count / 2, recs.count * 3 / 4] {
            let (whole, split) = try roundTrip(f, recs, cut: cut)
            XCTAssertFalse(whole.isEmpty, "\(name) should alert on the \(captures) captures")
            XCTAssertEqual(split, whole, "\(name), cut at record \(cut) of \(recs.count)")
        }
    }

    func testBeaconDetectorStateRoundTrip() throws { try checkDetector("beaconing", captures: "beacon") }
    func testLateralMovementDetectorStateRoundTrip() throws { try checkDetector("lateral_movement", captures: "lateral") }
    func testDNSTunnelDetectorStateRoundTrip() throws { try checkDetector("dns_tunneling", captures: "dns-tunnel") }
    func testNonStandardPortDetectorStateRoundTrip() throws { try checkDetector("nonstandard_port_c2", captures: "c2-nonstd-port") }

    // MARK: Through a partition's merge

    /// The records as two producers' envelopes on one partition, interleaved in blocks so the merge
    /// applies them out of offset order; a watermark of each producer first, its end record last.
    static func partitionLog(_ records: [[UInt8]]) -> [[UInt8]] {
        let producers = (0..<2).map { HostFactEnvelope.Producer(sensor: "s\($0)", session: 7, worker: UInt16($0)) }
        func envelope(_ type: HostFactEnvelope.RecordType, _ mark: Int64, _ p: HostFactEnvelope.Producer, _ record: [UInt8]) -> [UInt8] {
            var b = [UInt8](repeating: 0, count: HostFactEnvelope.maxHeader)
            let n = b.withUnsafeMutableBytes { HostFactEnvelope.writeHeader($0.baseAddress!, type: type, watermark: mark, producer: p) }
            return Array(b[..<n]) + record
        }
        var streams: [[[UInt8]]] = [[], []]
        for (i, r) in records.enumerated() {
            let stamp = r.withUnsafeBytes { $0.loadUnaligned(as: Int64.self) }
            streams[i / 50 % 2].append(envelope(.fact, stamp, producers[i / 50 % 2], r))
        }
        // Both producers announce themselves first (as `replay` does at its start), so the merge waits for both.
        var log: [[UInt8]] = producers.map { envelope(.watermark, .min, $0, []) }
        var next = [0, 0]
        // Producer 0 runs ahead by blocks of 120 records, producer 1 by 70: offsets do not follow stamps.
        while next[0] < streams[0].count || next[1] < streams[1].count {
            for (p, block) in [(0, 120), (1, 70)] {
                let upTo = min(streams[p].count, next[p] + block)
                log += streams[p][next[p]..<upTo]
                next[p] = upTo
            }
        }
        for p in producers { log.append(envelope(.end, .max, p, [])) }
        return log
    }

    func merge(_ factories: [HostDetectorFactory], _ out: @escaping (String) -> Void) -> HostFactPartitionMerge {
        HostFactPartitionMerge(partition: 3, detectors: factories, emitter: emitter(out), ringBytes: 1 << 20, lateness: .seconds(1))
    }

    /// Offers `log[from..<to]`, draining as it goes: the first record at `start`, the others (and the
    /// drains) when the gathering hold is over, so no producer looks quiet.
    func feed(_ m: HostFactPartitionMerge, _ log: [[UInt8]], from: Int, to: Int, start: ContinuousClock.Instant) {
        let now = start + .seconds(2)
        for i in from..<to {
            log[i].withUnsafeBytes { m.offer($0, offset: Int64(i), now: i == 0 ? start : now) }
            if i % 16 == 15 { m.drain(now: now) }
        }
        m.drain(now: now)
    }

    func testPartitionMergeCheckpointResumesWithoutLossOrRepeat() throws {
        let recs = try records(["beacon", "lateral", "dns-tunnel", "c2-nonstd-port"].flatMap { TestSupport.captures($0) })
        let log = Self.partitionLog(recs)
        let factories = resources.hostDetectors(resources.rules)
        let start = ContinuousClock.now

        var whole: [String] = []
        let all = merge(factories) { whole.append($0) }
        feed(all, log, from: 0, to: log.count, start: start)
        XCTAssertTrue(all.isIdle, "every producer ended: the stream concluded")
        XCTAssertEqual(all.counters.late, 0)
        let categories = Set(whole.map { String($0.split(separator: ".")[0]) })
        XCTAssertEqual(categories, ["beaconing", "lateral_movement", "dns_tunneling", "nonstandard_port_c2"])

        // `feed` reads on 2 s after `start`. The last restore is that long before it (beyond the 1 s
        // lateness bound), as when a member reads the checkpoints of all its new partitions first, one
        // after another: that time does not make a producer quiet.
        for (cut, restoredAt) in [(log.count / 3, start + .seconds(2)), (log.count * 2 / 3, start + .seconds(2)), (log.count / 2, start)] {
            var split: [String] = []
            let first = merge(factories) { split.append($0) }
            feed(first, log, from: 0, to: cut, start: start)
            let c = first.checkpoint()
            XCTAssertLessThan(c.resumeOffset, Int64(cut), "records read but not yet applied are read again")
            let second = merge(factories) { split.append($0) }
            let resume = try second.restore(c.bytes, now: restoredAt)
            XCTAssertEqual(resume, c.resumeOffset)
            XCTAssertEqual(second.facts, first.facts)
            feed(second, log, from: Int(resume), to: log.count, start: start)
            XCTAssertTrue(second.isIdle)
            XCTAssertEqual(second.facts, all.facts, "each fact applied once: cut at \(cut)")
            XCTAssertEqual(second.counters.records, all.counters.records, "records read again are not counted again")
            XCTAssertEqual(second.counters.quietProducers, 0, "a producer taken for quiet before its records were read: cut at \(cut)")
            XCTAssertEqual(second.counters.late, 0)
            XCTAssertEqual(split.sorted(), whole.sorted(), "cut at \(cut) of \(log.count)")
        }
    }

    /// Garbage, truncations and bytes changed under a recomputed checksum: refused (or, when the
    /// change still decodes, restored and run) — never a crash.
    func testHostileCheckpointBytesAreAnErrorNotACrash() throws {
        let recs = try records(TestSupport.captures("lateral") + TestSupport.captures("dns-tunnel"))
        let log = Self.partitionLog(recs)
        let factories = resources.hostDetectors(resources.rules)
        let start = ContinuousClock.now
        let m = merge(factories) { _ in }
        feed(m, log, from: 0, to: log.count / 2, start: start)
        let good = m.checkpoint().bytes
        XCTAssertNoThrow(try merge(factories) { _ in }.restore(good, now: start))

        func fnv(_ b: ArraySlice<UInt8>) -> [UInt8] {
            var h: UInt64 = 0xcbf2_9ce4_8422_2325
            for x in b { h = (h ^ UInt64(x)) &* 0x100_0000_01b3 }
            return withUnsafeBytes(of: h.littleEndian) { Array($0) }
        }
        var rng = SystemRandomNumberGenerator()
        var refused = 0, accepted = 0
        for i in 0..<60 {
            var bytes: [UInt8]
            switch i % 3 {
            case 0: bytes = (0..<Int.random(in: 0...4096, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            case 1: bytes = Array(good[..<Int.random(in: 0..<good.count, using: &rng)])
            default:
                // Changed bytes in the body, with a checksum that matches them (a hostile writer's record).
                bytes = Array(good.dropLast(8))
                for _ in 0..<Int.random(in: 1...8, using: &rng) {
                    bytes[Int.random(in: 3..<bytes.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                }
                bytes += fnv(bytes[...])
            }
            do {
                let fresh = merge(factories) { _ in }
                let resume = try fresh.restore(bytes, now: start + .seconds(2))
                accepted += 1
                let from = Int(max(0, min(resume, Int64(log.count))))
                feed(fresh, log, from: from, to: min(log.count, from + 400), start: start)
                fresh.finish()
            } catch {
                refused += 1
            }
        }
        // Every garbage record and truncation is refused; an accepted one was a changed value that decodes.
        XCTAssertGreaterThanOrEqual(refused, 40)
        XCTAssertEqual(refused + accepted, 60)
    }
}
