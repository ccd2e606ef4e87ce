import Foundation
import XCTest
@testable import Analyzers
@testable import Detectors
import Events
import TestSupport
import PacketCore

/// Keeps every event as a parsed JSON object.
final class CollectingSink: EventSink, @unchecked Sendable {
    let name = "collect"
    var events: [[String: Any]] = []
    var statistics = SinkStatistics()
    func write(_ json: UnsafeRawBufferPointer, metadata: EventMetadata) {
        events.append((try? JSONSerialization.jsonObject(with: Data(json))) as? [String: Any] ?? [:])
    }
    func flush() throws {}
    func close() throws {}

    var alerts: [[String: Any]] { events.filter { ($0["event"] as? [String: Any])?["kind"] as? String == "alert" } }
}

/// Drives the detector with DNS facts directly (no packets), over a small synthetic suffix list.
struct FactDriver {
    let sink = CollectingSink()
    let emitter: EventEmitter
    let detector: DNSTunnelDetector
    /// As the real list, every listed suffix's top-level domain has a rule of its own.
    let psl = PublicSuffixList(text: "com\norg\nnet\nuk\nco.uk\narpa\nin-addr.arpa\nde\n")
    var time: Int64 = 1_700_000_000_000_000_000

    init(rules: DNSTunnelRules = DNSTunnelRules()) {
        emitter = EventEmitter(observer: ObserverInfo(name: "t", hostname: "t"), sinks: [sink])
        detector = DNSTunnelDetector(rules: rules, emitter: emitter, publicSuffixList: psl)
    }

    mutating func query(_ name: String, type: UInt16 = 16, client: String = "10.0.0.5", server: String = "10.0.0.53", advance: Int64 = 100_000_000) {
        message(name, type: type, client: client, server: server, response: false, advance: advance)
    }

    /// A response to the last query of `name`: `payload` stands for what the answers carry back.
    mutating func answer(_ name: String, type: UInt16 = 16, client: String = "10.0.0.5", server: String = "10.0.0.53", rcode: UInt16 = 0,
                         payload: String = "", advance: Int64 = 10_000_000) {
        let p = Array(payload.utf8)
        let measured = p.isEmpty ? DNSAnswerPayload() : DNSAnswerPayload(bytes: p.count, entropy: Float(p.withUnsafeBytes { DNSTunnelDetector.entropyAndLongestLabel($0).0 }),
                                                                          hash: p.reduce(0xcbf2_9ce4_8422_2325 as UInt64) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 })
        message(name, type: type, client: client, server: server, response: true, rcode: rcode, payload: measured, answerBytes: p.count, advance: advance)
    }

    mutating func message(_ name: String, type: UInt16, client: String, server: String, response: Bool, rcode: UInt16 = 0,
                          payload: DNSAnswerPayload = DNSAnswerPayload(), answerBytes: Int = 0, advance: Int64) {
        time += advance
        let lower = Array(name.lowercased().utf8)
        let original = Array(name.utf8)
        let split = lower.withUnsafeBytes { psl.split($0) }
        original.withUnsafeBytes { o in
            lower.withUnsafeBytes { l in
                let f = DNSMessageFacts(
                    at: Timestamp(nanoseconds: time), client: IPAddress(client)!, server: IPAddress(server)!,
                    clientPort: 40000, serverPort: 53, ipProtocol: IPProtocol.udp, appProtocol: .dns, isResponse: response, id: 1,
                    queryType: type, responseCode: rcode, name: o, lowercaseName: l,
                    registeredDomainStart: split?.registered ?? -1, publicSuffixStart: split?.suffix ?? -1,
                    messageLength: 12 + name.utf8.count + 6 + answerBytes, answerCount: answerBytes > 0 ? 1 : 0, answerDataBytes: answerBytes,
                    answerPayload: payload)
                detector.dnsMessage(f)
            }
        }
    }
}

/// Random-looking labels: hex of a counter through a mixing function.
func encodedLabel(_ i: Int, length: Int) -> String {
    var x = UInt64(i) &* 0x9E37_79B9_7F4A_7C15
    var s = ""
    let alphabet = Array("abcdefghijklmnopqrstuvwxyz234567")
    while s.count < length {
        x ^= x >> 29; x = x &* 0xBF58_476D_1CE4_E5B9; x ^= x >> 32
        s.append(alphabet[Int(x & 31)])
    }
    return s
}

final class DNSTunnelDetectorTests: XCTestCase {
    func testEntropyAndLongestLabel() {
        func measure(_ s: String) -> (Double, Int) {
            Array(s.utf8).withUnsafeBytes { DNSTunnelDetector.entropyAndLongestLabel($0) }
        }
        XCTAssertEqual(measure("aaaa").0, 0)
        XCTAssertEqual(measure("ab.ab").0, 1, accuracy: 1e-9)
        XCTAssertEqual(measure("abcd.efgh").0, 3, accuracy: 1e-9)
        XCTAssertEqual(measure("www.x.abcdefgh").1, 8)
    }

