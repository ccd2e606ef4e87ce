import XCTest
@testable import Analyzers
@testable import Detectors
import Events
import PacketCore

/// Every detector fed packet times at both ends of `Timestamp.validRange` and jumping between them
/// (1970 ↔ 2116 and back, as a hostile or damaged capture may): nothing traps, windows and rate limits
/// still behave, and alerts carry valid times. The lateral-movement and beacon detectors, whose windows
/// are public API, also take any Int64 time (saturating) — the kind of time that used to trap them.
final class ExtremeTimeTests: AlertCollectingCase {

    static let second: Int64 = 1_000_000_000
    /// The valid extremes, with room for the minutes a schedule built from them spans.
    static let low: Int64 = 0
    static let high: Int64 = Timestamp.validRange.upperBound - 3600 * second
    static let ordinary: Int64 = 1_700_000_000 * second
    /// Ordinary time, both extremes, and back: each jump larger than every window.
    static let jumps: [Int64] = [ordinary, low, high, low, ordinary, high, ordinary]

    func validAlertTimes(file: StaticString = #filePath, line: UInt = #line) {
        for a in alerts {
            XCTAssertTrue(Timestamp.validRange.contains(a.timestamp.nanoseconds), "\(a.ruleID) at \(a.timestamp.nanoseconds)", file: file, line: line)
        }
    }

    // MARK: Lateral movement

    func lateralDetector() -> LateralMovementDetector {
        var rules = LateralMovementRules()
        rules.fanOutDistinctHosts = 3
        rules.sprayDistinctUsers = 3
        rules.bruteForceFailures = 3
        rules.learningPeriod = 60
        return LateralMovementDetector(rules: rules, emitter: emitter)
    }

    /// Everything the detector does with time: fan-out window, first-seen edges after the learning
    /// period, admin-share write → execution window, authentication window, delayed share alerts,
    /// suppression — at every time of `times`, with a tick and a flush after each.
    func driveLateral(_ d: LateralMovementDetector, at times: [Int64]) {
        let svcctl = RPCInterface(uuid: "367abb81-9844-35f1-ad32-98f038001003")
        let srvsvc = RPCInterface(uuid: "4b324fc8-1670-01d3-1278-5a47bf6ee188")
        for (round, ns) in times.enumerated() {
            let t = Timestamp(nanoseconds: ns)
            let source = IPAddress("10.0.0.5")!
            let target = IPAddress("10.0.1.\(round + 1)")!
            d.clockStarted(at: t)
            for h in 0..<4 { d.tcpFlowStarted(source: source, destination: IPAddress("10.0.2.\(round * 4 + h)")!, port: 445, at: t) }
            d.tcpAccepted(server: target, client: source, port: 3389, at: t)
            let ep = SessionEndpoints(client: source, server: target, serverPort: 445)
            d.observe(.treeConnect(path: "\\\\h\\ADMIN$"), on: ep, at: t)
            d.observe(.write(share: "ADMIN$", name: "x\(round).exe"), on: ep, at: t)
            d.observe(.rpcCall(interface: svcctl, opnum: 12, pipe: "svcctl"), on: ep, at: t)
            d.observe(.rpcCall(interface: srvsvc, opnum: 15, pipe: "srvsvc"), on: SessionEndpoints(client: source, server: IPAddress("10.0.3.1")!, serverPort: 445), at: t)
            for u in 0..<4 {
                d.observe(.authentication(AuthenticationAttempt(method: .ntlm, user: "user\(u)", success: false, status: 0xC000_006D)), on: ep, at: t)
            }
            d.tick(t)
        }
        d.finish(Timestamp(nanoseconds: times.last ?? 0))
    }

    func testLateralMovementAcrossValidExtremes() {
        let d = lateralDetector()
        driveLateral(d, at: Self.jumps)
        XCTAssertGreaterThan(d.counters.alerts, 0)
        // The same rule for the same source fires again only once the clock is a suppression period
        // away from its last firing: after each jump (either way) it may, within one instant it may not.
        XCTAssertGreaterThan(d.counters.suppressed, 0)
        XCTAssertTrue(alerts.contains { $0.ruleID == "lateral_movement.fan_out" })
        XCTAssertTrue(alerts.contains { $0.ruleID == "lateral_movement.tool_transfer_execution" })
        XCTAssertTrue(alerts.contains { $0.ruleID == "lateral_movement.password_spray" })
        validAlertTimes()
    }

