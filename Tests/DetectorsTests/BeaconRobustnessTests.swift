import Foundation
import XCTest
@testable import Analyzers
@testable import Detectors
import Events
import PacketCore
import TestSupport

/// The beacon detector on the traffic issue 16 names: few samples, jitter by design, keep-alive HTTP, UDP
/// with new source ports and replies from elsewhere, software every workstation runs, unrelated traffic
/// merged in, strobes and long connections. Flows come from a real flow table (`FlowFactory`).
final class BeaconRobustnessTests: AlertCollectingCase {
    let t0: Int64 = 1_700_000_000_000_000_000
    let s: Int64 = 1_000_000_000

    func detector(_ edit: (inout BeaconRules) -> Void = { _ in }) -> BeaconDetector {
        alerts.removeAll()
        var r = BeaconRules()
        edit(&r)
        return BeaconDetector(rules: r, emitter: emitter)
    }

    func beacons(_ id: String? = nil) -> [Alert] {
        alerts.filter { $0.ruleID == "beaconing.destination" || $0.ruleID == "beaconing.host" }.filter { id == nil || $0.ruleID == id }
    }

    func detail(_ a: Alert, _ key: String) -> JSONValue? { a.details.first { $0.0 == key }?.1 }

    /// TCP sessions from `src` to `dst:port` at `times` (ns), with originator payloads `sizes`.
    func sessions(_ d: BeaconDetector, _ f: FlowFactory, _ src: String, _ dst: String, _ port: UInt16, at times: [Int64],
                  sizes: [Int]? = nil, labels: FlowLabels = FlowLabels(), sport: UInt16 = 40000, tick: Bool = true) {
        for (i, t) in times.enumerated() {
            let (r, _) = f.session(src, sport &+ UInt16(truncatingIfNeeded: i), dst, port, at: t, request: sizes?[i] ?? 300)
            d.flowEnded(r, reason: .tcpClosed, labels: labels)
            if tick { d.tick(Timestamp(nanoseconds: t + 5 * s)) }
        }
    }

    func times(from start: Int64, gaps: [Double]) -> [Int64] {
        var out = [start]
        for g in gaps { out.append(out.last! + Int64(g * 1e9)) }
        return out
    }

    // MARK: Few samples

    /// A browser page load: four connections a couple of seconds apart. With three intervals the skew and
    /// histogram parts are trivially "perfect"; the confidence factor keeps the score far from an alert.
    func testPageLoadWithFourStartsIsNotABeacon() throws {
        let d = detector()
        let f = FlowFactory()
        let starts = times(from: t0, gaps: [2.3, 2.2, 2.4])
        sessions(d, f, "10.0.0.5", "203.0.113.50", 443, at: starts, sizes: [500, 500, 500, 500])
        d.finish(Timestamp(nanoseconds: starts.last! + 10 * s))
        XCTAssertTrue(beacons().isEmpty, "\(alerts.map(\.message))")
        // The scorer itself: four perfectly regular starts can reach at most the 3-interval confidence.
        let perfect = try XCTUnwrap(BeaconScorer.score(starts: starts, sizes: [500, 500, 500, 500], observedFrom: t0,
                                                       observedTo: starts.last!, parameters: BeaconScoring()))
        XCTAssertEqual(perfect.confidence, 1 - exp(-1), accuracy: 1e-9)
        XCTAssertLessThan(perfect.score, 0.64)
        XCTAssertLessThan(perfect.score, BeaconRules().threshold)
    }

    /// Ten polls 34–57 s apart (uniform jitter of about ±25% around 45 s), the sizes varying a little.
    func testTenJitteredPollsAreCaught() {
        let d = detector()
        let f = FlowFactory()
        let starts = times(from: t0, gaps: [34, 57, 41, 49, 36, 55, 45, 38, 52])
        sessions(d, f, "10.0.0.5", "203.0.113.51", 443, at: starts, sizes: [560, 610, 590, 640, 575, 600, 620, 585, 630, 595])
        d.finish(Timestamp(nanoseconds: starts.last! + 10 * s))
        let found = beacons("beaconing.destination")
        XCTAssertEqual(found.count, 1, "\(alerts.map(\.message))")
        if case .double(let m)? = found.first.flatMap({ detail($0, "interval_median") }) { XCTAssertEqual(m, 45, accuracy: 5) }
    }

