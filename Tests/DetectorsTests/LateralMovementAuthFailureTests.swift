import XCTest
import Analyzers
@testable import Detectors
import Events
import PacketCore

/// The spray and brute-force rules keep counts as failures come and expire (`AuthFailureWindow`). These
/// tests hold them to the rules' plain definition, recomputed over the whole list per failure, on a long
/// hostile sequence, and hold a failure's cost flat however many the window holds.
final class LateralMovementAuthFailureTests: XCTestCase {
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
        var (d, c) = collectingLateralDetector(rules)
        var reference = Reference(rules: rules)
        var expected: [String] = []
        var random = Random(state: 0x5EED)
        let sources = [IPAddress("10.0.0.5")!, IPAddress("10.0.0.6")!, IPAddress("10.0.7.7")!]
        let hot = ["Administrator", "administrator", "svc_backup", "SVC_BACKUP", "root", "alice", "bob"]
        var now = base, late = 0, pauses = 0, restoredAt = 0
        for i in 0..<30_000 {
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
            expected += reference.failure(a, ep, at: t)
            d.observe(.authentication(a), on: ep, at: t)
            if i == 17_000 {
                var w = StateWriter()
                d.saveState(&w)
                let alerts = c.alerts
                (d, c) = collectingLateralDetector(rules)
                c.alerts = alerts
                var r = StateReader(w.bytes)
                XCTAssertNoThrow(try d.restoreState(&r))
                restoredAt = i
            }
        }
        let actual = c.alerts.map(Self.render)
        XCTAssertEqual(actual.count, expected.count)
        if let i = actual.indices.first(where: { $0 < expected.count && actual[$0] != expected[$0] }) {
            XCTFail("alert \(i) differs:\n  got      \(actual[i])\n  expected \(expected[i])")
        }
        // The sequence reached what it is meant to reach.
        XCTAssertGreaterThan(reference.reachedCap, 1000)
        XCTAssertGreaterThan(reference.expired, 10_000)
        XCTAssertGreaterThan(pauses, 5)
        XCTAssertGreaterThan(late, 1000)
        XCTAssertGreaterThan(restoredAt, 0)
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
        let clock = ContinuousClock()
        let elapsed = clock.measure {
            for (i, f) in facts.enumerated() { d.observe(f, on: ep, at: Timestamp(nanoseconds: base.nanoseconds + Int64(i) * 10_000_000)) }
        }
        // A spray alert on the fifth failure, then one a suppression period (60 s) over the 2,000 s.
        XCTAssertEqual(c.alerts.count, 34)
        XCTAssertEqual(d.hosts[ep.client]?.failures.count, 1024)
        XCTAssertLessThan(elapsed, .seconds(10), "\(elapsed)")
    }
}