    /// Times no capture can deliver any more (Int64's ends), still without a trap: every window and
    /// suppression is saturating arithmetic.
    func testLateralMovementSaturatesAtInt64Ends() {
        let d = lateralDetector()
        driveLateral(d, at: [.min, .max, .min, 0, .max])
        XCTAssertGreaterThan(d.counters.alerts, 0)
    }

    /// A fan-out window that ends past Int64.max is "until forever", not a wrapped past: targets reached
    /// at the top of the range still count together.
    func testFanOutWindowAtTheTopOfTheRange() {
        var rules = LateralMovementRules()
        rules.fanOutDistinctHosts = 3
        let d = LateralMovementDetector(rules: rules, emitter: emitter)
        let t = Timestamp.latest
        for h in 1...3 { d.tcpFlowStarted(source: IPAddress("10.0.0.5")!, destination: IPAddress("10.0.2.\(h)")!, port: 445, at: t) }
        XCTAssertEqual(alerts.map(\.ruleID), ["lateral_movement.fan_out"])
        // The window start `t − window` at the bottom of the range drops nothing that is inside it.
        alerts.removeAll()
        let e = LateralMovementDetector(rules: rules, emitter: emitter)
        for h in 1...3 { e.tcpFlowStarted(source: IPAddress("10.0.0.6")!, destination: IPAddress("10.0.2.\(h)")!, port: 445, at: .zero) }
        XCTAssertEqual(alerts.map(\.ruleID), ["lateral_movement.fan_out"])
    }

    // MARK: Beacons

    func testBeaconDetectorAcrossValidExtremes() {
        let f = FlowFactory()
        let d = BeaconDetector(rules: BeaconRules(), emitter: emitter)
        var port: UInt16 = 40000
        for base in Self.jumps {
            // A regular beacon at each end: 60 s apart, eight connections, the clock ticking along.
            for i in 0..<8 {
                port &+= 1
                let start = base + Int64(i) * 60 * Self.second
                let (r, slot) = f.session("10.0.0.5", port, "203.0.113.9", 8443, at: start)
                d.flowEnded(r, reason: .tcpClosed, slot: slot)
                d.tick(Timestamp(nanoseconds: start + Self.second))
            }
        }
        d.finish(Timestamp(nanoseconds: Self.jumps.last!))
        XCTAssertGreaterThan(d.counters.evaluations, 0)
        validAlertTimes()
    }

    func testBeaconDetectorSaturatesAtInt64Ends() {
        let f = FlowFactory()
        let d = BeaconDetector(rules: BeaconRules(), emitter: emitter)
        for (i, base) in [Self.ordinary, Self.low, Self.high].enumerated() {
            let (r, slot) = f.session("10.0.0.5", UInt16(41000 + i), "203.0.113.9", 8443, at: base)
            d.flowEnded(r, reason: .tcpClosed, slot: slot)
        }
        for now: Int64 in [.min, .max, .min, 0, .max] { d.tick(Timestamp(nanoseconds: now)) }
        d.finish(Timestamp(nanoseconds: .min))
        d.finish(Timestamp(nanoseconds: .max))
    }

    /// The scorer's intervals, spans and bins over starts anywhere in Int64 (differences exceed Int64.max).
    func testBeaconScorerOverAnyStarts() throws {
        let p = BeaconScoring()
        let extremes: [Int64] = [.min, .min + 10 * Self.second, -10 * Self.second, 0, 10 * Self.second, .max - 10 * Self.second, .max]
        let s = try XCTUnwrap(BeaconScorer.score(starts: extremes, sizes: extremes, observedFrom: .max, observedTo: .min, parameters: p))
        XCTAssertEqual(s.distinctStarts, extremes.count)
        XCTAssertTrue(s.score.isFinite && (0...1).contains(s.score), "\(s.score)")
        XCTAssertNotNil(BeaconScorer.score(starts: extremes, sizes: [], observedFrom: .min, observedTo: .max, parameters: p))
        // Valid extremes and a jump back: a regular schedule is still regular where it is.
        let regular = (0..<8).map { Timestamp.validRange.upperBound - Int64($0) * 60 * Self.second }
        let r = try XCTUnwrap(BeaconScorer.score(starts: regular, sizes: regular.map { _ in 300 }, observedFrom: 0,
                                                 observedTo: Timestamp.validRange.upperBound, parameters: p))
        XCTAssertEqual(r.medianIntervalSeconds, 60, accuracy: 1e-6)
        XCTAssertEqual(r.intervalDispersion, 1, accuracy: 1e-9)
    }

    // MARK: DNS tunnelling

