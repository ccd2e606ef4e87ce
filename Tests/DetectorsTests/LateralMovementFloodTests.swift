import XCTest
#if canImport(Glibc)
import Glibc
#endif
import Analyzers
@testable import Detectors
import Events
import PacketCore

/// The authentication-failure and short-login rules keep counts as failures and sessions come, expire
/// and are pushed out (`AuthFailureWindow`, `LoginWindow`). These tests hold them to the rules' plain
/// definition, recomputed over the whole list each time, on long hostile sequences, and hold the cost of
/// one flat however many the window holds.
final class LateralMovementFloodTests: XCTestCase {
    let base = Timestamp(seconds: 1_600_000_000)

    /// The rules as defined: per failure, drop every held failure older than the window, hold the new
    /// one while fewer than 1024 are held, name the target while fewer than 64 are named, then count
    /// over all that is held.
    struct Reference {
        let rules: LateralMovementRules
        var held: [IPAddress: [(user: String, time: Timestamp, method: AuthenticationAttempt.Method)]] = [:]
        var targets: [IPAddress: Set<IPAddress>] = [:]
        var fired: [String: Timestamp] = [:]
        var reachedCap = 0, expired = 0

        mutating func failure(_ a: AuthenticationAttempt, _ ep: SessionEndpoints, at t: Timestamp) -> [String] {
            let source = ep.client
            var list = held[source, default: []]
            let before = list.count
            list.removeAll { $0.time < t - .seconds(rules.authWindow) }
            expired += before - list.count
            if list.count < 1024 { list.append((a.user.lowercased(), t, a.method)) } else { reachedCap += 1 }
            held[source] = list
            if targets[source, default: []].count < 64 { targets[source, default: []].insert(ep.server) }
            let named = targets[source]!.sorted()
            let counts = Dictionary(list.map { ($0.user, 1) }, uniquingKeysWith: +)
            let methods = Set(list.map(\.method.rawValue)).sorted()
            let window = Int(rules.authWindow)
            var out: [String] = []
            if counts.count >= rules.sprayDistinctUsers, fire("\(source) spray", t) {
                let users = counts.keys.sorted()
                let details: [(String, JSONValue)] = [
                    ("users", .array(users.prefix(64).map { .string($0) })), ("failures", .int(Int64(list.count))),
                    ("methods", .array(methods.map { .string($0) })), ("targets", .array(named.map { .ip($0) }))]
                out.append(render("lateral_movement.password_spray", t,
                                  "\(users.count) accounts failed to authenticate (\(methods.joined(separator: ", "))) from \(source) within \(window) s",
                                  named.count == 1 ? Endpoint(ip: named[0], port: ep.serverPort) : nil, [source] + named,
                                  Array(users.prefix(64)), details))
            }
            if let n = counts[a.user.lowercased()], n >= rules.bruteForceFailures, fire("\(source) brute \(a.user.lowercased())", t) {
                let details: [(String, JSONValue)] = [("users", .array([.string(a.user)])), ("failures", .int(Int64(n))),
                                                      ("targets", .array(named.map { .ip($0) }))]
                out.append(render("lateral_movement.brute_force", t, "\(n) failed authentications for \(a.user) from \(source) within \(window) s",
                                  nil, [source] + named, [a.user], details))
            }
            return out
        }

        mutating func fire(_ key: String, _ t: Timestamp) -> Bool {
            if let last = fired[key], t - last < .seconds(rules.suppression) { return false }
            fired[key] = t
            return true
        }
    }

    static func render(_ rule: String, _ t: Timestamp, _ message: String, _ destination: Endpoint?, _ ips: [IPAddress],
                       _ users: [String], _ details: [(String, JSONValue)]) -> String {
        "\(rule) \(t) | \(message) | \(String(describing: destination)) | \(ips) | \(users) | \(details)"
    }

    static func render(_ a: Alert) -> String {
        render(a.ruleID, a.timestamp, a.message, a.destination, a.relatedIPs, a.relatedUsers, a.details)
    }

