import ConfigKit
import Events
import Foundation
import PacketCore
import TestSupport
import XCTest
@testable import Evidence

final class LookbackRingTests: XCTestCase {

    /// Against a plain array model: whatever the frame sizes, the ring holds the newest frames intact,
    /// within its byte and record bounds, oldest first.
    func testRingKeepsNewestFramesIntact() throws {
        let ring = try LookbackRing(bytes: 10_000, maxAge: .seconds(1000), snapLength: 1500, maxPackets: 200)
        var model: [(Int, [UInt8])] = []
        var rng = SystemRandomNumberGenerator()
        for i in 0..<5000 {
            let len = Int.random(in: 0...1500, using: &rng)
            let frame = (0..<len).map { UInt8(truncatingIfNeeded: $0 &+ i) }
            frame.withUnsafeBytes { ring.append(timestamp: Timestamp(nanoseconds: Int64(i)), wireLength: 100, linkType: .ethernet, frame: $0) }
            model.append((i, frame))
            var got: [(Int, [UInt8])] = []
            ring.forEach { got.append((Int($0.timestamp.nanoseconds), Array($0.bytes))) }
            XCTAssertLessThanOrEqual(ring.storedBytes, 10_000)
            XCTAssertLessThanOrEqual(got.count, 200)
            XCTAssertFalse(got.isEmpty)
            // What is held is a suffix of what went in, byte for byte.
            let tail = model.suffix(got.count)
            XCTAssertEqual(got.map(\.0), tail.map(\.0), "at \(i)")
            XCTAssertTrue(zip(got, tail).allSatisfy { $0.1 == $1.1 }, "frame bytes at \(i)")
            if got.map(\.0) != tail.map(\.0) { return }
        }
        XCTAssertGreaterThan(ring.counters.evictedForSpace + ring.counters.evictedForCount, 0)
    }

    func testAgeBoundAndSnapLength() throws {
        let ring = try LookbackRing(bytes: 1 << 20, maxAge: .seconds(10), snapLength: 96)
        let frame = [UInt8](repeating: 7, count: 1514)
        for s in 0..<30 {
            frame.withUnsafeBytes { ring.append(timestamp: Timestamp(seconds: Int64(s)), wireLength: 1514, linkType: .ethernet, frame: $0) }
        }
        XCTAssertEqual(ring.count, 11, "packets within 10 s of the newest")
        XCTAssertEqual(ring.oldest, Timestamp(seconds: 19))
        XCTAssertEqual(ring.counters.evictedForAge, 19)
        XCTAssertEqual(ring.counters.truncated, 30)
        ring.forEach { XCTAssertEqual($0.bytes.count, 96); XCTAssertEqual($0.wireLength, 1514) }
    }
}

final class AgeTests: XCTestCase {
    final class MemorySink: CiphertextSink {
        var bytes: [UInt8] = []
        func writeCiphertext(_ b: UnsafeRawBufferPointer) throws { bytes.append(contentsOf: b) }
    }

    func testRecipientParsing() throws {
        // The example recipient from age's README.
        let r = try AgeRecipient("age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p")
        XCTAssertEqual(r.publicKey.count, 32)
        XCTAssertEqual(Bech32.encode(hrp: "age", data: Bech32.convertBits(r.publicKey, from: 8, to: 5, pad: true)!), r.text)
        XCTAssertThrowsError(try AgeRecipient("age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8q")) // checksum
        XCTAssertThrowsError(try AgeRecipient("age1qqqqqqqq")) // too short
        XCTAssertThrowsError(try AgeRecipient("ssh-ed25519 AAAA"))
        XCTAssertThrowsError(try AgeRecipient("AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ"))
    }

    /// Our stream decrypts with the real `age` at every chunk boundary that matters (empty, one byte,
    /// exactly one chunk, one chunk plus one, several chunks), to two recipients.
    func testRealAgeDecryptsOurStream() throws {
        guard TestSupport.hasTool("age"), TestSupport.hasTool("age-keygen") else { throw XCTSkip("age is not installed") }
        let work = try TestSupport.temporaryDirectory("age-test")
        defer { try? FileManager.default.removeItem(at: work) }
        let key = try AgeKey.generate(in: work)
        let other = try AgeKey.generate(in: work.appendingPathComponent("x", isDirectory: true).creating())
        for size in [0, 1, 65535, 65536, 65537, 200_000] {
            let plain = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
            let sink = MemorySink()
            let w = try AgeStreamWriter(recipients: [try AgeRecipient(key.recipient), try AgeRecipient(other.recipient)], sink: sink)
            // Written in uneven pieces, as packets arrive.
            var i = 0
            while i < plain.count { let n = min(1000 + i % 777, plain.count - i); try w.write(Array(plain[i..<(i + n)])); i += n }
            let (ph, ch) = try w.finish()
            XCTAssertEqual(ph, Hex.string(Crypto.SHA256.hash(data: plain)))
            XCTAssertEqual(ch, Hex.string(Crypto.SHA256.hash(data: sink.bytes)))
            let enc = work.appendingPathComponent("f\(size).age")
            try Data(sink.bytes).write(to: enc)
            for k in [key, other] {
                let out = work.appendingPathComponent("f\(size).out").path
                try? FileManager.default.removeItem(atPath: out)
                try k.decrypt(enc.path, to: out)
                // age creates no output file for an empty plaintext.
                let got = FileManager.default.contents(atPath: out).map { [UInt8]($0) } ?? []
                XCTAssertEqual(got, plain, "size \(size)")
            }
        }
    }
}

