import XCTest
@testable import Analyzers
@testable import Detectors
import Events
import PacketCore

/// The non-standard-port detector needs evidence beyond an unusual port: flows built by a real flow
/// table, the identified protocol stamped as the identifier would.
final class C2EvidenceTests: AlertCollectingCase {
    let t0: Int64 = 1_700_000_000_000_000_000
    let second: Int64 = 1_000_000_000

    func detail(_ a: Alert, _ key: String) -> JSONValue? { a.details.first { $0.0 == key }?.1 }

    /// One HTTP session `src:sport → dst:port` at `start` seconds, lasting `seconds`, carrying `request`
    /// and `response` payload bytes; judged at its end.
    func http(_ f: FlowFactory, _ d: NonStandardPortDetector, _ src: String, _ sport: UInt16, _ dst: String, _ port: UInt16,
              start: Int64 = 0, seconds: Int64 = 0, request: Int = 300, response: Int = 900) {
        let t = t0 + start * second
        _ = f.packet(src, sport, dst, port, [.syn], payload: 0, at: t)
        _ = f.packet(dst, port, src, sport, [.syn, .ack], payload: 0, at: t + 1_000_000)
        let u = f.packet(src, sport, dst, port, [.ack, .psh], payload: request, at: t + 2_000_000)
        if response > 0 { _ = f.packet(dst, port, src, sport, [.ack, .psh], payload: response, at: t + 3_000_000) }
        // Keep-alives, so a long session is not idled out of the flow table.
        for k in stride(from: Int64(60), to: seconds, by: 60) { _ = f.packet(src, sport, dst, port, [.ack], payload: 0, at: t + k * second) }
        _ = f.packet(src, sport, dst, port, [.ack], payload: 0, at: t + 4_000_000 + seconds * second)
        f.table.setAppProtocol(AppProtocol.http.rawValue, slot: u.slot)
        d.flowEnded(f.table[u.slot], reason: .tcpClosed, slot: u.slot, identifier: identifier)
        // The stage's next tick, as every second of packet time brings one: what was learned starts to count.
        d.tick(Timestamp(nanoseconds: t + 5_000_000 + seconds * second))
    }

    /// The worker's content identification for these sessions (fed nothing: they are tagged HTTP directly).
    let identifier = ProtocolIdentifier(flowCapacity: 4096)

    func detector(_ rules: C2PortRules = C2PortRules()) -> NonStandardPortDetector {
        NonStandardPortDetector(rules: rules, emitter: emitter)
    }

    /// A single short session of a known protocol on an unlisted port is not enough, outbound or not;
    /// lasting and moving data is.
    func testUnusualPortAloneDoesNotAlert() throws {
        let f = FlowFactory()
        let d = detector()
        http(f, d, "10.0.0.5", 50001, "198.51.100.7", 8082)
        http(f, d, "10.0.0.5", 50002, "10.0.0.9", 8001)
        XCTAssertTrue(alerts.isEmpty, "\(alerts.map(\.message))")
        XCTAssertEqual(d.counters.judged, 2)
        // Twenty minutes and 5 MB out to the same unlisted port: duration, volume, direction and asymmetry.
        http(f, d, "10.0.0.5", 50003, "198.51.100.7", 8082, start: 60, seconds: 1200, request: 5_000_000, response: 20_000)
        XCTAssertEqual(alerts.count, 1)
        let a = try XCTUnwrap(alerts.first)
        XCTAssertEqual(detail(a, "finding"), .string("protocol_on_unusual_port"))
        guard case .object(let parts)? = detail(a, "score_parts") else { return XCTFail("score_parts") }
        let part = Dictionary(uniqueKeysWithValues: parts.map { ($0.0, $0.1) })
        XCTAssertEqual(part["outbound"], .double(C2PortRules().weightOutbound))
        XCTAssertEqual(part["asymmetry"], .double(C2PortRules().weightAsymmetry))
        XCTAssertEqual(detail(a, "client_payload_bytes"), .int(5_000_300))
    }

    /// A test harness on loopback, however long and on whatever port, is never C2.
    func testLoopbackNeverAlerts() {
        let f = FlowFactory()
        let d = detector()
        for i in 0..<12 { http(f, d, "127.0.0.1", UInt16(45000 + i), "127.0.0.1", 4445, start: Int64(i) * 10, seconds: 600, request: 100_000) }
        XCTAssertTrue(alerts.isEmpty, "\(alerts.map(\.message))")
        XCTAssertEqual(d.counters.loopback, 12)
        // The same from a host on the network is judged, and the port's reputation counts.
        http(f, d, "10.0.0.5", 45200, "203.0.113.9", 4445, seconds: 600, request: 100_000)
        XCTAssertEqual(alerts.count, 1)
    }

    /// A channel whose server never sends payload was never judged; now it is, when the client sent
    /// enough for the silence to matter.
    func testServerNeverSpeaksIsJudged() {
        let f = FlowFactory()
        let d = detector()
        // A few bytes to a server that does not answer: a failed attempt, not a channel.
        http(f, d, "10.0.0.5", 46000, "203.0.113.20", 9999, request: 200, response: 0)
        XCTAssertEqual(d.counters.judged, 0)
        XCTAssertTrue(alerts.isEmpty)
        // 64 kB streamed out over ten minutes, the server silent.
        http(f, d, "10.0.0.5", 46001, "203.0.113.21", 9999, seconds: 600, request: 65_536, response: 0)
        XCTAssertEqual(d.counters.judged, 1)
        XCTAssertEqual(alerts.count, 1, "\(alerts.map(\.message))")
        XCTAssertEqual(alerts.first.flatMap { detail($0, "server_payload_bytes") }, .int(0))
    }

    /// A service many clients use is an established service, not judged; so is one seen during the
    /// learning period.
    func testEstablishedServicesAreNotJudged() {
        let f = FlowFactory()
        let d = detector()
        // An internal application on 8001 that every workstation uses for twenty minutes at a time.
        for i in 0..<8 { http(f, d, "10.0.1.\(i + 10)", UInt16(47000 + i), "10.0.0.9", 8001, start: Int64(i) * 60, seconds: 1200, request: 2_000_000) }
        let first = alerts.count
        XCTAssertGreaterThan(first, 0, "the first clients are judged")
        XCTAssertLessThan(first, 5)
        XCTAssertEqual(d.counters.baselined, UInt64(8 - first))

        var rules = C2PortRules()
        rules.learningPeriod = 3600
        rules.establishedClients = 0
        alerts.removeAll()
        let g = FlowFactory()
        let l = detector(rules)
        http(g, l, "10.0.1.10", 48000, "10.0.0.9", 8001, seconds: 1200, request: 2_000_000)
        XCTAssertTrue(alerts.isEmpty, "learning")
        // After the learning period: the learned service is not judged, a new one is.
        http(g, l, "10.0.1.11", 48001, "10.0.0.9", 8001, start: 4000, seconds: 1200, request: 2_000_000)
        XCTAssertTrue(alerts.isEmpty)
        http(g, l, "10.0.1.11", 48002, "10.0.0.10", 8001, start: 4100, seconds: 1200, request: 2_000_000)
        XCTAssertEqual(alerts.count, 1)
    }
}