    /// Runs `steps` steps on a detector with `rules`, each feeding it and the reference (`step` returns
    /// the alerts the reference raised), carrying the detector on from its checkpoint after step
    /// `checkpointAfter` (a new detector restored from the saved state); then the detector must have
    /// raised exactly the reference's alerts, which are returned.
    func runAgainstReference(_ rules: LateralMovementRules, steps: Int, checkpointAfter: Int,
                             _ step: (Int, LateralMovementDetector) -> [String]) -> [String] {
        var (d, c) = collectingLateralDetector(rules)
        var expected: [String] = []
        for i in 0..<steps {
            expected += step(i, d)
            guard i == checkpointAfter else { continue }
            var w = StateWriter()
            d.saveState(&w)
            let alerts = c.alerts
            (d, c) = collectingLateralDetector(rules)
            c.alerts = alerts
            var r = StateReader(w.bytes)
            XCTAssertNoThrow(try d.restoreState(&r))
        }
        let actual = c.alerts.map(Self.render)
        XCTAssertEqual(actual.count, expected.count)
        if let i = actual.indices.first(where: { $0 < expected.count && actual[$0] != expected[$0] }) {
            XCTFail("alert \(i) differs:\n  got      \(actual[i])\n  expected \(expected[i])")
        }
        return expected
    }

    /// CPU seconds this thread spent in `body` (not wall time: other work on the machine does not count).
    static func cpuSeconds(_ body: () -> Void) -> Double {
        func now() -> Double {
            var ts = timespec()
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
            return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
        }
        let start = now()
        body()
        return now() - start
    }

    /// Deterministic pseudo-random numbers (SplitMix64).
    struct Random {
        var state: UInt64
        mutating func next(_ n: Int) -> Int {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return Int((z ^ (z >> 31)) % UInt64(n))
        }
    }

    /// Dense bursts past the 1024 cap, sparse stretches that expire, pauses longer than the window,
    /// late (out-of-order) packet times, more than 64 targets, accounts in mixed case, three sources,
    /// and a checkpoint restored half-way: the detector raises exactly the reference's alerts.
    func testHostileSequenceRaisesTheReferenceAlerts() {
        var rules = LateralMovementRules()
        rules.authWindow = 60
        rules.sprayDistinctUsers = 20
        rules.bruteForceFailures = 25
        rules.suppression = 30
        var reference = Reference(rules: rules)
        var random = Random(state: 0x5EED)
        let sources = [IPAddress("10.0.0.5")!, IPAddress("10.0.0.6")!, IPAddress("10.0.7.7")!]
        let hot = ["Administrator", "administrator", "svc_backup", "SVC_BACKUP", "root", "alice", "bob"]
        var now = base, late = 0, pauses = 0
        let expected = runAgainstReference(rules, steps: 30_000, checkpointAfter: 17_000) { i, d in
            let dense = (i / 2500) % 2 == 0
            if random.next(2000) == 0 {
                now = now + .seconds(rules.authWindow + 5)
                pauses += 1
            } else {
                now = now + .seconds(Double(random.next(dense ? 3 : 400)) / 1000)
            }
            var t = now
            if random.next(10) == 0 { t = now - .seconds(Double(random.next(5000)) / 1000); late += 1 }
            let source = sources[random.next(10) < 8 ? 0 : 1 + random.next(2)]
            let user = random.next(10) < 6 ? hot[random.next(hot.count)] : "user\(random.next(5000))"
            let method: AuthenticationAttempt.Method = random.next(3) == 0 ? .kerberos : .ntlm
            let server = IPAddress("10.1.\(random.next(2)).\(1 + random.next(110))")!
            let a = AuthenticationAttempt(method: method, user: user, success: false, status: 0xC000_006D)
            let ep = SessionEndpoints(client: source, server: server, serverPort: 445)
            d.observe(.authentication(a), on: ep, at: t)
            return reference.failure(a, ep, at: t)
        }
        // The sequence reached what it is meant to reach.
        XCTAssertGreaterThan(reference.reachedCap, 1000)
        XCTAssertGreaterThan(reference.expired, 10_000)
        XCTAssertGreaterThan(pauses, 5)
        XCTAssertGreaterThan(late, 1000)
        XCTAssertTrue(reference.targets.values.contains { $0.count == 64 })
        XCTAssertGreaterThan(expected.filter { $0.hasPrefix("lateral_movement.password_spray") }.count, 50)
        XCTAssertGreaterThan(expected.filter { $0.hasPrefix("lateral_movement.brute_force") }.count, 50)
        // Below the 256 rule keys a host keeps, where the detector starts forgetting when it fired.
        XCTAssertLessThan(reference.fired.count, 64)
    }

