import Foundation
import XCTest
@testable import Analyzers
import Events
import PacketCore

final class DNSEventSink: EventSink, @unchecked Sendable {
    let name = "collect"
    var events: [[String: Any]] = []
    var statistics = SinkStatistics()
    func write(_ json: UnsafeRawBufferPointer, metadata: EventMetadata) {
        events.append((try? JSONSerialization.jsonObject(with: Data(json))) as? [String: Any] ?? [:])
    }
    func flush() throws {}
    func close() throws {}
    func value(_ e: [String: Any], _ path: String) -> Any? {
        var cur: Any? = e
        for p in path.split(separator: ".") { cur = (cur as? [String: Any])?[String(p)] }
        return cur
    }
}

/// Drives a flow table and the DNS analyser with hand-built UDP packets (IPv4 in Ethernet).
final class UDPDriver {
    let table = FlowTable(configuration: { var c = FlowTableConfiguration(); c.capacity = 4096; return c }())
    let sink = DNSEventSink()
    let analyzer: DNSAnalyzer
    var time: Int64 = 1_700_000_000_000_000_000

    init(configuration: DNSConfiguration = DNSConfiguration()) {
        let emitter = EventEmitter(observer: ObserverInfo(name: "t", hostname: "t"), sinks: [sink])
        let psl = PublicSuffixList(text: "com\norg\n")
        analyzer = DNSAnalyzer(flowCapacity: 4096, configuration: configuration, emitter: emitter, publicSuffixList: psl)
    }

    func send(_ message: [UInt8], client: String = "10.0.0.1", clientPort: UInt16 = 40000, serverPort: UInt16 = 53, response: Bool, advance: Int64 = 1_000_000) {
        time += advance
        var frame = [UInt8](repeating: 0, count: 42)
        frame.append(contentsOf: message)
        var p = DecodedPacket()
        p.timestamp = Timestamp(nanoseconds: time)
        p.ipVersion = 4
        p.ipProtocol = IPProtocol.udp
        let c = IPAddress(client)!, s = IPAddress("10.0.0.53")!
        p.source = response ? s : c
        p.destination = response ? c : s
        p.sourcePort = response ? serverPort : clientPort
        p.destinationPort = response ? clientPort : serverPort
        p.hasPorts = true
        p.payloadOffset = 42
        p.payloadLength = message.count
        p.wireLength = frame.count
        p.capturedLength = frame.count
        let u = table.update(p) { _, _, _ in }
        frame.withUnsafeBytes { f in
            analyzer.packet(PacketContext(packet: p, frame: f, linkType: .ethernet, slot: u.slot, fromOriginator: u.fromOriginator, isNewFlow: u.isNew), flows: table)
        }
    }

    func query(id: UInt16, name: String, type: UInt16 = 1) -> [UInt8] {
        var b = DNSBuilder(id: id, flags: 0x0100)
        b.question(name, type: type)
        return b.bytes
    }

    func answer(id: UInt16, name: String, rcode: UInt16 = 0) -> [UInt8] {
        var b = DNSBuilder(id: id, flags: 0x8180 | rcode, an: rcode == 0 ? 1 : 0)
        b.question(name, type: 1)
        if rcode == 0 { b.record(owner: 12, type: 1) { $0.bytes += [192, 0, 2, 9] } }
        return b.bytes
    }
}

final class DNSAnalyzerTests: XCTestCase {
    func testQueryAndResponseMakeOneEvent() {
        let d = UDPDriver()
        d.send(d.query(id: 7, name: "www.Example.com"), response: false)
        d.send(d.answer(id: 7, name: "www.Example.com"), response: true, advance: 2_500_000)
        XCTAssertEqual(d.sink.events.count, 1)
        let e = d.sink.events[0]
        XCTAssertEqual(d.sink.value(e, "event.dataset") as? String, "spanwatch.dns")
        XCTAssertEqual(d.sink.value(e, "event.duration") as? Int, 2_500_000)
        XCTAssertEqual(d.sink.value(e, "dns.id") as? String, "7")
        XCTAssertEqual(d.sink.value(e, "dns.question.name") as? String, "www.Example.com")
        XCTAssertEqual(d.sink.value(e, "dns.question.registered_domain") as? String, "example.com")
        XCTAssertEqual(d.sink.value(e, "dns.question.subdomain") as? String, "www")
        XCTAssertEqual(d.sink.value(e, "dns.resolved_ip") as? [String], ["192.0.2.9"])
        XCTAssertEqual(d.sink.value(e, "source.ip") as? String, "10.0.0.1")
        XCTAssertEqual(d.sink.value(e, "destination.port") as? Int, 53)
        XCTAssertEqual(d.sink.value(e, "spanwatch.dns.status") as? String, "answered")
        XCTAssertEqual(d.analyzer.counters.transactions, 1)
    }

