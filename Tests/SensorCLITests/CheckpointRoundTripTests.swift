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

/// A detector state saved part-way through a real capture's host facts and restored into fresh
/// detectors decides the rest as the detectors that saw everything did, for each of the four
/// cross-flow detectors (`sensor aggregate`'s checkpoints).
final class CheckpointRoundTripTests: XCTestCase {
    final class Collector: EventSink, @unchecked Sendable {
        let name = "collector"
        func write(_ json: UnsafeRawBufferPointer, metadata: EventMetadata) {}
        func flush() throws {}
        func close() throws {}
        var statistics: SinkStatistics { SinkStatistics() }
    }

    /// Every field an analyst sees of an alert (its `event.id` is a hash of these).
    static func describe(_ a: Alert) -> String {
        "\(a.ruleID) \(a.timestamp) \(a.source.map { "\($0.ip)" } ?? "-") \(a.destination.map { "\($0.ip):\($0.port ?? 0)" } ?? "-") risk \(a.riskScore) \(a.message)"
    }

    let configuration = SensorConfiguration()
    lazy var resources: SensorResources = try! SensorResources(configuration: configuration, logger: Logger(label: "test"))

    func emitter(_ out: @escaping (String) -> Void) -> EventEmitter {
        let e = EventEmitter(observer: ObserverInfo(name: "test"), sinks: [Collector()], homeNetworks: NetworkSet(configuration.homeNetworks),
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
}
