import Foundation
import XCTest
@testable import Events
import PacketCore
import TestSupport

/// Keeps every event written to it (a real sink; what tests and in-process consumers use).
final class CollectingSink: EventSink, @unchecked Sendable {
    let name = "collect"
    var lines: [[UInt8]] = []
    var metadata: [EventMetadata] = []
    func write(_ json: UnsafeRawBufferPointer, metadata: EventMetadata) {
        lines.append(Array(json))
        self.metadata.append(metadata)
    }
    func flush() throws {}
    func close() throws {}
    var statistics: SinkStatistics { SinkStatistics() }
    func objects() throws -> [[String: Any]] {
        try lines.map { try JSONSerialization.jsonObject(with: Data($0)) as! [String: Any] }
    }
}

final class EventEmitterTests: XCTestCase {
    func makeEmitter() -> (EventEmitter, CollectingSink) {
        let sink = CollectingSink()
        return (EventEmitter(observer: ObserverInfo(name: "s1", hostname: "h1"), sinks: [sink]), sink)
    }

    func testAlertShapeConformsToSchema() throws {
        let (emitter, sink) = makeEmitter()
        var seen: [String] = []
        emitter.alertObservers.append { seen.append($0.ruleID) }
        let alert = Alert(timestamp: Timestamp(seconds: 1_700_000_000), category: .dnsTunneling, ruleID: "dns_tunneling.channel",
                          ruleName: "DNS tunnelling", ruleDescription: "Encoded data in DNS names.",
                          techniques: [.dnsProtocol, .exfiltrationOverUnencryptedNonC2],
                          severity: .high, riskScore: 73, message: "client tunnels through example.com",
                          source: Endpoint(ip: IPAddress("10.1.1.1")!, port: 5353), destination: Endpoint(ip: IPAddress("8.8.8.8")!, port: 53),
                          ipProtocol: 17, relatedHosts: ["example.com"],
                          details: [("domain", .string("example.com")), ("queries", .int(42)), ("samples", .array([.string("a\"b\u{1}")]))])
        emitter.emit(alert)
        let e = try XCTUnwrap(try sink.objects().first)
        XCTAssertEqual(try EventSchema.load().problems(e), [])
        XCTAssertEqual(TestSupport.value(e, "rule.category") as? String, "dns_tunneling")
        // ECS: parents in threat.technique.*, sub-techniques in threat.technique.subtechnique.*, tactics with ids.
        XCTAssertEqual(TestSupport.value(e, "threat.technique.id") as? [String], ["T1071", "T1048"])
        XCTAssertEqual(TestSupport.value(e, "threat.technique.name") as? [String], ["Application Layer Protocol", "Exfiltration Over Alternative Protocol"])
        XCTAssertEqual(TestSupport.value(e, "threat.technique.reference") as? [String],
                       ["https://attack.mitre.org/techniques/T1071/", "https://attack.mitre.org/techniques/T1048/"])
        XCTAssertEqual(TestSupport.value(e, "threat.technique.subtechnique.id") as? [String], ["T1071.004", "T1048.003"])
        XCTAssertEqual(TestSupport.value(e, "threat.technique.subtechnique.name") as? [String], ["DNS", "Exfiltration Over Unencrypted Non-C2 Protocol"])
        XCTAssertEqual(TestSupport.value(e, "threat.technique.subtechnique.reference") as? [String],
                       ["https://attack.mitre.org/techniques/T1071/004/", "https://attack.mitre.org/techniques/T1048/003/"])
        XCTAssertEqual(TestSupport.value(e, "threat.tactic.id") as? [String], ["TA0011", "TA0010"])
        XCTAssertEqual(TestSupport.value(e, "threat.tactic.name") as? [String], ["Command and Control", "Exfiltration"])
        XCTAssertEqual(TestSupport.value(e, "threat.tactic.reference") as? [String],
                       ["https://attack.mitre.org/tactics/TA0011/", "https://attack.mitre.org/tactics/TA0010/"])
        XCTAssertEqual(TestSupport.value(e, "rule.description") as? String, "Encoded data in DNS names.")
        XCTAssertEqual(TestSupport.value(e, "rule.version") as? String, "2")
        XCTAssertEqual(TestSupport.value(e, "rule.reference") as? String, "https://attack.mitre.org/techniques/T1071/004/")
        XCTAssertEqual(try ECSReference.load().problems(e), [])
        // A whole-number score is still written as a float (73.0, not 73): Elasticsearch would map an integer as long.
        XCTAssertTrue(ECSReference.isWrittenAsFloat(TestSupport.value(e, "event.risk_score") as Any))
        XCTAssertEqual(TestSupport.value(e, "event.severity") as? Int, 3)
        XCTAssertEqual(TestSupport.value(e, "related.ip") as? [String], ["10.1.1.1", "8.8.8.8"])
        XCTAssertEqual(TestSupport.value(e, "spanwatch.dns_tunneling.samples") as? [String], ["a\"b\u{1}"])
        XCTAssertEqual(TestSupport.value(e, "network.direction") as? String, "outbound")
        XCTAssertEqual(sink.metadata.first?.severity, 3)
        XCTAssertEqual(seen, ["dns_tunneling.channel"])
        XCTAssertEqual(TestSupport.value(e, "event.id") as? String, alert.id)
        XCTAssertEqual(alert.id.count, 20)
    }