    /// 30% and 50% uniform jitter (symmetric, and one-sided as Cobalt Strike's sleep jitter is) over two
    /// hours of 60-second polls: each alerts; memoryless timing with the same mean never does.
    func testDesignedJitterUpToFiftyPercentIsCaught() throws {
        for seed: UInt64 in [1, 2, 3, 4, 5] {
            var rng = SeededRandom(seed: seed)
            for (jitter, oneSided) in [(0.3, false), (0.5, false), (0.3, true), (0.5, true)] {
                var t = t0, starts: [Int64] = []
                while t < t0 + 7200 * s {
                    starts.append(t)
                    let u = Double.random(in: 0..<1, using: &rng)
                    t += Int64(60e9 * (oneSided ? 1 - jitter * u : 1 + jitter * (2 * u - 1)))
                }
                let r = try XCTUnwrap(BeaconScorer.score(starts: starts, sizes: starts.map { _ in 700 }, observedFrom: t0,
                                                         observedTo: t, parameters: BeaconScoring()))
                XCTAssertGreaterThanOrEqual(r.score, BeaconRules().threshold, "seed \(seed), jitter \(jitter) one-sided \(oneSided): \(r)")
                XCTAssertGreaterThanOrEqual(r.intervalBand, 0.9, "(nearly) every interval inside the band")
            }
            var t = t0, starts: [Int64] = []
            while t < t0 + 7200 * s {
                starts.append(t)
                t += Int64(-60e9 * log(1 - Double.random(in: 0..<1, using: &rng)))
            }
            let r = try XCTUnwrap(BeaconScorer.score(starts: starts, sizes: starts.map { _ in 700 }, observedFrom: t0,
                                                     observedTo: t, parameters: BeaconScoring()))
            XCTAssertLessThan(r.score, 0.65, "seed \(seed): memoryless timing \(r)")
        }
    }

    // MARK: HTTP requests

    func request(_ d: BeaconDetector, _ src: String, _ dst: String, _ port: UInt16, at t: Int64, host: String?, bytes: Int, tick: Bool = true) {
        d.httpRequest(HTTPRequestFact(client: IPAddress(src)!, server: IPAddress(dst)!, serverPort: port,
                                      time: Timestamp(nanoseconds: t), host: host, bytes: bytes))
        if tick { d.tick(Timestamp(nanoseconds: t + s)) }
    }

    /// An HTTP POST every 15 minutes ±30 s, sizes 300–3,000 bytes, for six hours: caught, per request.
    func testFifteenMinutePOSTBeaconWithJitterAndVaryingSizes() {
        for seed: UInt64 in [1, 2, 3] {
            let d = detector()
            var rng = SeededRandom(seed: seed)
            var t = t0
            while t < t0 + 6 * 3600 * s {
                request(d, "10.0.0.5", "198.51.100.80", 80, at: t, host: "updates.example-cdn.net", bytes: Int.random(in: 300...3000, using: &rng))
                t += Int64((900 + Double.random(in: -30...30, using: &rng)) * 1e9)
            }
            d.finish(Timestamp(nanoseconds: t))
            let found = beacons()
            XCTAssertEqual(found.count, 1, "seed \(seed): \(alerts.map(\.message))")
            XCTAssertEqual(found.first?.techniques.first?.id, "T1071.001")
        }
    }

