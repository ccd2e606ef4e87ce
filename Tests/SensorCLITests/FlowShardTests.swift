import Foundation
import TestSupport
import XCTest

/// `replay --flow-shard I/N`: N processes over the same captures see disjoint flows whose events,
/// together, are the events of one full replay (per-flow events and single-flow alerts; the cross-flow
/// detectors' alerts are whole only when the shards' host facts meet in `sensor aggregate`).
final class FlowShardTests: XCTestCase {
    /// The categories the host stage decides (each shard alone sees only part of a host's flows).
    static let hostCategories = ["beaconing", "lateral_movement", "dns_tunneling", "nonstandard_port_c2"]

    /// Every event line but `spanwatch.stats` and host-stage alerts, and the number of packets processed.
    func perFlowEvents(_ args: [String]) throws -> (events: [String], packets: Int) {
        let r = try TestSupport.sensor(["replay"] + args + ["--log-level", "error"])
        XCTAssertEqual(r.status, 0, r.stderr)
        var events: [String] = []
        var packets = 0
        for line in r.lines {
            let o = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], line)
            let vendor = o["spanwatch"] as? [String: Any] ?? [:]
            if let stats = vendor["stats"] as? [String: Any] { packets += stats["packets"] as? Int ?? 0; continue }
            if Self.hostCategories.contains(where: { vendor[$0] != nil }) { continue }
            events.append(line)
        }
        return (events.sorted(), packets)
    }

    func testShardsTogetherGiveTheFullReplay() throws {
        var files: [String] = []
        for dir in ["beacon", "dns-tunnel", "lateral"] { files += TestSupport.captures(dir) }
        XCTAssertGreaterThan(files.count, 10)
        let full = try perFlowEvents(files)
        XCTAssertGreaterThan(full.events.count, 100)
        for n in [2, 3] {
            var union: [String] = []
            var packets = 0
            for i in 0..<n {
                let part = try perFlowEvents(files + ["--flow-shard", "\(i)/\(n)"])
                XCTAssertLessThan(part.events.count, full.events.count, "shard \(i)/\(n) saw every flow")
                union += part.events
                packets += part.packets
            }
            XCTAssertEqual(packets, try XCTUnwrap(full.packets), "\(n) shards: packets processed")
            let a = Set(full.events), b = Set(union)
            XCTAssertEqual(union.sorted(), full.events,
                           "\(n) shards: only in shards \(b.subtracting(a).sorted().prefix(2)); only in full \(a.subtracting(b).sorted().prefix(2))")
        }
    }

    func testWorkersWithinAShard() throws {
        let files = TestSupport.captures("lateral")
        let one = try perFlowEvents(files + ["--flow-shard", "1/2"])
        let two = try perFlowEvents(files + ["--flow-shard", "1/2", "--workers", "2"])
        XCTAssertEqual(one.packets, two.packets)
        XCTAssertEqual(one.events, two.events)
    }

    func testMalformedShardIsAUsageError() throws {
        for bad in ["2/2", "1", "a/b", "0/0"] {
            let r = try TestSupport.sensor(["replay", "--flow-shard", bad, TestSupport.captures("beacon")[0]])
            XCTAssertEqual(r.status, 64, "\(bad): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("--flow-shard"), r.stderr)
        }
    }
}
