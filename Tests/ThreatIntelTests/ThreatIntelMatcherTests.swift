import Events
import Foundation
import Logging
import PacketCore
import TestSupport
import XCTest
@testable import ThreatIntel

/// Keeps every event written to it.
final class CollectingSink: EventSink, @unchecked Sendable {
    let name = "collect"
    var lines: [[UInt8]] = []
    func write(_ json: UnsafeRawBufferPointer, metadata: EventMetadata) { lines.append(Array(json)) }
    func flush() throws {}
    func close() throws {}
    var statistics: SinkStatistics { SinkStatistics() }
    func objects() throws -> [[String: Any]] {
        try lines.map { try JSONSerialization.jsonObject(with: Data($0)) as! [String: Any] }
    }
}

/// The matcher driven through the fact seam (`ObservedFact`) the DNS/TLS/HTTP analysers publish into,
/// and through the flow table for addresses.
final class ThreatIntelMatcherTests: XCTestCase {
    let t0 = Timestamp(seconds: 1_700_000_000)
    var sink: CollectingSink!
    var emitter: EventEmitter!
    var matcher: ThreatIntelMatcher!
    var flows: FlowTable!

    func setUpMatcher(_ text: String, path: String = "intel.txt", settings: ThreatIntelSettings = ThreatIntelSettings()) throws {
        let set = IndicatorSet(try IndicatorLoader.parse(text, path: path).indicators)
        sink = CollectingSink()
        emitter = EventEmitter(observer: ObserverInfo(name: "t", ingressInterface: "test"), sinks: [sink])
        matcher = ThreatIntelMatcher(feed: IndicatorFeed(set: set), emitter: emitter, settings: settings)
        emitter.factObservers.append(matcher)
        flows = FlowTable()
    }

    /// A TCP SYN from `src` to `dst`, accounted in the flow table and shown to the matcher.
    @discardableResult
    func connect(_ src: String, _ dst: String, port: UInt16 = 443, at t: Timestamp) -> FlowRecord {
        var p = DecodedPacket()
        p.timestamp = t
        p.ipVersion = 4
        p.ipProtocol = IPProtocol.tcp
        p.source = IPAddress(src)!
        p.destination = IPAddress(dst)!
        p.sourcePort = 50000
        p.destinationPort = port
        p.hasPorts = true
        p.tcpFlags = TCPFlags(rawValue: 0x02)
        let u = flows.update(p) { _, _, _ in }
        let ctx = PacketContext(packet: p, frame: UnsafeRawBufferPointer(start: nil, count: 0), linkType: LinkType(rawValue: 1), slot: u.slot,
                                fromOriginator: u.fromOriginator, isNewFlow: u.isNew)
        matcher.packet(ctx, flows: flows)
        return flows[u.slot]
    }

    func alerts() throws -> [[String: Any]] {
        try sink.objects().filter { TestSupport.value($0, "rule.category") as? String == "threat_intel" }
    }

    func testFlowAddressesMatchOncePerFlowWithECSFields() throws {
        try setUpMatcher("type,value,source,confidence,description\nip,203.0.113.50,acme,90,C2 node\n", path: "feed.csv")
        let r = connect("10.1.1.5", "203.0.113.50", at: t0)
        // Later packets of the same flow are not looked up again.
        XCTAssertEqual(matcher.counters.flowsChecked, 1)
        connect("10.1.1.5", "198.51.100.1", at: t0 + .seconds(1))
        let a = try alerts()
        XCTAssertEqual(a.count, 1)
        let e = a[0]
        XCTAssertEqual(TestSupport.value(e, "spanwatch.threat_intel.matched.field") as? String, "destination.ip")
        XCTAssertEqual(TestSupport.value(e, "spanwatch.threat_intel.indicator.value") as? String, "203.0.113.50")
        XCTAssertEqual(TestSupport.value(e, "spanwatch.threat_intel.indicator.provider") as? String, "acme")
        XCTAssertEqual(TestSupport.value(e, "spanwatch.threat_intel.indicator.confidence") as? Int, 90)
        XCTAssertEqual(TestSupport.value(e, "threat.indicator.ip") as? String, "203.0.113.50")
        XCTAssertEqual(TestSupport.value(e, "threat.indicator.type") as? String, "ipv4-addr")
        XCTAssertEqual(TestSupport.value(e, "threat.indicator.confidence") as? String, "High")
        let enrich = TestSupport.value(e, "threat.enrichments") as? [[String: Any]]
        XCTAssertEqual(enrich?.count, 1)
        XCTAssertEqual(TestSupport.value(enrich![0], "matched.field") as? String, "destination.ip")
        XCTAssertEqual(TestSupport.techniqueIDs(e), ["T1071"])
        XCTAssertEqual(TestSupport.value(e, "event.severity") as? Int, 3)
        XCTAssertEqual(TestSupport.value(e, "source.ip") as? String, "10.1.1.5")
        XCTAssertEqual(TestSupport.value(e, "destination.port") as? Int, 443)
        XCTAssertEqual(TestSupport.value(e, "network.community_id") as? String, emitter.communityID.string(r.key))
    }