    func testCommunityIDRangeAndFlowEvent() throws {
        let (emitter, sink) = makeEmitter()
        let table = FlowTable()
        var p = DecodedPacket()
        p.timestamp = Timestamp(seconds: 10)
        p.ipVersion = 4; p.ipProtocol = 6
        p.source = IPAddress("128.232.110.120")!; p.destination = IPAddress("66.35.250.204")!
        p.sourcePort = 34855; p.destinationPort = 80; p.hasPorts = true
        p.tcpFlags = [.syn]; p.wireLength = 60
        _ = table.update(p) { _, _, _ in }
        table.flushAll { r, why, _ in emitter.emitFlow(r, reason: why) }
        let line = try XCTUnwrap(sink.lines.first)
        let range = try XCTUnwrap(sink.metadata.first?.communityIDRange)
        XCTAssertEqual(String(decoding: line[range], as: UTF8.self), "1:LQU9qZlK+B5F3KDmev6m5PMibrg=")
        let e = try XCTUnwrap(try sink.objects().first)
        XCTAssertEqual(try EventSchema.load().problems(e), [])
        XCTAssertEqual(TestSupport.value(e, "spanwatch.flow.tcp_state") as? String, "syn_sent")
        XCTAssertEqual(TestSupport.value(e, "network.direction") as? String, "external")
        XCTAssertEqual(TestSupport.value(e, "related.ip") as? [String], ["128.232.110.120", "66.35.250.204"])
        // event.id: 32 hex digits from the event's bytes: the same flow gives the same id, another flow another.
        let id = try XCTUnwrap(TestSupport.value(e, "event.id") as? String)
        XCTAssertEqual(id.count, 32)
        XCTAssertTrue(id.allSatisfy { $0.isHexDigit } && id != String(repeating: "0", count: 32))
        let (again, againSink) = makeEmitter()
        var other = p
        other.sourcePort = 34856
        for (packet, e2) in [(p, again), (other, again)] {
            let t = FlowTable()
            _ = t.update(packet) { _, _, _ in }
            t.flushAll { r, why, _ in e2.emitFlow(r, reason: why) }
        }
        let ids = try againSink.objects().map { TestSupport.value($0, "event.id") as? String }
        XCTAssertEqual(ids.first, id)
        XCTAssertNotEqual(ids.last, id)
        XCTAssertEqual(ids.count, 2)
    }

    /// Any byte string becomes valid JSON that decodes to the same text (invalid UTF-8 bytes as \u00XX).
    func testEscapingAlwaysYieldsValidJSON() throws {
        var rng = SystemRandomNumberGenerator()
        var w = JSONWriter()
        for i in 0..<5000 {
            let n = Int.random(in: 0...64, using: &rng)
            var raw = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
            if i % 3 == 0 { raw = Array("plain \"quoted\" \\ slash ü 中文 \n\t".utf8) + raw.prefix(4) }
            w.reset()
            w.beginObject()
            raw.withUnsafeBytes { w.field("s", bytes: $0) }
            w.field("n", Int64(-42))
            w.field("u", UInt64.max)
            w.field("d", 0.25)
            w.endObject()
            let obj = try JSONSerialization.jsonObject(with: Data(w.bytes)) as? [String: Any]
            let s = try XCTUnwrap(obj?["s"] as? String)
            if let valid = String(validatingUTF8: raw.map { CChar(bitPattern: $0) } + [0]), !raw.contains(0) {
                XCTAssertEqual(s, valid)
            }
            XCTAssertEqual(obj?["n"] as? Int, -42)
            XCTAssertEqual(obj?["d"] as? Double, 0.25)
        }
    }
}
