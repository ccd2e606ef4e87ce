import ConfigKit
import Events
import Foundation
import PacketCore
import TestSupport
import XCTest
@testable import Evidence

final class LookbackRingTests: XCTestCase {

    /// Against a plain array model: whatever the frame sizes and however time moves (bursts where bytes
    /// limit the ring, quiet spells where age does and the ring laps early, pauses that age everything
    /// out), the ring holds the newest frames intact and oldest first, within its byte and age bounds,
    /// and it evicts a frame still within the age bound only when it is as full as a plain ring would be.
    func testRingKeepsNewestFramesIntact() throws {
        let capacity = 40_000, snap = 1500, maxEntry = LookbackRing.entrySize(snap), age: Int64 = 5_000_000_000
        var relocations: UInt64 = 0
        for seed in 0..<6 as Range<UInt64> {
            let ring = try LookbackRing(bytes: capacity, maxAge: Timestamp.Duration(nanoseconds: age), snapLength: snap)
            var rng = SeededRandom(seed: seed)
            var model: [(Int64, [UInt8])] = []
            var now: Int64 = 0
            var gap: Int64 = 1_000_000
            for i in 0..<6000 {
                // Phases: a burst (1 ms apart), a quiet spell (0.1-0.5 s apart: age limits), now and then a pause.
                if i % 60 == 0 { gap = [1_000_000, 100_000_000, 250_000_000, 500_000_000][Int.random(in: 0..<4, using: &rng)] }
                now += Int.random(in: 0..<200, using: &rng) == 0 ? 7_000_000_000 : Int64.random(in: 0...gap, using: &rng)
                let len = Int.random(in: 0..<8, using: &rng) == 0 ? Int.random(in: 0...2000, using: &rng) : Int.random(in: 40...600, using: &rng)
                let frame = (0..<len).map { UInt8(truncatingIfNeeded: $0 &+ i) }
                frame.withUnsafeBytes { ring.append(timestamp: Timestamp(nanoseconds: now), wireLength: len, linkType: .ethernet, frame: $0) }
                model.append((now, Array(frame.prefix(snap))))
                var got: [(Int64, [UInt8])] = []
                ring.forEach { got.append(($0.timestamp.nanoseconds, Array($0.bytes))) }
                let held = got.reduce(0) { $0 + LookbackRing.entrySize($1.1.count) }
                XCTAssertLessThanOrEqual(held, capacity)
                XCTAssertLessThanOrEqual(ring.touchedBytes, capacity)
                XCTAssertEqual(got.count, ring.count)
                XCTAssertFalse(got.isEmpty)
                // What is held is a suffix of what went in, byte for byte, and nothing older than the age bound.
                let tail = model.suffix(got.count)
                XCTAssertTrue(zip(got, tail).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }, "seed \(seed), packet \(i)")
                XCTAssertGreaterThanOrEqual(got[0].0, now - age)
                // The newest frame not held went for age, or when the ring was full: it was the last evicted,
                // nothing left since, so what is held now is at least what was held then.
                if got.count < model.count {
                    let missing = model[model.count - got.count - 1]
                    XCTAssertTrue(missing.0 < now - age || held + LookbackRing.entrySize(missing.1.count) > capacity - 3 * maxEntry,
                                  "seed \(seed), packet \(i): a frame within the age bound evicted with \(held) bytes held")
                }
                if !zip(got, tail).allSatisfy({ $0.0 == $1.0 }) { return }
            }
            XCTAssertGreaterThan(ring.counters.evictedForSpace, 0, "seed \(seed)")
            XCTAssertGreaterThan(ring.counters.evictedForAge, 0, "seed \(seed)")
            relocations += ring.counters.relocations
        }
        XCTAssertGreaterThan(relocations, 0, "the phases reach the early-lap-then-burst case")
    }

    /// A clock step back (merged captures, a 32-bit seconds wrap, an NTP step) empties the ring of the
    /// packets from before it: no alert window after the step reaches them, and a one-sided age bound
    /// would keep them, and everything after them, until the clock caught up again.
    func testClockStepBackAgesOutThePacketsBeforeIt() throws {
        let ring = try LookbackRing(bytes: 1 << 20, maxAge: .seconds(10), snapLength: 1500)
        let frame = [UInt8](repeating: 3, count: 100)
        for s in [1000, 1001, 1002, 1002, 1001] as [Int64] {  // slightly out of order: kept
            frame.withUnsafeBytes { ring.append(timestamp: Timestamp(seconds: s), wireLength: 100, linkType: .ethernet, frame: $0) }
        }
        XCTAssertEqual(ring.count, 5)
        for s in [20, 21, 22] as [Int64] {
            frame.withUnsafeBytes { ring.append(timestamp: Timestamp(seconds: s), wireLength: 100, linkType: .ethernet, frame: $0) }
        }
        XCTAssertEqual(ring.count, 3)
        XCTAssertEqual(ring.oldest, Timestamp(seconds: 20))
        XCTAssertEqual(ring.counters.evictedForAge, 5)
    }

    /// When the age bound limits the ring, the memory it writes stays near twice one age window of
    /// traffic instead of sweeping the whole arena (what made the ring cost a cache miss per line).
    func testAgeLimitedRingStaysSmall() throws {
        let ring = try LookbackRing(bytes: 16 << 20, maxAge: .seconds(10), snapLength: 2000)
        let frame = [UInt8](repeating: 1, count: 1000)
        for s in 0..<20_000 {
            frame.withUnsafeBytes { ring.append(timestamp: Timestamp(nanoseconds: Int64(s) * 100_000_000), wireLength: 1000, linkType: .ethernet, frame: $0) }
        }
        let window = 101 * LookbackRing.entrySize(1000)  // 10 s at 10 frames per second, both ends included
        XCTAssertEqual(ring.count, 101)
        XCTAssertEqual(ring.counters.evictedForSpace, 0)
        XCTAssertLessThanOrEqual(ring.touchedBytes, 2 * window + LookbackRing.entrySize(1000))
        var previous: Int64 = -1
        ring.forEach { XCTAssertGreaterThan($0.timestamp.nanoseconds, previous); previous = $0.timestamp.nanoseconds }
        XCTAssertEqual(previous, 19_999 * 100_000_000)
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
        let triggers = try EvidenceRules.load(path: TestSupport.repositoryRoot.appendingPathComponent("Rules/evidence.yaml").path).triggers
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
          lookback: {bytes: 32MiB, seconds: 45, flow_bytes: 64KiB}
          snaplen: 96
          timestamp_resolution: us
          max_concurrent: 3
          max_disk: 1GiB
        """)
        XCTAssertTrue(c.enabled)
        XCTAssertEqual(c.retentionSeconds, 30 * 86400)
        XCTAssertEqual(c.lookbackBytes, 32 << 20)
        XCTAssertEqual(c.lookbackSeconds, 45)
        XCTAssertEqual(c.lookbackFlowBytes, 64 << 10)
        XCTAssertEqual(EvidenceConfiguration().lookbackFlowBytes, 0, "off unless configured")
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
        let alert = Alert(timestamp: .zero, category: .beaconing, ruleID: "r", ruleName: "n", ruleDescription: "d", techniques: [], severity: .high, riskScore: 1,
                          message: "m", source: Endpoint(ip: a, port: 49152), destination: Endpoint(ip: b, port: 4444), ipProtocol: IPProtocol.tcp)
        XCTAssertEqual(CaptureScope(kind: .flow, alert: alert)?.bpf, "tcp and ip host 10.0.0.1 and ip host 198.51.100.7 and port 49152 and port 4444")
        XCTAssertEqual(CaptureScope(kind: .hostPair, alert: alert)?.bpf, "ip host 10.0.0.1 and ip host 198.51.100.7")
        XCTAssertEqual(CaptureScope(kind: .host, alert: alert)?.bpf, "ip host 10.0.0.1")
        let hostOnly = Alert(timestamp: .zero, category: .dnsTunneling, ruleID: "r", ruleName: "n", ruleDescription: "d", techniques: [], severity: .high, riskScore: 1,
                             message: "m", relatedIPs: [a])
        XCTAssertEqual(CaptureScope(kind: .flow, alert: hostOnly)?.kind, .host, "narrows no further than the alert names")
        let host = CaptureScope(kind: .host, a: a)
        XCTAssertTrue(host.covers(CaptureScope(kind: .hostPair, alert: alert)!))
        XCTAssertFalse(CaptureScope(kind: .flow, alert: alert)!.covers(host))
    }
}
