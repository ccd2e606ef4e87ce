import XCTest
@testable import Analyzers
import ConfigKit
@testable import Detectors
import Events
import PacketCore

/// The "encrypted session to a bare IP" rule of the non-standard-port detector, on flows built by a
/// real flow table with ClientHello facts in the TLS analyser's store.
final class BareIPSessionRuleTests: AlertCollectingCase {
    let t0: Int64 = 1_700_000_000_000_000_000
    let second: Int64 = 1_000_000_000

    /// What the worker's content identification held for the session (nothing was fed to it).
    let identifier = ProtocolIdentifier(flowCapacity: 4096)

    func detail(_ a: Alert, _ key: String) -> JSONValue? { a.details.first { $0.0 == key }?.1 }

    /// A TLS session over TCP of `seconds` and `packets` data packets, whose ClientHello (SNI or not) is in `tls`.
    func session(_ f: FlowFactory, _ tls: TLSAnalyzer, _ d: NonStandardPortDetector, to dst: String, port: UInt16 = 443, sport: UInt16,
                 sni: String?, seconds: Int64, packets: Int, start: Int64 = 0, tag: AppProtocol? = nil) {
        let t = t0 + start * second
        let (_, slot) = f.session("192.168.1.20", sport, dst, port, at: t)
        for i in 0..<packets {
            let fromClient = i % 2 == 0
            _ = fromClient ? f.packet("192.168.1.20", sport, dst, port, [.ack, .psh], payload: 200, at: t + Int64(i + 1) * seconds * second / Int64(packets))
                : f.packet(dst, port, "192.168.1.20", sport, [.ack, .psh], payload: 600, at: t + Int64(i + 1) * seconds * second / Int64(packets))
        }
        var hello = ClientHello()
        hello.legacyVersion = 0x0303
        hello.cipherSuites = [0x1301, 0xc02f]
        hello.extensions = sni == nil ? [43, 10, 13] : [0, 43, 10, 13]
        hello.serverName = sni.map { Array($0.utf8) }
        hello.supportedVersions = [0x0304]
        tls.quicClientHello(hello, slot: slot, flows: f.table, at: Timestamp(nanoseconds: t))
        if let tag { f.table.setAppProtocol(tag.rawValue, slot: slot) }
        d.flowEnded(f.table[slot], reason: .tcpClosed, labels: FlowLabels(f.table[slot], slot: slot, identifier: identifier, tls: tls, http: nil))
    }