    /// Twenty GETs 60 s apart inside one keep-alive connection: one flow, twenty starts. The flow's end
    /// (labelled HTTP) adds no sample of its own.
    func testKeepAlivePollingIsMeasuredPerRequest() {
        let d = detector()
        let f = FlowFactory()
        // Scored once, at the end, so the alert counts every request.
        for i in 0..<20 { request(d, "10.0.0.5", "10.0.9.9", 8080, at: t0 + Int64(i) * 60 * s, host: "intranet-agent", bytes: 180, tick: false) }
        let (r, _) = f.session("10.0.0.5", 45000, "10.0.9.9", 8080, at: t0)
        var labels = FlowLabels()
        labels.hasHTTP = true
        labels.httpHost = "intranet-agent"
        d.flowEnded(r, reason: .tcpClosed, labels: labels)
        d.finish(Timestamp(nanoseconds: t0 + 20 * 60 * s))
        let found = beacons("beaconing.destination")
        XCTAssertEqual(found.count, 1, "an HTTP agent polling an internal server: \(alerts.map(\.message))")
        if case .int(let n)? = found.first.flatMap({ detail($0, "connections") }) { XCTAssertEqual(n, 20, "the flow end is not a 21st sample") }
        XCTAssertEqual(d.counters.httpRequests, 20)
        XCTAssertEqual(d.counters.connections, 0)
    }

    // MARK: UDP

    /// A UDP beacon that sends from a new source port every minute and is answered from another server
    /// port: each request flow is one-sided, each reply another flow. Caught on (source, destination, port).
    func testUDPBeaconWithNewSourcePortsAndRepliesFromAnotherPort() {
        let d = detector()
        let f = FlowFactory()
        for i in 0..<20 {
            let t = t0 + Int64(i) * 60 * s
            let sport = UInt16(50000 + i * 7)
            _ = f.packet("10.0.0.5", sport, "203.0.113.77", 5555, [], payload: 48, at: t, udp: true)
            _ = f.packet("203.0.113.77", 6666, "10.0.0.5", sport, [], payload: 64, at: t + 20_000_000, udp: true)
            d.tick(Timestamp(nanoseconds: t))
        }
        // The flows end (idle) as the table would report them.
        var ended: [FlowRecord] = []
        f.table.expire(now: Timestamp(nanoseconds: t0 + 3600 * s)) { r, _, _ in ended.append(r) }
        for r in ended { d.flowEnded(r, reason: .idleTimeout, labels: FlowLabels()) }
        d.finish(Timestamp(nanoseconds: t0 + 3600 * s))
        let found = beacons("beaconing.destination")
        XCTAssertEqual(found.count, 1, "\(alerts.map(\.message))")
        XCTAssertEqual(found.first?.destination?.port, 5555)
        XCTAssertEqual(found.first?.ipProtocol, IPProtocol.udp)
    }

    /// A QUIC client polling over one long flow: each datagram after a silence is a start under the flow's
    /// SNI, as the flow's end is, so an allowlisted name stays allowlisted and any other is judged on the
    /// (source, name) pair too.
    func testUDPRequestsCarryTheFlowsServerName() {
        for (name, expected) in [("settings-win.data.microsoft.com", [String]()), ("poll.c2.example.org", ["beaconing.destination"])] {
            let d = detector()
            for i in 1..<20 {
                let t = t0 + Int64(i) * 60 * s
                d.udpRequest(UDPRequestFact(client: IPAddress("10.0.0.5")!, clientPort: 50000, server: IPAddress("203.0.113.77")!,
                                            serverPort: 443, flowStart: Timestamp(nanoseconds: t0), time: Timestamp(nanoseconds: t), bytes: 1200,
                                            serverName: name))
                d.tick(Timestamp(nanoseconds: t))
            }
            d.finish(Timestamp(nanoseconds: t0 + 3600 * s))
            XCTAssertEqual(beacons().map(\.ruleID).sorted(), expected, "\(name): \(alerts.map(\.message))")
            // The (source, name) pair was judged a beacon too, its alert covered by the destination's.
            XCTAssertEqual(d.counters.coveredHostAlerts, expected.isEmpty ? 0 : 1, name)
        }
    }

    // MARK: Prevalence and allowlists