    /// 200,000 failures from one source, each for a new account, with the window full (1024) and
    /// expiring all along: recounting the window per failure took minutes in a debug build.
    func testAFailureCostsTheSameWithAFullWindow() {
        var rules = LateralMovementRules()
        rules.authWindow = 60
        rules.suppression = 60
        let (d, c) = collectingLateralDetector(rules)
        let ep = SessionEndpoints(client: IPAddress("10.0.0.5")!, server: IPAddress("10.0.0.9")!, serverPort: 445)
        let facts = (0..<200_000).map {
            RemoteAccessFact.authentication(AuthenticationAttempt(method: .ntlm, user: "u\($0)", success: false, status: 0xC000_006D))
        }
        let elapsed = Self.cpuSeconds {
            for (i, f) in facts.enumerated() { d.observe(f, on: ep, at: Timestamp(nanoseconds: base.nanoseconds + Int64(i) * 10_000_000)) }
        }
        // A spray alert on the fifth failure, then one a suppression period (60 s) over the 2,000 s.
        XCTAssertEqual(c.alerts.count, 34)
        XCTAssertEqual(d.hosts[ep.client]?.failures.count, 1024)
        XCTAssertLessThan(elapsed, 10, "CPU seconds")
    }

    /// The short-login rules as defined: per session, drop every held one that ended before the window,
    /// push out the earliest to arrive while 1024 are held, then count over all that is held.
    struct LoginReference {
        let rules: LateralMovementRules
        var held: [IPAddress: [(server: IPAddress, service: String, time: Timestamp)]] = [:]
        var fired: [String: Timestamp] = [:]
        var pushedOut = 0, expired = 0

        mutating func session(_ flow: FlowRecord, service: String) -> [String] {
            let source = flow.originator, server = flow.responder, t = flow.lastSeen
            var list = held[source, default: []]
            let before = list.count
            list.removeAll { $0.time < t - .seconds(rules.loginWindow) }
            expired += before - list.count
            if list.count >= 1024 { list.removeFirst(); pushedOut += 1 }
            list.append((server, service, t))
            held[source] = list
            let same = list.filter { $0.service == service }
            let toServer = same.filter { $0.server == server }.count
            let servers = Set(same.map(\.server)).sorted()
            let window = Int(rules.loginWindow), name = service.uppercased()
            if toServer >= rules.loginSessions {
                guard fire("\(source) \(service) \(server)", t) else { return [] }
                return [render("lateral_movement.\(service)_brute_force", t,
                               "\(source) opened \(toServer) short \(name) sessions to \(server) within \(window) s",
                               Endpoint(ip: server, port: flow.responderPort), [source, server], [],
                               [("service", .string(service)), ("sessions", .int(Int64(toServer))), ("targets", .array([.ip(server)])),
                                ("window_seconds", .double(rules.loginWindow))])]
            }
            guard same.count >= rules.loginSessions, servers.count >= rules.loginDistinctServers, fire("\(source) \(service)", t) else { return [] }
            return [render("lateral_movement.\(service)_password_spray", t,
                           "\(source) opened \(same.count) short \(name) sessions to \(servers.count) servers within \(window) s",
                           nil, [source] + servers.prefix(32), [],
                           [("service", .string(service)), ("sessions", .int(Int64(same.count))),
                            ("targets", .array(servers.prefix(64).map { .ip($0) })), ("window_seconds", .double(rules.loginWindow))])]
        }