    func testRateLimitedPerIndicatorAndHost() throws {
        var s = ThreatIntelSettings()
        s.alertInterval = .seconds(600)
        try setUpMatcher("203.0.113.50\n", settings: s)
        for i in 0..<5 { connect("10.1.1.5", "203.0.113.50", port: UInt16(1000 + i), at: t0 + .seconds(Double(i))) }
        connect("10.1.1.6", "203.0.113.50", at: t0 + .seconds(10))
        connect("10.1.1.5", "203.0.113.50", port: 2000, at: t0 + .seconds(700))
        XCTAssertEqual(try alerts().count, 3, "one per host per interval, again after it")
        XCTAssertEqual(matcher.counters.suppressed, 4)
        XCTAssertEqual(matcher.summary["ip:203.0.113.50"]?.alerts, 3)
        XCTAssertEqual(matcher.summary["ip:203.0.113.50"]?.hosts.count, 2)
    }

    func testRateLimitStateIsBoundedOldestFirst() throws {
        var s = ThreatIntelSettings()
        s.rateLimitCapacity = 4
        try setUpMatcher("203.0.113.0/24\n", settings: s)
        for h in 1...6 { connect("10.0.0.\(h)", "203.0.113.9", at: t0) }
        XCTAssertEqual(matcher.counters.rateLimitEvicted, 2)
        XCTAssertEqual(matcher.lastAlert.count, 4)
        // Host 1 was forgotten first, so it alerts again; host 6 is still remembered.
        connect("10.0.0.1", "203.0.113.9", port: 1, at: t0 + .seconds(1))
        connect("10.0.0.6", "203.0.113.9", port: 1, at: t0 + .seconds(1))
        XCTAssertEqual(try alerts().count, 7)
    }

    func testDNSQuestionsAndAnswersMatchDomainsAndLaterConnections() throws {
        try setUpMatcher("skullseclabs.org\n")
        let r = connect("10.0.0.5", "4.2.2.4", port: 53, at: t0)
        emitter.publish(.dnsQuery(name: "0a1b2c.skullseclabs.org"), flow: r, at: t0)
        emitter.publish(.dnsQuery(name: "skullseclabs.org.example"), flow: r, at: t0)
        emitter.publish(.dnsAnswer(name: "0a1b2c.skullseclabs.org", address: IPAddress("198.51.100.99")), flow: r, at: t0)
        var a = try alerts()
        XCTAssertEqual(a.count, 1, "question and answer for the same indicator and host alert once")
        XCTAssertEqual(TestSupport.value(a[0], "spanwatch.threat_intel.matched.field") as? String, "dns.question.name")
        XCTAssertEqual(TestSupport.value(a[0], "spanwatch.threat_intel.matched.atomic") as? String, "0a1b2c.skullseclabs.org")
        XCTAssertEqual(TestSupport.value(a[0], "threat.indicator.url.domain") as? String, "skullseclabs.org")
        XCTAssertEqual(TestSupport.value(a[0], "related.hosts") as? [String], ["0a1b2c.skullseclabs.org"])
        // Another host connecting to the address the listed name resolved to.
        connect("10.0.0.8", "198.51.100.99", at: t0 + .seconds(2))
        a = try alerts()
        XCTAssertEqual(a.count, 2)
        XCTAssertEqual(TestSupport.value(a[1], "spanwatch.threat_intel.matched.field") as? String, "destination.ip")
        XCTAssertEqual(TestSupport.value(a[1], "spanwatch.threat_intel.matched.resolved_from") as? String, "0a1b2c.skullseclabs.org")
    }

