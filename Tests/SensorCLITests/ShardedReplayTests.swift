import Capture
import Events
import Foundation
import HostStage
import Logging
import PacketCore
@testable import SensorRuntime
import TestSupport
import XCTest

/// Whole captures through the live path's host-level stage — the worker's publisher writing into rings,
/// S aggregators merging and deciding — on one thread with no timing involved, against the inline stage
/// `sensor replay` runs. Every alert must come out the same, for one shard and for three (hosts spread
/// over shards, port popularity and learned domain controllers fed to every shard).
final class ShardedReplayTests: XCTestCase {
    final class Collector: EventSink, @unchecked Sendable {
        let name = "collector"
        func write(_ json: UnsafeRawBufferPointer, metadata: EventMetadata) {}
        func flush() throws {}
        func close() throws {}
        var statistics: SinkStatistics { SinkStatistics() }
    }

    /// One line per alert. Beaconing is scored when the clock ticks, which the merged clock does at a
    /// record's or watermark's time rather than at the first packet of the second, so its figures are
    /// compared by rule and pair only.
    static func describe(_ a: Alert) -> String {
        let base = "\(a.ruleID) \(a.source.map { "\($0.ip)" } ?? "-") \(a.destination.map { "\($0.ip):\($0.port ?? 0)" } ?? "-") \(a.communityID ?? "")"
        return a.category == .beaconing ? base : "\(base) \(a.timestamp) risk \(a.riskScore) \(a.message)"
    }

    func alerts(_ files: [String], shards: Int?) throws -> [String] {
        let c = SensorConfiguration()
        var out: [String] = []
        func emitter() -> EventEmitter {
            let e = EventEmitter(observer: ObserverInfo(name: "test"), sinks: [Collector()], homeNetworks: NetworkSet(c.homeNetworks),
                                 flowEventsEnabled: false)
            e.alertObservers.append { out.append(Self.describe($0)) }
            return e
        }
        let logger = Logger(label: "test")
        let resources = try SensorResources(configuration: c, logger: logger)
        let source = try MergedFileSource(paths: files)
        let workerEmitter = emitter()
        var link: HostShardLink?
        var aggregators: [HostAggregator] = []
        if let shards {
            let rings = (0..<shards).map { _ in SPSCByteRing(capacity: 1 << 20) }
            let mark = WorkerWatermark()
            link = HostShardLink(rings: rings, watermark: mark)
            let detectors = resources.hostDetectors(resources.rules)
            aggregators = (0..<shards).map { HostAggregator(shard: $0, rings: [rings[$0]], marks: [mark], detectors: detectors, emitter: emitter()) }
        }
        let pipeline = Pipeline(flows: c.flows, emitter: workerEmitter,
                                analyzers: try WorkerAssembly.makeAnalyzers(resources, emitter: workerEmitter,
                                                                            hostRoute: link.map { .rings($0) } ?? .inline, logger: logger))
        while case .delivered = try source.dispatchOrIdle(maxPackets: 64, to: pipeline) {
            for a in aggregators { a.drain() }
        }
        pipeline.finish(emitStats: false)
        for a in aggregators {
            a.drain()
            XCTAssertTrue(a.exhausted)
            a.finish()
        }
        if let link { XCTAssertEqual(link.rings.reduce(0) { $0 + $1.droppedCount }, 0) }
        return out.sorted()
    }

    func testShardedStageDecidesAsReplayOnEveryDetectorCapture() throws {
        var files: [String] = []
        for dir in ["lateral", "dns-tunnel", "c2-nonstd-port", "beacon"] { files += TestSupport.captures(dir) }
        files.append(TestSupport.data("pcaps/large/large-mixed-A.pcap"))
        var total = 0
        var rules = Set<String>()
        for f in files {
            let inline = try alerts([f], shards: nil)
            total += inline.count
            for a in inline { rules.insert(String(a.prefix { $0 != " " })) }
            for shards in [1, 3] {
                let got = try alerts([f], shards: shards)
                XCTAssertEqual(got, inline, "\(f), \(shards) shard(s): only sharded: \(Set(got).subtracting(inline).sorted()); only inline: \(Set(inline).subtracting(got).sorted())")
            }
        }
        // Every detector speaks, with many of its rules. (The port rules alert only with evidence beyond
        // the port: the large capture's 144 port alerts became 89, so 139 alerts in all.)
        XCTAssertGreaterThan(total, 120, "the captures must exercise every detector")
        for prefix in ["lateral_movement.", "dns_tunneling.", "nonstandard_port_c2.", "beaconing."] {
            XCTAssertTrue(rules.contains { $0.hasPrefix(prefix) }, "\(prefix): \(rules.sorted())")
        }
        XCTAssertGreaterThanOrEqual(rules.count, 12, "\(rules.sorted())")
    }
}
