import Foundation
import TestSupport
import XCTest

/// Ordinary sessions of the protocols a SPAN port carries, synthesised by `scripts/fp-survey.py` (checked
/// with tshark, which dissects each as the protocol named below), replayed through the real binary: each
/// flow is named by content, and none raises an alert — CLDAP is not SNMP, NFS replies are not DNS, h2c
/// is HTTP, S7comm and MMS on 102 are not RDP, IRC on an alternate port is IRC, a loopback harness on
/// 4445 is not C2, TLS with a server name on a vendor or unlisted port is not C2 on one short session.
final class ProtocolIdentificationCLITests: XCTestCase {
    static let expected: [String: String?] = [
        "cldap-dc-locator": "cldap", "nfs-udp": "onc_rpc", "h2c-prior-knowledge": "http", "s7comm-102": "s7comm",
        "mms-102": "mms", "irc-6667": "irc", "irc-7777": "irc", "modbus-502": "modbus", "dnp3-20000": "dnp3",
        "mysql-3306": "mysql", "postgresql-5432": "postgresql", "redis-6379": "redis", "vnc-5900": "vnc",
        "pop3-110": "pop3", "imap-143": "imap", "mqtt-1883": "mqtt", "telnet-23": "telnet", "stun-3478": "stun",
        "ssdp-1900": "ssdp", "tls-5223-named": "tls", "tls-9443-named": "tls", "tls-4433-named": "tls",
        "tls-8001-named": "tls", "http-8001-named": "http", "loopback-harness-4445": nil,
    ]

    func testSynthesisedOrdinaryProtocolsAreNamedAndRaiseNothing() throws {
        let dir = try TestSupport.temporaryDirectory("protocol-id")
        defer { try? FileManager.default.removeItem(at: dir) }
        let script = TestSupport.repositoryRoot.appendingPathComponent("scripts/fp-survey.py").path
        let synth = try TestSupport.run("python3", [script, "--synth-only", dir.path])
        XCTAssertEqual(synth.status, 0, synth.stderr)
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".pcap") }
        XCTAssertEqual(Set(names.map { String($0.dropLast(5)) }), Set(Self.expected.keys))
        for name in names.sorted() {
            let r = try TestSupport.sensor(["replay", "--no-dns-events", dir.appendingPathComponent(name).path])
            XCTAssertEqual(r.status, 0, "\(name): \(r.stderr)")
            let events = try TestSupport.events(r)
            let alerts = events.filter { TestSupport.value($0, "rule.category") != nil }
            XCTAssertTrue(alerts.isEmpty, "\(name): \(alerts.map { TestSupport.value($0, "message") ?? "" })")
            let flows = events.filter { TestSupport.value($0, "event.dataset") as? String == "sensor.flow" }
            XCTAssertFalse(flows.isEmpty, name)
            let want = Self.expected[String(name.dropLast(5))] ?? nil
            for f in flows {
                XCTAssertEqual(TestSupport.value(f, "network.protocol") as? String, want, "\(name): \(f)")
            }
        }
    }
}