    func testBase32ChannelAlertsOnceThenIsRateLimited() {
        var d = FactDriver()
        // Labels under 40 characters (no single-name rule) and under 2000 bytes upstream (no escalation).
        for i in 0..<30 { d.query("\(encodedLabel(i, length: 30)).\(encodedLabel(i + 1000, length: 20)).t.tunnel.co.uk") }
        XCTAssertEqual(d.sink.alerts.count, 1, "one channel alert, the rest rate-limited")
        XCTAssertGreaterThan(d.detector.counters.suppressed, 0)
        let a = d.sink.alerts[0]
        let details = TestSupport.value(a, "spanwatch.dns_tunneling") as? [String: Any] ?? [:]
        XCTAssertEqual(details["domain"] as? String, "tunnel.co.uk")
        XCTAssertEqual(details["client"] as? String, "10.0.0.5")
        XCTAssertEqual(details["rule"] as? String, "channel")
        XCTAssertEqual((a["rule"] as? [String: Any])?["category"] as? String, "dns_tunneling")
        XCTAssertFalse((details["sample_queries"] as? [String] ?? []).isEmpty)
    }

    func testUpstreamVolumeEscalatesToExfiltrationOnce() {
        var d = FactDriver()
        for i in 0..<120 { d.query("\(encodedLabel(i, length: 60)).\(encodedLabel(i + 7, length: 60)).x.example.com", type: 1) }
        let techniques = d.sink.alerts.map { TestSupport.techniqueIDs($0) ?? [] }
        // Single encoded name first, then the channel, then the channel escalated to exfiltration.
        XCTAssertEqual(techniques.count, 3, "\(techniques)")
        XCTAssertEqual(techniques.first, ["T1071", "T1071.004"])
        XCTAssertEqual(d.sink.alerts.compactMap { (TestSupport.value($0, "spanwatch.dns_tunneling") as? [String: Any])?["rule"] as? String }, ["single_name", "channel", "channel"])
        XCTAssertEqual(techniques.last, ["T1071", "T1048", "T1071.004", "T1048.003"])
    }

    func testOrdinaryBrowsingDoesNotAlert() {
        var d = FactDriver()
        let hosts = ["www", "mail", "api", "cdn", "static", "login", "images", "news", "m", "assets"]
        for round in 0..<20 {
            for h in hosts { d.query("\(h).example.com", type: round % 2 == 0 ? 1 : 28) }
        }
        // Many reverse lookups (unique names) under an allowlisted zone do not count either.
        var rules = DNSTunnelRules()
        rules.allowlist = ["in-addr.arpa"]
        var r = FactDriver(rules: rules)
        for i in 0..<300 { r.query("\(i % 250).\(i / 250).168.192.in-addr.arpa", type: 12) }
        XCTAssertTrue(d.sink.alerts.isEmpty)
        XCTAssertTrue(r.sink.alerts.isEmpty)
        XCTAssertEqual(r.detector.counters.allowlisted, 300)
    }

    func testPairsAreBoundedAndEvictionsCounted() {
        var rules = DNSTunnelRules()
        rules.maxPairs = 16
        var d = FactDriver(rules: rules)
        for i in 0..<100 { d.query("www.domain\(i).com", type: 1, advance: 1_000) }
        XCTAssertLessThanOrEqual(d.detector.activePairs, 16)
        XCTAssertEqual(d.detector.counters.pairsCreated, 100)
        XCTAssertEqual(d.detector.counters.pairsEvicted, 84)
        // Idle pairs expire on the packet clock.
        d.detector.tick(Timestamp(nanoseconds: d.time + 4_000_000_000_000))
        XCTAssertEqual(d.detector.activePairs, 0)
        XCTAssertEqual(d.detector.counters.pairsExpired, 16)
    }

    func testSingleEncodedNameAlerts() {
        var d = FactDriver()
        d.query("H4sICN03a2QAA3Rlc3QudHh0AAvJyCxWAKJEheLU5KLUEoW0zJxULgAge-.4S2FgAAAA-.exfil.org", type: 1)
        XCTAssertEqual(d.sink.alerts.count, 1)
        XCTAssertEqual((d.sink.alerts.first.flatMap { TestSupport.value($0, "spanwatch.dns_tunneling") } as? [String: Any])?["rule"] as? String, "single_name")
        XCTAssertEqual((d.sink.alerts.first.flatMap { TestSupport.value($0, "spanwatch.dns_tunneling") } as? [String: Any])?["domain"] as? String, "exfil.org")
    }

    func testWindowSlidesOnThePacketClock() {
        var d = FactDriver()
        // A few tunnel-like queries per window, spaced so that no window ever holds min_queries of them.
        for i in 0..<20 { d.query("\(encodedLabel(i, length: 30)).slow.example.com", advance: 100_000_000_000) }
        XCTAssertTrue(d.sink.alerts.isEmpty, "\(d.sink.alerts)")
    }
}
