import Foundation
import TestSupport
import XCTest

/// Ordinary sessions of the protocols a SPAN port carries, synthesised by `scripts/fp-survey.py` (checked
/// with tshark, which dissects each as the protocol named below), replayed through the real binary: each
/// flow is named by content, and none raises an alert — CLDAP is not SNMP, NFS replies are not DNS, h2c
/// is HTTP, S7comm and MMS on 102 are not RDP, IRC on an alternate port is IRC, a loopback harness on
/// 4445 is not C2, TLS with a server name on a vendor or unlisted port is not C2 on one short session.
final class ProtocolIdentificationCLITests: XCTestCase {
    /// `network.protocol` of each synthesised flow, by "source port-destination port" (nil: unnamed).
    static let expected: [String: String?] = {
        var e: [String: String?] = [
            "801-111": "onc_rpc", "802-2049": "onc_rpc", "40100-80": "http", "49800-102": "s7comm", "49900-102": "mms",
            "41000-6667": "irc", "41000-7777": "irc", "42000-502": "modbus", "42100-20000": "dnp3", "43000-3306": "mysql",
            "43100-5432": "postgresql", "43200-6379": "redis", "43300-5900": "vnc", "43400-110": "pop3", "43500-143": "imap",
            "43600-1883": "mqtt", "43700-23": "telnet", "50000-3478": "stun", "50100-1900": "ssdp", "1900-50100": "ssdp",
            "44000-5223": "tls", "44000-9443": "tls", "44000-4433": "tls", "44000-8001": "tls", "44100-8001": "http",
        ]
        for p in 55000...55002 { e["\(p)-389"] = "cldap" }
        for p in 45000...45011 { e["\(p)-4445"] = .some(nil) }
        return e
    }()

    /// All synthesised captures in one replay (merged in time order: one detector state sees them all).
    /// An MPTCP subflow that joins a connection (MP_JOIN in its SYN) carries the middle of the
    /// connection's stream: its first bytes are not an unknown protocol on port 22. The real capture of
    /// the tcpdump tests holds an SSH connection over two subflows.
    func testMPTCPJoinSubflowIsNotAnUnknownProtocol() throws {
        let r = try TestSupport.sensor(["replay", "--no-dns-events", TestSupport.data("protocol-tests/tcpdump/mptcp-v0.pcap")])
        XCTAssertEqual(r.status, 0, r.stderr)
        let events = try TestSupport.events(r)
        let c2 = events.filter { TestSupport.value($0, "rule.category") as? String == "nonstandard_port_c2" }
        XCTAssertTrue(c2.isEmpty, "\(c2.map { TestSupport.value($0, "message") ?? "" })")
        let flows = events.filter { TestSupport.value($0, "event.dataset") as? String == "spanwatch.flow" && TestSupport.value($0, "destination.port") as? Int == 22 }
        XCTAssertEqual(flows.count, 2)
        // The first subflow opens with the SSH banner; the joining one is not named.
        XCTAssertEqual(Set(flows.map { TestSupport.value($0, "network.protocol") as? String ?? "-" }), ["ssh", "-"])
    }

    func testSynthesisedOrdinaryProtocolsAreNamedAndRaiseNothing() throws {
        let dir = try TestSupport.temporaryDirectory("protocol-id")
        defer { try? FileManager.default.removeItem(at: dir) }
        let script = TestSupport.repositoryRoot.appendingPathComponent("scripts/fp-survey.py").path
        let synth = try TestSupport.run("python3", [script, "--synth-only", dir.path])
        XCTAssertEqual(synth.status, 0, synth.stderr)
        let paths = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".pcap") }
            .map { dir.appendingPathComponent($0).path }
        XCTAssertEqual(paths.count, 25)
        let r = try TestSupport.sensor(["replay", "--no-dns-events"] + paths.sorted())
        XCTAssertEqual(r.status, 0, r.stderr)
        let events = try TestSupport.events(r)
        let alerts = events.filter { TestSupport.value($0, "rule.category") != nil }
        XCTAssertTrue(alerts.isEmpty, "\(alerts.map { TestSupport.value($0, "message") ?? "" })")
        var seen: [String: String?] = [:]
        for f in events where TestSupport.value(f, "event.dataset") as? String == "spanwatch.flow" {
            let key = "\(TestSupport.value(f, "source.port") ?? "")-\(TestSupport.value(f, "destination.port") ?? "")"
            seen[key] = .some(TestSupport.value(f, "network.protocol") as? String)
        }
        XCTAssertEqual(Set(seen.keys), Set(Self.expected.keys))
        for (key, want) in Self.expected { XCTAssertEqual(seen[key] ?? nil, want, key) }
    }
}