        mutating func fire(_ key: String, _ t: Timestamp) -> Bool {
            if let last = fired[key], t - last < .seconds(rules.suppression) { return false }
            fired[key] = t
            return true
        }
    }

    /// Short SSH and RDP sessions from two sources: dense stretches past the 1024 cap (the earliest to
    /// arrive pushed out), sparse ones that expire, flows ending out of time order, many servers, and a
    /// checkpoint restored half-way: the detector raises exactly the reference's alerts.
    func testHostileLoginSequenceRaisesTheReferenceAlerts() {
        var rules = LateralMovementRules()
        (rules.loginWindow, rules.loginSessions, rules.loginDistinctServers, rules.suppression) = (120, 15, 5, 40)
        var reference = LoginReference(rules: rules)
        var random = Random(state: 0x10C1)
        let factory = FlowFactory()
        var templates: [String: FlowRecord] = [:]
        var now = base, late = 0
        let expected = runAgainstReference(rules, steps: 16_000, checkpointAfter: 9_000) { i, d in
            let dense = (i / 2000) % 2 == 0
            now = now + .seconds(Double(random.next(dense ? 20 : 2000)) / 1000)
            var t = now
            if random.next(4) == 0 { t = now - .seconds(Double(random.next(30_000)) / 1000); late += 1 }
            let source = random.next(10) < 8 ? "10.0.0.5" : "10.0.0.6"
            let (port, service): (UInt16, String) = random.next(2) == 0 ? (22, "ssh") : (3389, "rdp")
            let server = random.next(3) == 0 ? "10.1.0.\(1 + random.next(3))" : "10.1.1.\(1 + random.next(60))"
            let key = "\(source) \(server) \(port)"
            if templates[key] == nil {
                templates[key] = factory.session(source, UInt16(40000 + templates.count), server, port, at: 0, request: 1500, response: 2500).0
            }
            var flow = templates[key]!
            flow.firstSeen = t - .seconds(0.5)
            flow.lastSeen = t
            d.loginSession(flow, service: service)
            return reference.session(flow, service: service)
        }
        XCTAssertGreaterThan(reference.pushedOut, 500)
        XCTAssertGreaterThan(reference.expired, 5000)
        XCTAssertGreaterThan(late, 1000)
        // Every rule of both services, many times over, and fewer rule keys than a host keeps (256).
        let raised = Dictionary(expected.map { (String($0.prefix { $0 != " " }), 1) }, uniquingKeysWith: +)
        XCTAssertEqual(Set(raised.keys), ["lateral_movement.ssh_brute_force", "lateral_movement.ssh_password_spray",
                                          "lateral_movement.rdp_brute_force", "lateral_movement.rdp_password_spray"])
        XCTAssertGreaterThan(raised.values.min() ?? 0, 10)
        XCTAssertLessThan(reference.fired.count, 200)
    }

    /// 200,000 short sessions from one source to 200 servers with the window full (1024): the cost of
    /// one does not grow with the sessions held.
    func testASessionCostsTheSameWithAFullWindow() {
        var rules = LateralMovementRules()
        rules.loginWindow = 60
        let (d, _) = collectingLateralDetector(rules)
        let factory = FlowFactory()
        let flows = (0..<200).map { factory.session("10.0.0.5", UInt16(40000 + $0), "10.1.\($0 / 100).\(1 + $0 % 100)", 22, at: 0,
                                                    request: 1500, response: 2500).0 }
        let elapsed = Self.cpuSeconds {
            for i in 0..<200_000 {
                var flow = flows[i % flows.count]
                flow.lastSeen = Timestamp(nanoseconds: base.nanoseconds + Int64(i) * 10_000_000)
                flow.firstSeen = flow.lastSeen
                d.loginSession(flow, service: "ssh")
            }
        }
        XCTAssertEqual(d.hosts[IPAddress("10.0.0.5")!]?.logins.count, 1024)
        XCTAssertLessThan(elapsed, 10, "CPU seconds")
    }
}
