import ConfigKit
import Foundation
import XCTest
@testable import Detectors
import PacketCore

/// Synthetic schedules through the beacon statistics: the more regular the schedule, the higher the score.
final class BeaconScorerTests: XCTestCase {
    struct Rng {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }
    }

    let t0: Int64 = 1_700_000_000_000_000_000
    let hour: Int64 = 3_600_000_000_000

    func score(_ starts: [Int64], sizes: [Int64]? = nil, p: BeaconScoring = BeaconScoring()) -> BeaconScore? {
        let s = sizes ?? starts.map { _ in 512 }
        return BeaconScorer.score(starts: starts, sizes: s, observedFrom: t0, observedTo: (starts.max() ?? t0) + 60_000_000_000, parameters: p)
    }

    /// Two hours of each schedule, scored over the same observation window.
    func schedules(seed: UInt64) -> (fixed: [Int64], jitter: [Int64], exponential: [Int64], bursts: [Int64]) {
        var rng = Rng(state: seed)
        var fixed: [Int64] = [], jitter: [Int64] = [], expo: [Int64] = [], bursts: [Int64] = []
        var t = t0
        while t < t0 + 2 * hour { fixed.append(t); t += 60_000_000_000 }
        t = t0
        while t < t0 + 2 * hour { jitter.append(t); t += Int64((60 * (0.8 + 0.4 * rng.unit())) * 1e9) }
        t = t0
        while t < t0 + 2 * hour { expo.append(t); t += Int64(-60 * log(1 - rng.unit()) * 1e9) }
        // Bursts: 3–8 connections a few seconds apart, then 5–25 minutes of silence.
        t = t0
        while t < t0 + 2 * hour {
            for _ in 0..<(3 + Int(rng.next() % 6)) { bursts.append(t); t += Int64((2 + 3 * rng.unit()) * 1e9) }
            t += Int64((300 + 1200 * rng.unit()) * 1e9)
        }
        return (fixed, jitter, expo, bursts)
    }

    func testScoresOrderFixedJitterExponentialBursts() throws {
        for seed in [1, 2, 3, 42, 1234] as [UInt64] {
            let s = schedules(seed: seed)
            var rng = Rng(state: seed)
            let fixed = try XCTUnwrap(score(s.fixed))
            let jitter = try XCTUnwrap(score(s.jitter))
            // Random timing with sizes that vary as real browsing does.
            let expo = try XCTUnwrap(score(s.exponential, sizes: s.exponential.map { _ in Int64(200 + rng.next() % 4000) }))
            let bursts = try XCTUnwrap(score(s.bursts, sizes: s.bursts.map { _ in Int64(200 + rng.next() % 4000) }))
            if seed == 42 {
                print("beacon scores (seed 42): fixed \(fixed.score), jitter ±20% \(jitter.score), exponential \(expo.score), bursts \(bursts.score)")
            }
            XCTAssertGreaterThan(fixed.score, jitter.score, "seed \(seed)")
            XCTAssertGreaterThan(jitter.score, expo.score, "seed \(seed)")
            XCTAssertGreaterThan(jitter.score, bursts.score, "seed \(seed)")
            let threshold = BeaconRules().threshold
            XCTAssertGreaterThanOrEqual(fixed.score, 0.95, "seed \(seed)")
            XCTAssertGreaterThanOrEqual(jitter.score, threshold, "seed \(seed): ±20% jitter must still alert")
            XCTAssertLessThan(expo.score, threshold, "seed \(seed): random timing must not alert")
            XCTAssertLessThan(bursts.score, threshold, "seed \(seed): bursts must not alert")
            XCTAssertEqual(fixed.medianIntervalSeconds, 60, accuracy: 0.001)
            XCTAssertEqual(jitter.medianIntervalSeconds, 60, accuracy: 8)
            // Same timing with random sizes scores lower on the size parts only.
            let fixedRandomSizes = try XCTUnwrap(score(s.fixed, sizes: s.fixed.map { _ in Int64(200 + rng.next() % 4000) }))
            XCTAssertEqual(fixedRandomSizes.intervalDispersion, fixed.intervalDispersion)
            XCTAssertLessThan(fixedRandomSizes.sizeDispersion, fixed.sizeDispersion)
        }
    }

    /// ATT&CK tags follow the identified protocol: an unidentified one (custom C2 over raw UDP or TCP) is
    /// Non-Application Layer Protocol, never Web Protocols; only identified protocols get a T1071 sub-technique.
    func testTechniquesFollowTheIdentifiedProtocol() {
        func ids(_ p: AppProtocol, _ standard: Bool) -> [String] { BeaconDetector.techniques(for: p, standardPort: standard).map(\.id) }
        XCTAssertEqual(ids(.unknown, false), ["T1095", "T1571"])
        XCTAssertEqual(ids(.http, true), ["T1071.001"])
        XCTAssertEqual(ids(.tls, true), ["T1071.001", "T1573"])
        XCTAssertEqual(ids(.dns, true), ["T1071.004"])
        XCTAssertEqual(ids(.ssh, false), ["T1573", "T1571"])
        XCTAssertEqual(ids(.ntp, true), ["T1071"])
    }

    func testBowleySkewGuardAndRITAQuartiles() {
        // Spread below 10 s: skewness is not used.
        XCTAssertEqual(BeaconScorer.bowley(1, 2, 9, minIQR: 10), 0)
        // Median on a quartile: not used.
        XCTAssertEqual(BeaconScorer.bowley(10, 10, 40, minIQR: 10), 0)
        XCTAssertEqual(BeaconScorer.bowley(10, 20, 40, minIQR: 10), (10 + 40 - 40) / 30.0)
        XCTAssertEqual(BeaconScorer.quartiles([1, 2, 3, 4, 5]).1, 3)
        XCTAssertEqual(BeaconScorer.mad([1, 2, 3, 4, 100], median: 3), 1)
    }

    func testTooFewDistinctStartsAreNotScored() {
        // Five connections, but two pairs are parallel (within the merge window): three distinct starts.
        let s: [Int64] = [t0, t0 + 100_000_000, t0 + 60_000_000_000, t0 + 60_200_000_000, t0 + 120_000_000_000]
        XCTAssertNil(score(s))
        XCTAssertNotNil(score(s + [t0 + 180_000_000_000]))
    }

    /// Whole-second timestamps: a burst of connections one second apart is one start, and the interval
    /// dispersion is floored at half a second, so rounding does not make chatter look periodic.
    func testWholeSecondArtefactsDoNotFakePeriodicity() throws {
        var starts: [Int64] = []
        for burst in 0..<10 { for k in 0..<5 { starts.append(t0 + Int64(burst) * 37_000_000_000 + Int64(k) * 1_000_000_000) } }
        let s = try XCTUnwrap(score(starts))
        XCTAssertTrue(s.wholeSecondTimestamps)
        XCTAssertEqual(s.distinctStarts, 10, "one-second steps merge into one start per burst")
        // The same bursts at sub-second resolution are five starts each, 1 s apart: a median under min_interval.
        let fine = starts.map { $0 + 123_456 }
        let f = try XCTUnwrap(score(fine))
        XCTAssertEqual(f.medianIntervalSeconds, 1, accuracy: 0.01)
        XCTAssertLessThan(f.medianIntervalSeconds, BeaconScoring().minIntervalSeconds)
    }

    func testRulesFileErrorsCarryLines() throws {
        let text = """
        beaconing:
          threshold: 1.5
          min_starts: 2
          weights:
            histogram: lots
          ignore:
            udp_ports: [53, 70000]
            hosts: [.example.com]
          bogus: 1
        """
        let root = try YAMLDocument.parse(text, file: "beaconing.yaml")
        do {
            _ = try BeaconRules.parse(root!)
            XCTFail("expected issues")
        } catch {
            let lines = error.issues.map(\.line).sorted()
            XCTAssertEqual(error.issues.count, 5, "\(error.issues)")
            XCTAssertTrue(lines.contains(1) || lines.contains(2), "\(lines)")
            XCTAssertTrue(error.issues.contains { $0.message.contains("70000") })
            XCTAssertTrue(error.issues.contains { $0.message.contains("bogus") })
        }
        let shipped = TestSupportPaths.repositoryRoot + "/Rules"
        XCTAssertNoThrow(try BeaconRules.load(directory: shipped))
        XCTAssertNoThrow(try C2PortRules.load(directory: shipped))
    }

    /// The shipped rules files say exactly what the defaults in code say (one source of truth in effect).
    func testShippedRulesEqualDefaults() throws {
        let dir = TestSupportPaths.repositoryRoot + "/Rules"
        let b = try BeaconRules.load(directory: dir), d = BeaconRules()
        XCTAssertEqual(b.scoring, d.scoring)
        XCTAssertEqual(b.threshold, d.threshold)
        XCTAssertEqual(b.ignoreUDPPorts, d.ignoreUDPPorts)
        XCTAssertEqual(b.ignoreHosts, d.ignoreHosts)
        XCTAssertEqual(b.prevalence, d.prevalence)
        XCTAssertEqual(b.strobeConnections, d.strobeConnections)
        XCTAssertEqual(b.longConnection, d.longConnection)
        let c = try C2PortRules.load(directory: dir), e = C2PortRules()
        XCTAssertEqual(c.standardPorts, e.standardPorts)
        XCTAssertEqual(c.otherServices, e.otherServices)
        XCTAssertEqual(c.suspiciousPorts, e.suspiciousPorts)
        XCTAssertEqual(c.threshold, e.threshold)
        XCTAssertEqual(c.suppressSeconds, e.suppressSeconds)
        XCTAssertEqual(c.bareIP, e.bareIP)
    }

    /// Allowlisted names: an exact entry, or a dot entry's domain and any name under it; ASCII names are
    /// compared as bytes, others (and non-ASCII entries) as Strings, with the same answers.
    func testIgnoredHosts() {
        var r = BeaconRules()
        r.ignoreHosts = [".windowsupdate.com", "motd.ubuntu.com", ".bücher.example"]
        XCTAssertNil(r.asciiIgnoreHosts)
        for rules in [r, { var a = r; a.ignoreHosts.removeLast(); return a }()] {
            XCTAssertTrue(rules.ignoresHost("windowsupdate.com"))
            XCTAssertTrue(rules.ignoresHost("a.b.windowsupdate.com"))
            XCTAssertTrue(rules.ignoresHost("motd.ubuntu.com"))
            XCTAssertFalse(rules.ignoresHost("xwindowsupdate.com"))
            XCTAssertFalse(rules.ignoresHost("windowsupdate.com.evil"))
            XCTAssertFalse(rules.ignoresHost("x.motd.ubuntu.com"))
            XCTAssertFalse(rules.ignoresHost("otd.ubuntu.com"))
            XCTAssertFalse(rules.ignoresHost(""))
            XCTAssertTrue(rules.ignoresHost("dl.ä.windowsupdate.com"))
        }
        XCTAssertTrue(r.ignoresHost("shop.bücher.example"))
        var ascii = r
        ascii.ignoreHosts.removeLast()
        XCTAssertNotNil(ascii.asciiIgnoreHosts)
        XCTAssertFalse(ascii.ignoresHost("shop.bücher.example"))
    }
}

enum TestSupportPaths {
    static let repositoryRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        while url.path != "/" {
            url.deleteLastPathComponent()
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { return url.path }
        }
        return FileManager.default.currentDirectoryPath
    }()
}
