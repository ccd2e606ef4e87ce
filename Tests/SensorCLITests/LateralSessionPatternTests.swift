import Foundation
import XCTest
import TestSupport

/// Session-pattern lateral movement through the real binary on hand-built captures: SSH password
/// guessing counted as short sessions, worm-like spread under the fan-out count, and first-seen SSH edges
/// that need a pivot when there is no baseline.
final class LateralSessionPatternTests: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws { dir = try TestSupport.temporaryDirectory("lateral-sessions") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }
    func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

    func ip(_ s: String) -> UInt32 { s.split(separator: ".").reduce(0) { $0 << 8 | UInt32($1)! } }

    /// One TCP session: handshake, `exchanges` (client bytes, server bytes), FIN both ways; `gap` µs between packets.
    func session(_ b: inout TCPCaptureBuilder, _ client: String, _ cport: UInt16, _ server: String, _ sport: UInt16,
                 exchanges: [(Int, Int)], gap: UInt64 = 1000) {
        let c = ip(client), s = ip(server)
        var cseq: UInt32 = 1000, sseq: UInt32 = 9000
        func seg(_ fromClient: Bool, _ flags: UInt8, _ n: Int) {
            b.micros &+= gap
            let payload = [UInt8](repeating: 0x53, count: n)
            if fromClient {
                b.segment(src: c, dst: s, sport: cport, dport: sport, seq: cseq, ack: sseq, flags: flags, payload: payload)
                cseq &+= UInt32(n) &+ (flags & 0x03 != 0 ? 1 : 0)
            } else {
                b.segment(src: s, dst: c, sport: sport, dport: cport, seq: sseq, ack: cseq, flags: flags, payload: payload)
                sseq &+= UInt32(n) &+ (flags & 0x03 != 0 ? 1 : 0)
            }
        }
        seg(true, 0x02, 0)
        seg(false, 0x12, 0)
        seg(true, 0x10, 0)
        for (up, down) in exchanges {
            seg(true, 0x18, up)
            seg(false, 0x18, down)
        }
        seg(true, 0x11, 0)
        seg(false, 0x11, 0)
        seg(true, 0x10, 0)
    }

    func lateral(_ pcap: String, rules: String? = nil) throws -> [[String: Any]] {
        var args = ["replay", pcap]
        if let rules {
            let d = dir.appendingPathComponent("rules")
            try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
            try rules.write(to: d.appendingPathComponent("lateral-movement.yaml"), atomically: true, encoding: .utf8)
            args += ["--rules", d.path]
        }
        let r = try TestSupport.sensor(args)
        XCTAssertEqual(r.status, 0, r.stderr)
        let events = try TestSupport.events(r)
        // The new alerts' details are documented in docs/SCHEMA.md (a closed namespace).
        let schema = try EventSchema.load()
        for e in events { XCTAssertEqual(schema.problems(e), [], "\((pcap as NSString).lastPathComponent)") }
        return events.filter { TestSupport.value($0, "rule.category") as? String == "lateral_movement" }
    }

    func ids(_ alerts: [[String: Any]]) -> [String] { alerts.compactMap { TestSupport.value($0, "rule.id") as? String } }

    func testSSHPasswordGuessingIsShortSessionsToOneServer() throws {
        var b = TCPCaptureBuilder(expectedPackets: 400, payloadLimit: 3000)
        // 16 guesses (each a key exchange and a refused password) two seconds apart, then one real 40-second session.
        for i in 0..<16 {
            b.micros = UInt64(i) * 2_000_000
            session(&b, "10.0.0.5", UInt16(50000 + i), "10.0.0.9", 22, exchanges: [(40, 40), (1500, 1100), (200, 60)])
        }
        try b.write(to: path("ssh-guessing.pcap"))
        let alerts = try lateral(path("ssh-guessing.pcap"))
        XCTAssertEqual(ids(alerts), ["lateral_movement.ssh_brute_force"], "\(alerts.map { TestSupport.value($0, "message") ?? "" })")
        if let a = alerts.first {
            XCTAssertEqual(TestSupport.value(a, "source.ip") as? String, "10.0.0.5")
            XCTAssertEqual(TestSupport.value(a, "destination.ip") as? String, "10.0.0.9")
            XCTAssertEqual(TestSupport.value(a, "threat.technique.subtechnique.id") as? [String], ["T1110.001", "T1021.004"])
        }

        // The same number of sessions, each a working session of a minute: nothing.
        var w = TCPCaptureBuilder(expectedPackets: 400, payloadLimit: 3000)
        for i in 0..<16 {
            w.micros = UInt64(i) * 70_000_000
            session(&w, "10.0.0.5", UInt16(50000 + i), "10.0.0.9", 22, exchanges: [(40, 40), (1500, 1100), (200, 60)], gap: 6_000_000)
        }
        try w.write(to: path("ssh-work.pcap"))
        XCTAssertEqual(ids(try lateral(path("ssh-work.pcap"))), [])
    }

    func testWormLikeRateBelowTheFanOutCount() throws {
        // After a minute of quiet traffic, six new hosts on 445 within 20 seconds (the count rule needs ten).
        var b = TCPCaptureBuilder(expectedPackets: 200, payloadLimit: 64)
        session(&b, "10.0.0.5", 40000, "10.0.0.2", 53, exchanges: [(40, 80)])
        for i in 0..<6 {
            b.micros = 70_000_000 + UInt64(i) * 3_000_000
            session(&b, "10.0.0.5", UInt16(41000 + i), "10.0.7.\(i + 1)", 445, exchanges: [(60, 60)])
        }
        try b.write(to: path("worm.pcap"))
        let alerts = try lateral(path("worm.pcap"))
        XCTAssertEqual(ids(alerts), ["lateral_movement.fan_out_rate"])
        XCTAssertEqual(TestSupport.value(alerts.first ?? [:], "spanwatch.lateral_movement.new_targets") as? Int, 5)

        // A workstation's ordinary start: four file servers within the minute.
        var o = TCPCaptureBuilder(expectedPackets: 200, payloadLimit: 64)
        session(&o, "10.0.0.5", 40000, "10.0.0.2", 53, exchanges: [(40, 80)])
        for i in 0..<4 {
            o.micros = 70_000_000 + UInt64(i) * 3_000_000
            session(&o, "10.0.0.5", UInt16(41000 + i), "10.0.7.\(i + 1)", 445, exchanges: [(60, 60)])
        }
        try o.write(to: path("office.pcap"))
        XCTAssertEqual(ids(try lateral(path("office.pcap"))), [])
    }

    func testSSHEdgesWithoutBaselineNeedAPivot() throws {
        var one = TCPCaptureBuilder(expectedPackets: 100, payloadLimit: 3000)
        session(&one, "10.0.0.5", 50000, "10.0.0.9", 22, exchanges: [(40, 40), (1500, 1100), (3000, 2500)])
        session(&one, "10.0.0.5", 50001, "10.0.0.10", 22, exchanges: [(40, 40), (1500, 1100), (3000, 2500)])
        try one.write(to: path("two-edges.pcap"))
        XCTAssertEqual(ids(try lateral(path("two-edges.pcap"))), [], "two admin sessions are not a pivot")

        var pivot = TCPCaptureBuilder(expectedPackets: 100, payloadLimit: 3000)
        for (i, host) in ["10.0.0.9", "10.0.0.10", "10.0.0.11"].enumerated() {
            session(&pivot, "10.0.0.5", UInt16(50000 + i), host, 22, exchanges: [(40, 40), (1500, 1100), (3000, 2500)])
        }
        try pivot.write(to: path("pivot.pcap"))
        let alerts = try lateral(path("pivot.pcap"))
        XCTAssertEqual(ids(alerts), ["lateral_movement.new_ssh_edge"])
        XCTAssertEqual((TestSupport.value(alerts.first ?? [:], "spanwatch.lateral_movement.targets") as? [String])?.count, 3)

        // A rules file that accepts single SSH edges without a baseline restores one alert per edge.
        let each = try lateral(path("two-edges.pcap"), rules: "first_seen_edges:\n  without_baseline:\n    services: [ssh, winrm]\n")
        XCTAssertEqual(ids(each), ["lateral_movement.new_ssh_edge", "lateral_movement.new_ssh_edge"])
    }
}