    /// Antivirus check-ins: every one of twelve workstations connects to the same update server at the
    /// same regular schedule (here ten times in nine hours, more than the four of the report, so the
    /// confidence factor alone would not save it). The destination's prevalence does; the same schedule
    /// from one host alone still alerts.
    func testSoftwareOnEveryWorkstationIsNotABeacon() {
        let schedule = (0..<10).map { t0 + Int64($0) * 3240 * s }
        for hosts in [12, 1] {
            let d = detector()
            let f = FlowFactory()
            for k in 0..<schedule.count {
                for h in 0..<hosts {
                    let (r, _) = f.session("10.1.0.\(10 + h)", UInt16(40000 + k * 20 + h), "198.51.100.7", 443, at: schedule[k] + Int64(h) * 3 * s, request: 900)
                    d.flowEnded(r, reason: .tcpClosed, labels: FlowLabels())
                }
                d.tick(Timestamp(nanoseconds: schedule[k] + 60 * s))
            }
            d.finish(Timestamp(nanoseconds: schedule.last! + 60 * s))
            if hosts == 1 {
                XCTAssertEqual(beacons().count, 1, "the same schedule from one host is a beacon: \(alerts.map(\.message))")
            } else {
                XCTAssertTrue(beacons().isEmpty, "\(alerts.map(\.message))")
                XCTAssertGreaterThanOrEqual(d.counters.prevalenceDiscounted, UInt64(hosts))
            }
        }
        // Four connections in nine hours from every workstation: never enough samples either.
        let d = detector()
        let f = FlowFactory()
        for k in 0..<4 {
            for h in 0..<12 {
                let (r, _) = f.session("10.1.0.\(10 + h)", UInt16(41000 + k * 20 + h), "198.51.100.8", 443, at: t0 + Int64(k) * 8100 * s + Int64(h) * s, request: 900)
                d.flowEnded(r, reason: .tcpClosed, labels: FlowLabels())
            }
        }
        d.finish(Timestamp(nanoseconds: t0 + 9 * 3600 * s))
        XCTAssertTrue(beacons().isEmpty, "\(alerts.map(\.message))")
    }

    /// Update and telemetry services are allowlisted by name (shipped list in Rules/beaconing.yaml).
    func testTelemetryNamesAreAllowlisted() {
        var labels = FlowLabels()
        labels.hasTLS = true
        for (name, expected) in [("settings-win.data.microsoft.com", 0), ("c2.example.org", 1)] {
            let d = detector()
            let f = FlowFactory()
            labels.serverName = name
            sessions(d, f, "10.0.0.5", "203.0.113.90", 443, at: (0..<30).map { t0 + Int64($0) * 300 * s }, labels: labels)
            d.finish(Timestamp(nanoseconds: t0 + 31 * 300 * s))
            XCTAssertEqual(beacons().count, expected, "\(name): \(alerts.map(\.message))")
        }
    }

    // MARK: Observation span

    /// Hours of unrelated traffic before the beacon (another capture merged in, as `hunt` over a
    /// directory does) leave the beacon's score as it was: its span is its own source's activity.
    func testOlderUnrelatedTrafficDoesNotHideABeacon() {
        var scores: [Double] = []
        for merged in [false, true] {
            let d = detector()
            let f = FlowFactory()
            if merged {
                // Six hours earlier: other hosts browsing.
                var rng = SeededRandom(seed: 9)
                var t = t0 - 6 * 3600 * s
                while t < t0 - 5 * 3600 * s {
                    let (r, _) = f.session("10.2.0.\(Int.random(in: 2...40, using: &rng))", UInt16.random(in: 30000...60000, using: &rng),
                                           "192.0.2.\(Int.random(in: 1...200, using: &rng))", 443, at: t)
                    d.flowEnded(r, reason: .tcpClosed, labels: FlowLabels())
                    d.tick(Timestamp(nanoseconds: t))
                    t += Int64(Double.random(in: 1...30, using: &rng) * 1e9)
                }
            }
            let starts = (0..<40).map { t0 + Int64($0) * 60 * s + Int64($0 % 3) * 2 * s }
            sessions(d, f, "10.0.0.5", "203.0.113.9", 8443, at: starts)
            d.finish(Timestamp(nanoseconds: starts.last! + 30 * s))
            let found = beacons("beaconing.destination")
            XCTAssertEqual(found.count, 1, "merged \(merged): \(alerts.map(\.message))")
            if case .double(let v)? = found.first.flatMap({ detail($0, "score") }) { scores.append(v) }
        }
        XCTAssertEqual(scores.count, 2)
        if scores.count == 2 { XCTAssertEqual(scores[0], scores[1], accuracy: 1e-9, "the older capture changed the score") }
    }