import Crypto

extension URL {
    func creating() throws -> URL {
        try FileManager.default.createDirectory(at: self, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        return self
    }
}

final class EvidenceRulesTests: XCTestCase {
    func testRepositoryRulesParse() throws {
        let triggers = try EvidenceRules.load(path: TestSupport.repositoryRoot.appendingPathComponent("Rules/evidence.yaml").path)
        XCTAssertFalse(triggers.isEmpty)
        XCTAssertTrue(triggers.contains { $0.categories.contains("beaconing") })
    }

    func testRuleErrorsCarryLines() {
        let text = """
        triggers:
          - name: x
            categories: [beaconing, nosuch]
            scope: everything
            max_bytes: 12 parsecs
        """
        XCTAssertThrowsError(try EvidenceRules.parse(text: text, file: "evidence.yaml")) { e in
            let issues = (e as! ConfigIssues).issues
            XCTAssertEqual(issues.count, 3, "\(issues)")
            XCTAssertTrue(issues.contains { $0.line == 3 && $0.message.contains("nosuch") })
            XCTAssertTrue(issues.contains { $0.line == 4 && $0.message.contains("flow, host_pair or host") })
        }
    }

    func testConfigSection() throws {
        let c = try SensorConfigurationProbe.parse("""
        evidence:
          directory: /var/lib/sensor/evidence
          recipients: [age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p]
          authorization: IR-7
          retention: 30d
          lookback: {bytes: 32MiB, seconds: 45}
          snaplen: 96
          timestamp_resolution: us
          max_concurrent: 3
          max_disk: 1GiB
        """)
        XCTAssertTrue(c.enabled)
        XCTAssertEqual(c.retentionSeconds, 30 * 86400)
        XCTAssertEqual(c.lookbackBytes, 32 << 20)
        XCTAssertEqual(c.lookbackSeconds, 45)
        XCTAssertEqual(c.snapLength, 96)
        XCTAssertEqual(c.timestampResolution, .microseconds)
        XCTAssertEqual(c.maxConcurrentCaptures, 3)
        XCTAssertEqual(c.maxDiskBytes, 1 << 30)
        XCTAssertEqual(c.custodyLogPath, "/var/lib/sensor/evidence/custody.jsonl")
        XCTAssertThrowsError(try SensorConfigurationProbe.parse("evidence:\n  recipients: [age1nope]\n"))
    }
}

import SensorRuntime

enum SensorConfigurationProbe {
    static func parse(_ text: String) throws -> EvidenceConfiguration {
        try SensorConfiguration.parse(text: text).evidence
    }
}

final class CaptureScopeTests: XCTestCase {
    func testScopesFromAlertsAndTheirBPF() {
        let a = IPAddress(ipv4: 0x0A00_0001), b = IPAddress(ipv4: 0xC633_6407)
        let alert = Alert(timestamp: .zero, category: .beaconing, ruleID: "r", ruleName: "n", techniques: [], severity: .high, riskScore: 1,
                          message: "m", source: Endpoint(ip: a, port: 49152), destination: Endpoint(ip: b, port: 4444), ipProtocol: IPProtocol.tcp)
        XCTAssertEqual(CaptureScope(kind: .flow, alert: alert)?.bpf, "tcp and ip host 10.0.0.1 and ip host 198.51.100.7 and port 49152 and port 4444")
        XCTAssertEqual(CaptureScope(kind: .hostPair, alert: alert)?.bpf, "ip host 10.0.0.1 and ip host 198.51.100.7")
        XCTAssertEqual(CaptureScope(kind: .host, alert: alert)?.bpf, "ip host 10.0.0.1")
        let hostOnly = Alert(timestamp: .zero, category: .dnsTunneling, ruleID: "r", ruleName: "n", techniques: [], severity: .high, riskScore: 1,
                             message: "m", relatedIPs: [a])
        XCTAssertEqual(CaptureScope(kind: .flow, alert: hostOnly)?.kind, .host, "narrows no further than the alert names")
        let host = CaptureScope(kind: .host, a: a)
        XCTAssertTrue(host.covers(CaptureScope(kind: .hostPair, alert: alert)!))
        XCTAssertFalse(CaptureScope(kind: .flow, alert: alert)!.covers(host))
    }
}
