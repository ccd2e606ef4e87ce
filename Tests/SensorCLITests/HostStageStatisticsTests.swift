import Foundation
import TestSupport
import XCTest

/// `spanwatch.stats.host_stage`: the cross-flow detectors' health after a replay of a real beacon capture
/// (test-cc: TLS every ~3 s to one server, ~250 DNS queries), inline (one worker) and through the
/// aggregators (two workers: worker 0's event carries the stages' sum), and a bound reached.
final class HostStageStatisticsTests: XCTestCase {
    let capture = TestSupport.data("pcaps/beacon/test-cc-capture-2.pcap")

    /// The events of a replay: the `spanwatch.stats` events and the alerts.
    func replay(_ extra: [String]) throws -> (stats: [[String: Any]], alerts: [[String: Any]]) {
        let r = try TestSupport.sensor(["replay", "--no-flow-events"] + extra + [capture])
        XCTAssertEqual(r.status, 0, r.stderr)
        let events = try TestSupport.events(r)
        return (events.filter { TestSupport.value($0, "event.dataset") as? String == "spanwatch.stats" },
                events.filter { TestSupport.value($0, "event.kind") as? String == "alert" })
    }

    func int(_ e: [String: Any], _ path: String) -> Int? { TestSupport.value(e, "spanwatch.stats.host_stage." + path) as? Int }

    func testDetectorFiguresAfterABeaconReplay() throws {
        for workers in ["1", "2"] {
            let (stats, alerts) = try replay(["--workers", workers])
            // One event carries the stages' figures (a sum written once, never once per worker).
            let carrying = stats.filter { TestSupport.value($0, "spanwatch.stats.host_stage") != nil }
            XCTAssertEqual(carrying.count, 1, "workers \(workers)")
            let s = try XCTUnwrap(carrying.first)
            if workers == "2" { XCTAssertEqual(TestSupport.value(s, "spanwatch.stats.worker") as? Int, 0) }
            XCTAssertEqual(int(s, "shards"), 1)
            XCTAssertGreaterThan(int(s, "facts") ?? 0, 500)
            XCTAssertEqual(int(s, "undecodable"), 0)
            // Beaconing: the ~23 TLS connections sampled, the pair scored and alerted as the alerts say.
            let beacons = alerts.filter { TestSupport.value($0, "rule.category") as? String == "beaconing" }.count
            XCTAssertEqual(beacons, 1, "workers \(workers)")
            XCTAssertEqual(int(s, "beaconing.alerts"), beacons)
            XCTAssertTrue((20...30).contains(int(s, "beaconing.connections") ?? 0), "\(int(s, "beaconing.connections") ?? -1)")
            XCTAssertGreaterThan(int(s, "beaconing.evaluations") ?? 0, 0)
            XCTAssertTrue((1...16).contains(int(s, "beaconing.pairs") ?? 0))
            XCTAssertEqual(int(s, "beaconing.max_pairs"), 16384)
            XCTAssertEqual(int(s, "beaconing.pairs_evicted"), 0)
            XCTAssertEqual(int(s, "beaconing.samples_dropped"), 0)
            // DNS tunnelling saw each of the capture's 247 queries (`tshark -Y dns.flags.response==0`), judged
            // or allowlisted, and kept its aggregates well inside the bound.
            XCTAssertEqual((int(s, "dns_tunneling.queries") ?? 0) + (int(s, "dns_tunneling.allowlisted") ?? 0)
                           + (int(s, "dns_tunneling.without_domain") ?? 0), 247)
            XCTAssertGreaterThan(int(s, "dns_tunneling.queries") ?? 0, 0)
            XCTAssertEqual(int(s, "dns_tunneling.max_pairs"), 20000)
            XCTAssertEqual(int(s, "dns_tunneling.pairs_evicted"), 0)
            XCTAssertEqual(int(s, "dns_tunneling.alerts"), 0)
            XCTAssertLessThanOrEqual(int(s, "dns_tunneling.pairs") ?? .max, int(s, "dns_tunneling.pairs_created") ?? 0)
            // The other two run and saw nothing of theirs.
            XCTAssertEqual(int(s, "lateral_movement.alerts"), 0)
            XCTAssertEqual(int(s, "lateral_movement.max_pairs"), 65536)
            XCTAssertEqual(int(s, "nonstandard_port_c2.alerts"), 0)
            XCTAssertEqual(int(s, "nonstandard_port_c2.max_pairs"), 65536)
        }
    }

    /// A bound reached shows: with `max_samples: 8` the beacon pair's oldest starts are dropped and counted.
    func testABoundReachedIsCounted() throws {
        let dir = try TestSupport.temporaryDirectory("host-stage-stats")
        defer { try? FileManager.default.removeItem(at: dir) }
        let rules = try TestSupport.rulesCopy(in: dir, editing: "beaconing.yaml", replacing: "  max_samples: 256", with: "  max_samples: 8")
        let (stats, _) = try replay(["--rules", rules.path])
        let s = try XCTUnwrap(stats.first { TestSupport.value($0, "spanwatch.stats.host_stage") != nil })
        XCTAssertGreaterThan(int(s, "beaconing.samples_dropped") ?? 0, 10)
    }
}