    // MARK: RITA's other findings

    /// So many connections to one destination and port that they are a strobe: reported as such, not
    /// scored as a beacon (scored once, at the end, as RITA judges a whole dataset).
    func testStrobeIsReportedInsteadOfScored() {
        let d = detector { $0.strobeConnections = 200 }
        let f = FlowFactory()
        sessions(d, f, "10.0.0.5", "203.0.113.30", 9000, at: (0..<250).map { t0 + Int64($0) * 3 * s }, tick: false)
        d.finish(Timestamp(nanoseconds: t0 + 800 * s))
        XCTAssertEqual(alerts.map(\.ruleID), ["beaconing.strobe"], "\(alerts.map(\.message))")
        // Below the strobe count the same schedule is a beacon.
        let e = detector()
        sessions(e, FlowFactory(), "10.0.0.5", "203.0.113.30", 9000, at: (0..<250).map { t0 + Int64($0) * 3 * s }, tick: false)
        e.finish(Timestamp(nanoseconds: t0 + 800 * s))
        XCTAssertEqual(alerts.map(\.ruleID), ["beaconing.destination"])
    }

    /// One connection lasting five hours (reported at active timeouts, then closed): a long-connection
    /// finding, once; a one-hour connection is none, nor two packets five hours apart.
    func testLongConnectionFinding() {
        let d = detector()
        let f = FlowFactory()
        _ = f.packet("10.0.0.5", 40001, "203.0.113.40", 22, [.syn], payload: 0, at: t0)
        _ = f.packet("203.0.113.40", 22, "10.0.0.5", 40001, [.syn, .ack], payload: 0, at: t0 + 1_000_000)
        var slot: Int32 = 0
        var reports = 0
        for m in 1...300 {
            // The table reports the open connection at each active timeout (30 min) and restarts its counters.
            slot = f.packet("10.0.0.5", 40001, "203.0.113.40", 22, [.ack, .psh], payload: 100, at: t0 + Int64(m) * 60 * s) { r, reason, _ in
                d.flowEnded(r, reason: reason, labels: FlowLabels())
                reports += 1
            }.slot
            d.tick(Timestamp(nanoseconds: t0 + Int64(m) * 60 * s))
        }
        XCTAssertEqual(reports, 10)
        d.flowEnded(f.table[slot], reason: .tcpClosed, labels: FlowLabels())
        let (short, _) = f.session("10.0.0.6", 40002, "203.0.113.41", 22, at: t0)
        var r = short
        r.lastSeen = Timestamp(nanoseconds: t0 + 3600 * s)
        d.flowEnded(r, reason: .tcpClosed, labels: FlowLabels())
        // A handful of UDP packets whose timestamps jump by five hours (a fuzzed protocol capture): no connection.
        _ = f.packet("10.0.0.7", 5000, "203.0.113.42", 6000, [], payload: 40, at: t0, udp: true)
        let jumped = f.packet("10.0.0.7", 5000, "203.0.113.42", 6000, [], payload: 40, at: t0 + 5 * 3600 * s, udp: true)
        d.flowEnded(f.table[jumped.slot], reason: .idleTimeout, labels: FlowLabels())
        d.finish(Timestamp(nanoseconds: t0 + 301 * 60 * s))
        XCTAssertEqual(alerts.map(\.ruleID), ["beaconing.long_connection"], "\(alerts.map(\.message))")
        XCTAssertEqual(alerts.first?.destination?.ip, IPAddress("203.0.113.40"))
        XCTAssertEqual(alerts.first?.severity, .low)
        // Reported at the first scoring round past 4 h: the connection's continuous length then.
        if case .double(let v)? = alerts.first.flatMap({ detail($0, "duration") }) { XCTAssertTrue((4 * 3600...5 * 3600).contains(v), "\(v)") }
    }
}