    func testUnansweredQueriesTimeOutOnThePacketClock() {
        let d = UDPDriver()
        d.send(d.query(id: 1, name: "lost.example.org"), response: false)
        d.analyzer.tick(Timestamp(nanoseconds: d.time + 5_000_000_000))
        XCTAssertTrue(d.sink.events.isEmpty, "not yet: the timeout is 10 s")
        d.analyzer.tick(Timestamp(nanoseconds: d.time + 11_000_000_000))
        XCTAssertEqual(d.sink.events.count, 1)
        XCTAssertEqual(d.sink.value(d.sink.events[0], "spanwatch.dns.status") as? String, "unanswered")
        XCTAssertEqual(d.sink.value(d.sink.events[0], "dns.type") as? String, "query")
        XCTAssertEqual(d.sink.value(d.sink.events[0], "dns.question.name") as? String, "lost.example.org")
        XCTAssertNil(d.sink.value(d.sink.events[0], "dns.response_code"))
        // A late response is then reported on its own.
        d.send(d.answer(id: 1, name: "lost.example.org", rcode: 3), response: true)
        XCTAssertEqual(d.sink.value(d.sink.events[1], "spanwatch.dns.status") as? String, "response_only")
        XCTAssertEqual(d.sink.value(d.sink.events[1], "dns.response_code") as? String, "NXDOMAIN")
    }

    func testPendingTableIsBoundedAndForcesOutTheOldest() {
        var c = DNSConfiguration()
        c.maxPendingQueries = 64
        let d = UDPDriver(configuration: c)
        for i in 0..<1000 {
            d.send(d.query(id: UInt16(i), name: "q\(i).example.com"), clientPort: UInt16(20000 + i % 7), response: false, advance: 1000)
        }
        XCTAssertLessThanOrEqual(d.analyzer.pending.live, d.analyzer.pending.capacity)
        XCTAssertGreaterThan(d.analyzer.counters.pendingForcedOut, 0)
        d.analyzer.finish(Timestamp(nanoseconds: d.time))
        // Every query became exactly one event.
        XCTAssertEqual(d.sink.events.count, 1000)
        XCTAssertEqual(Set(d.sink.events.compactMap { d.sink.value($0, "dns.question.name") as? String }).count, 1000)
        XCTAssertEqual(d.analyzer.pending.live, 0)
    }

    func testContentDetectionOnOtherPortsAndNoiseIgnored() {
        let d = UDPDriver()
        d.send(d.query(id: 9, name: "odd.example.com"), clientPort: 41000, serverPort: 5300, response: false)
        d.send(d.answer(id: 9, name: "odd.example.com"), clientPort: 41000, serverPort: 5300, response: true)
        XCTAssertEqual(d.sink.events.count, 1)
        // Not DNS on another port: no parse, no event, no malformed count.
        d.send(Array("GET / HTTP/1.1\r\n\r\n".utf8), clientPort: 41001, serverPort: 8080, response: false)
        XCTAssertEqual(d.sink.events.count, 1)
        XCTAssertEqual(d.analyzer.counters.malformed, 0)
        // Garbage on port 53 is counted, not reported.
        d.send([1, 2, 3], clientPort: 41002, response: false)
        XCTAssertEqual(d.analyzer.counters.malformed, 1)
    }

    func testEventsOffStillFeedsObservers() {
        final class Counter: DNSMessageObserver {
            var names: [String] = []
            func dnsMessage(_ facts: DNSMessageFacts) {
                names.append("\(facts.isResponse ? "R" : "Q") \(String(decoding: facts.name, as: UTF8.self)) \(facts.registeredDomainStart)")
            }
        }
        var c = DNSConfiguration()
        c.eventsEnabled = false
        let d = UDPDriver(configuration: c)
        let o = Counter()
        d.analyzer.addObserver(o)
        d.send(d.query(id: 3, name: "a.b.example.com"), response: false)
        d.send(d.answer(id: 3, name: "a.b.example.com"), response: true)
        XCTAssertTrue(d.sink.events.isEmpty)
        XCTAssertEqual(o.names, ["Q a.b.example.com 4", "R a.b.example.com 4"])
    }
}