    func testTLSAndHTTPFacts() throws {
        try setUpMatcher("""
        sni:testing.com
        evil.example
        ja3:e7d705a3286e19ea42f587b344ee6865
        ja4:t13d1516h2_8daaf6152771_b0da82dd1658
        http://bad.example/gate.php
        e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855

        """)
        let r = connect("10.0.0.5", "198.51.100.7", at: t0)
        emitter.publish(.tlsClientHello(serverName: "testing.com", ja3: "E7D705A3286E19EA42F587B344EE6865", ja4: "t13d1516h2_8daaf6152771_b0da82dd1658"), flow: r, at: t0)
        emitter.publish(.tlsClientHello(serverName: "cdn.evil.example", ja3: nil, ja4: nil), flow: r, at: t0)
        emitter.publish(.tlsClientHello(serverName: "www.testing.com", ja3: nil, ja4: nil), flow: r, at: t0)
        emitter.publish(.httpRequest(host: "bad.example:80", url: "http://bad.example/gate.php"), flow: r, at: t0)
        emitter.publish(.httpRequest(host: "www.evil.example", url: "http://www.evil.example/"), flow: r, at: t0)
        emitter.publish(.fileHash(algorithm: "sha256", value: "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"), flow: r, at: t0)
        emitter.publish(.tlsCertificate(sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", sha1: nil), flow: r, at: t0)
        let a = try alerts()
        let fields = a.map { TestSupport.value($0, "spanwatch.threat_intel.matched.field") as! String }
        XCTAssertEqual(fields, ["tls.client.server_name", "tls.client.ja3", "spanwatch.tls.client.ja4", "tls.client.server_name", "url.full", "file.hash.sha256"])
        XCTAssertEqual(TestSupport.techniqueIDs(a[0]), ["T1573"])
        XCTAssertEqual(TestSupport.techniqueIDs(a[4]), ["T1071", "T1071.001"])
        XCTAssertEqual(TestSupport.value(a[4], "threat.indicator.url.full") as? String, "bad.example/gate.php")
        XCTAssertEqual(TestSupport.techniqueIDs(a[5]), ["T1105"])
        XCTAssertEqual(TestSupport.value(a[5], "threat.indicator.file.hash.sha256") as? String, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        // The HTTP host under the listed domain was rate-limited by the earlier SNI match (same indicator, host).
        XCTAssertEqual(matcher.counters.suppressed, 2)
    }

    func testUnlistedFactsDoNotAlert() throws {
        try setUpMatcher("skullseclabs.org\n203.0.113.50\nsni:testing.com\n")
        let r = connect("10.0.0.5", "198.51.100.7", at: t0)
        emitter.publish(.dnsQuery(name: "example.com"), flow: r, at: t0)
        emitter.publish(.tlsClientHello(serverName: "testing.com.example", ja3: nil, ja4: nil), flow: r, at: t0)
        emitter.publish(.dnsAnswer(name: "example.com", address: IPAddress("203.0.113.51")), flow: r, at: t0)
        XCTAssertEqual(try alerts().count, 0)
        XCTAssertEqual(matcher.counters.factsChecked, 3)
    }

    func testReloadIsPickedUpAtTheNextTickKeepingRateLimits() throws {
        let dir = try TestSupport.temporaryDirectory("intel-matcher")
        defer { try? FileManager.default.removeItem(at: dir) }
        let list = dir.appendingPathComponent("l.txt").path
        try "203.0.113.50\n".write(toFile: list, atomically: true, encoding: .utf8)
        let feed = try IndicatorFeed(paths: [list], logger: Logger(label: "t"))
        sink = CollectingSink()
        emitter = EventEmitter(observer: ObserverInfo(name: "t", ingressInterface: "test"), sinks: [sink])
        matcher = ThreatIntelMatcher(feed: feed, emitter: emitter)
        flows = FlowTable()
        connect("10.0.0.5", "203.0.113.50", at: t0)
        try "203.0.113.50\n203.0.113.60\n".write(toFile: list, atomically: true, encoding: .utf8)
        XCTAssertEqual(feed.reload(), [])
        connect("10.0.0.5", "203.0.113.60", at: t0 + .seconds(0.1))
        XCTAssertEqual(try alerts().count, 1, "the new set applies from the next packet-clock second")
        matcher.tick(t0 + .seconds(1))
        connect("10.0.0.5", "203.0.113.60", port: 1, at: t0 + .seconds(1))
        connect("10.0.0.5", "203.0.113.50", port: 1, at: t0 + .seconds(1))
        XCTAssertEqual(try alerts().count, 2, "new indicator alerts; the old one stays rate-limited across the reload")
        XCTAssertEqual(matcher.counters.reloadsApplied, 1)
    }
}