    func testDNSTunnelDetectorAcrossValidExtremes() {
        var d = FactDriver()
        var n = 0
        for base in Self.jumps {
            d.time = base
            for _ in 0..<40 {
                n += 1
                d.query("\(encodedLabel(n, length: 30)).\(encodedLabel(n + 5000, length: 20)).t.tunnel.co.uk", advance: 50_000_000)
            }
            d.detector.tick(Timestamp(nanoseconds: d.time))
        }
        // One channel alert per stretch the rate limit lets through: after a jump either way the last
        // alert is at least the rate limit away, within a stretch it is not.
        XCTAssertGreaterThanOrEqual(d.sink.alerts.count, 2)
        XCTAssertGreaterThan(d.detector.counters.suppressed, 0)
        for a in d.sink.alerts {
            let stamp = a["@timestamp"] as? String ?? ""
            XCTAssertTrue(stamp.hasPrefix("19") || stamp.hasPrefix("20") || stamp.hasPrefix("21"), stamp)
        }
    }

    // MARK: Non-standard ports and bare-IP sessions

    func testNonStandardPortAndBareIPAcrossValidExtremes() {
        let f = FlowFactory()
        let tls = TLSAnalyzer(flowCapacity: 4096)
        let d = NonStandardPortDetector(rules: C2PortRules(), emitter: emitter)
        let identifier = ProtocolIdentifier(flowCapacity: 4096)
        var port: UInt16 = 50000
        for base in Self.jumps {
            for _ in 0..<3 {
                port &+= 1
                // HTTP on SSH's port: the port finding, its pair history spanning the jumps.
                let (_, a) = f.session("10.0.0.5", port, "198.51.100.7", 22, at: base)
                f.table.setAppProtocol(AppProtocol.http.rawValue, slot: a)
                d.flowEnded(f.table[a], reason: .tcpClosed, slot: a, identifier: identifier, tls: tls)
                // TLS without a server name to a bare address: the bare-IP rule.
                let (_, b) = f.session("10.0.0.5", port &+ 10000, "203.0.113.10", 443, at: base)
                var hello = ClientHello()
                hello.legacyVersion = 0x0303
                hello.cipherSuites = [0x1301]
                hello.supportedVersions = [0x0304]
                tls.quicClientHello(hello, slot: b, flows: f.table, at: Timestamp(nanoseconds: base))
                d.flowEnded(f.table[b], reason: .tcpClosed, slot: b, identifier: identifier, tls: tls)
            }
            // Pair expiry runs on minute boundaries of the packet clock.
            d.tick(Timestamp(nanoseconds: base - base % (60 * Self.second)))
        }
        XCTAssertGreaterThan(d.counters.judged, 0)
        XCTAssertTrue(alerts.contains { $0.destination?.port == 22 })
        validAlertTimes()
    }

    // MARK: The clock type itself

    func testTimestampArithmeticSaturates() {
        XCTAssertEqual((Timestamp(nanoseconds: .max) + .seconds(1)).nanoseconds, .max)
        XCTAssertEqual((Timestamp(nanoseconds: .min) - .seconds(1)).nanoseconds, .min)
        XCTAssertEqual((Timestamp(nanoseconds: .max) - Timestamp(nanoseconds: .min)).nanoseconds, .max)
        XCTAssertEqual((Timestamp(nanoseconds: .min) - Timestamp(nanoseconds: .max)).nanoseconds, .min)
        XCTAssertEqual((Timestamp.latest - Timestamp.zero).nanoseconds, Timestamp.validRange.upperBound, "exact inside the range")
        XCTAssertEqual(Timestamp.Duration.seconds(.nan).nanoseconds, 0)
        XCTAssertEqual(Timestamp.Duration.seconds(.infinity).nanoseconds, .max)
        XCTAssertEqual(Timestamp.Duration.seconds(-1e300).nanoseconds, .min)
        XCTAssertEqual(Timestamp(seconds: 1e300), Timestamp.latest)
        XCTAssertEqual(Timestamp(seconds: -.infinity), Timestamp.zero)
        XCTAssertEqual(Timestamp(seconds: .nan), Timestamp.zero)
        XCTAssertEqual(Timestamp(nanoseconds: .min).seconds, -9_223_372_037)
        XCTAssertEqual(Timestamp(nanoseconds: -1).seconds, -1)
        // Rendering any Int64 time: the year is clamped to four digits, nothing traps.
        XCTAssertEqual(Timestamp.latest.description, "2116-02-20T23:53:38.427387Z")
        XCTAssertEqual(Timestamp(nanoseconds: .max).description, "2262-04-11T23:47:16.854775Z")
        XCTAssertEqual(Timestamp(nanoseconds: .min).description.prefix(4), "1677")
    }
}