    func testLongSessionWithoutSNIToAnExternalAddressAlertsOnce() throws {
        let f = FlowFactory()
        let tls = TLSAnalyzer(flowCapacity: 4096)
        let d = NonStandardPortDetector(rules: C2PortRules(), emitter: emitter)
        // A name was sent: the rule has nothing to say, however long the session.
        session(f, tls, d, to: "203.0.113.10", sport: 40001, sni: "www.example.com", seconds: 600, packets: 200)
        // No name, but short (a connectivity check): nothing.
        session(f, tls, d, to: "203.0.113.11", sport: 40002, sni: nil, seconds: 2, packets: 60)
        // No name, long enough but tiny (below both packets and bytes): nothing.
        session(f, tls, d, to: "203.0.113.12", sport: 40003, sni: nil, seconds: 300, packets: 10)
        // A public DoH resolver by address, and an internal server: allowlisted / not outbound.
        session(f, tls, d, to: "1.1.1.1", sport: 40004, sni: nil, seconds: 600, packets: 200)
        session(f, tls, d, to: "10.1.2.3", sport: 40005, sni: nil, seconds: 600, packets: 200)
        XCTAssertTrue(alerts.isEmpty, "\(alerts.map(\.message))")

        // No name, just over the two minutes, 60 packets to an external address: the finding.
        session(f, tls, d, to: "203.0.113.20", sport: 40010, sni: nil, seconds: 90, packets: 60)
        XCTAssertTrue(alerts.isEmpty, "90 s is short of min_duration")
        session(f, tls, d, to: "203.0.113.21", sport: 40012, sni: nil, seconds: 121, packets: 60)
        XCTAssertEqual(alerts.count, 1)
        let a = try XCTUnwrap(alerts.first)
        XCTAssertEqual(a.category, .nonstandardPortC2)
        XCTAssertEqual(a.ruleID, "nonstandard_port_c2.encrypted_session_to_bare_ip")
        XCTAssertEqual(a.techniques.map(\.id), ["T1571", "T1573"])
        XCTAssertEqual(a.destination?.port, 443)
        XCTAssertEqual(detail(a, "reason"), .string("no_server_name"))
        XCTAssertEqual(detail(a, "protocol"), .string("tls"))
        XCTAssertEqual(detail(a, "transport"), .string("tcp"))
        if case .string(let ja4)? = detail(a, "ja4") { XCTAssertTrue(ja4.hasPrefix("q13i0203"), ja4) } else { XCTFail("ja4") }
        XCTAssertGreaterThanOrEqual(a.riskScore, C2PortRules().threshold)
        // The pair's next session is suppressed; short sessions of another pair add up over repetitions.
        session(f, tls, d, to: "203.0.113.21", sport: 40011, sni: nil, seconds: 121, packets: 60, start: 600)
        XCTAssertEqual(alerts.count, 1)
        XCTAssertEqual(d.counters.suppressed, 1)
        // (5 s, 17 packets each, every 30 s: the fifth makes a 125 s span and 85 packets.)
        for i in 0..<4 { session(f, tls, d, to: "203.0.113.30", sport: UInt16(40020 + i), sni: nil, seconds: 5, packets: 12, start: Int64(i) * 30) }
        XCTAssertEqual(alerts.count, 1)
        session(f, tls, d, to: "203.0.113.30", sport: 40024, sni: nil, seconds: 5, packets: 12, start: 120)
        XCTAssertEqual(alerts.count, 2)
        if let b = alerts.last { XCTAssertEqual(detail(b, "connections"), .int(5)) }
    }

    /// TLS without SNI on 4444 is a port finding first; its repeats are suppressed as such, not
    /// reported again by the bare-IP rule: one alert per pair and period, whichever rule found it.
    func testPortFindingAndBareIPMakeOneAlertPerPair() {
        let f = FlowFactory()
        let tls = TLSAnalyzer(flowCapacity: 4096)
        let d = NonStandardPortDetector(rules: C2PortRules(), emitter: emitter)
        for i in 0..<3 {
            session(f, tls, d, to: "203.0.113.40", port: 4444, sport: UInt16(41000 + i), sni: nil, seconds: 300, packets: 100,
                    start: Int64(i) * 600, tag: .tls)
        }
        XCTAssertEqual(alerts.map(\.ruleID), ["nonstandard_port_c2.protocol_on_unusual_port"])
        XCTAssertEqual(d.counters.suppressed, 2)
    }

    func testRulesParseAndReportMistakes() throws {
        let ok = try YAMLDocument.parse("""
        nonstandard_port_c2:
          encrypted_to_bare_ip:
            enabled: false
            min_duration: 5m
            min_packets: 10
            allow:
              destinations: [192.0.2.0/24]
              ports: [8443]
        """, file: "c2.yaml")
        let r = try C2PortRules.parse(ok!).bareIP
        XCTAssertFalse(r.enabled)
        XCTAssertEqual(r.minDuration, 300)
        XCTAssertEqual(r.minPackets, 10)
        XCTAssertTrue(r.allowPorts.contains(8443))
        XCTAssertEqual(r.allowDestinations, [IPNetwork("192.0.2.0/24")!])
        let bad = try YAMLDocument.parse("""
        nonstandard_port_c2:
          encrypted_to_bare_ip:
            base: 300
            min_connections: 0
            allow:
              destinations: [not-an-ip]
            sni: yes
        """, file: "c2.yaml")
        do {
            _ = try C2PortRules.parse(bad!)
            XCTFail("expected issues")
        } catch {
            XCTAssertEqual(error.issues.count, 4, "\(error.issues)")
            XCTAssertEqual(Set(error.issues.map(\.line)), [3, 4, 6, 7])
        }
    }
}
