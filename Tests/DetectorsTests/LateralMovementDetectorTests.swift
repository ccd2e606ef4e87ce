import XCTest
import Analyzers
import ConfigKit
@testable import Detectors
import Events
import PacketCore

/// Keeps alerts in memory.
final class AlertCollector: @unchecked Sendable {
    var alerts: [Alert] = []
}

final class NullSink: EventSink, @unchecked Sendable {
    let name = "null"
    func write(_ json: UnsafeRawBufferPointer, metadata: EventMetadata) {}
    func flush() throws {}
    func close() throws {}
    var statistics: SinkStatistics { SinkStatistics() }
}

/// A lateral-movement detector whose alerts land in the returned collector.
func collectingLateralDetector(_ rules: LateralMovementRules = LateralMovementRules()) -> (LateralMovementDetector, AlertCollector) {
    let emitter = EventEmitter(observer: ObserverInfo(name: "test"), sinks: [NullSink()])
    let c = AlertCollector()
    emitter.alertObservers.append { c.alerts.append($0) }
    return (LateralMovementDetector(rules: rules, emitter: emitter), c)
}

final class LateralMovementDetectorTests: XCTestCase {
    let attacker = IPAddress("10.0.0.5")!
    let target = IPAddress("10.0.0.9")!

    func t(_ s: Double) -> Timestamp { Timestamp(seconds: 1_600_000_000 + s) }
    var ep: SessionEndpoints { SessionEndpoints(client: attacker, server: target, serverPort: 445) }
    let svcctl = RPCInterface(uuid: "367abb81-9844-35f1-ad32-98f038001003")

    func testAdminShareWriteThenServiceIsOneHighAlert() {
        let (d, c) = collectingLateralDetector()
        d.observe(.treeConnect(path: "\\\\h\\ADMIN$"), on: ep, at: t(0))
        d.observe(.open(share: "ADMIN$", name: "x.exe", isPipe: false, writeAccess: true), on: ep, at: t(1))
        d.observe(.write(share: "ADMIN$", name: "x.exe"), on: ep, at: t(1))
        d.observe(.rpcCall(interface: svcctl, opnum: 12, pipe: "svcctl"), on: ep, at: t(300))
        d.tick(t(400))
        d.finish(t(500))
        XCTAssertEqual(c.alerts.map(\.ruleID), ["lateral_movement.tool_transfer_execution"])
        XCTAssertEqual(c.alerts.first?.severity, .high)
        XCTAssertEqual(Set(c.alerts.first?.techniques.map(\.id) ?? []), ["T1570", "T1021.002", "T1569.002"])
    }

    func testWriteAndExecutionFarApartAreSeparateAlerts() {
        let (d, c) = collectingLateralDetector()
        d.observe(.write(share: "C$", name: "x.exe"), on: ep, at: t(0))
        d.tick(t(100))  // the delayed admin-share alert goes out
        d.observe(.rpcCall(interface: svcctl, opnum: 19, pipe: "svcctl"), on: ep, at: t(700))
        XCTAssertEqual(c.alerts.map(\.ruleID), ["lateral_movement.admin_share", "lateral_movement.remote_service"])
    }

    func testExternalAndAllowlistedSourcesAreIgnored() {
        var rules = LateralMovementRules()
        rules.adminHosts = [IPNetwork("10.0.0.5/32")!]
        let (d, c) = collectingLateralDetector(rules)
        d.observe(.rpcCall(interface: svcctl, opnum: 12, pipe: nil), on: ep, at: t(0))
        let outside = SessionEndpoints(client: IPAddress("8.8.8.8")!, server: target, serverPort: 445)
        d.observe(.rpcCall(interface: svcctl, opnum: 12, pipe: nil), on: outside, at: t(0))
        d.finish(t(10))
        XCTAssertTrue(c.alerts.isEmpty)
    }

    func testDCSyncOnlyFromNonControllers() {
        let (d, c) = collectingLateralDetector()
        let drs = RPCInterface(uuid: "e3514235-4b06-11d1-ab04-00c04fc2dcd2")
        let dc = SessionEndpoints(client: IPAddress("10.0.0.2")!, server: target, serverPort: 49668)
        // 10.0.0.2 answered Kerberos: a learned domain controller.
        d.observe(.kerberosServer, on: SessionEndpoints(client: attacker, server: IPAddress("10.0.0.2")!, serverPort: 88), at: t(0))
        d.observe(.rpcCall(interface: drs, opnum: 3, pipe: nil), on: dc, at: t(1))
        XCTAssertTrue(c.alerts.isEmpty)
        d.observe(.rpcCall(interface: drs, opnum: 12, pipe: nil), on: ep, at: t(2))  // DsCrackNames: ordinary
        XCTAssertTrue(c.alerts.isEmpty)
        d.observe(.rpcCall(interface: drs, opnum: 3, pipe: nil), on: ep, at: t(3))
        XCTAssertEqual(c.alerts.map(\.ruleID), ["lateral_movement.dcsync"])
        XCTAssertEqual(c.alerts.first?.techniques.first?.id, "T1003.006")
    }

    func testEventLogClearing() {
        let (d, c) = collectingLateralDetector()
        d.observe(.rpcCall(interface: RPCInterface(uuid: "82273fdc-e32a-18c3-3f78-827929dc23ea"), opnum: 0, pipe: "eventlog"), on: ep, at: t(0))
        XCTAssertEqual(c.alerts.first?.techniques.first?.id, "T1070.001")
    }

    func failure(_ user: String) -> RemoteAccessFact {
        .authentication(AuthenticationAttempt(method: .ntlm, user: user, success: false, status: 0xC000_006D))
    }

    func testSprayAndBruteForceThresholds() {
        var rules = LateralMovementRules()
        rules.sprayDistinctUsers = 4
        rules.bruteForceFailures = 5
        let (d, c) = collectingLateralDetector(rules)
        for (i, u) in ["a", "b", "c"].enumerated() { d.observe(failure(u), on: ep, at: t(Double(i))) }
        XCTAssertTrue(c.alerts.isEmpty)
        d.observe(failure("d"), on: ep, at: t(4))
        XCTAssertEqual(c.alerts.map(\.ruleID), ["lateral_movement.password_spray"])
        for i in 0..<4 { d.observe(failure("root"), on: ep, at: t(10 + Double(i))) }
        XCTAssertEqual(c.alerts.count, 1)
        d.observe(failure("root"), on: ep, at: t(20))
        XCTAssertEqual(c.alerts.map(\.ruleID), ["lateral_movement.password_spray", "lateral_movement.brute_force"])
        XCTAssertEqual(c.alerts.last?.relatedUsers, ["root"])
        // Failures older than the window no longer count.
        let (d2, c2) = collectingLateralDetector(rules)
        for (i, u) in ["a", "b", "c", "d"].enumerated() { d2.observe(failure(u), on: ep, at: t(Double(i) * 700)) }
        XCTAssertTrue(c2.alerts.isEmpty)
    }

    func packet(_ d: LateralMovementDetector, from: IPAddress, to: IPAddress, port: UInt16, flags: TCPFlags, fromOriginator: Bool, new: Bool, at time: Timestamp) {
        // The facts the worker's host-fact tap sends for such a packet.
        d.clockStarted(at: time)
        if new {
            d.tcpFlowStarted(source: from, destination: to, port: port, at: time)
        } else if !fromOriginator && flags.contains(.syn) && flags.contains(.ack) {
            d.tcpAccepted(server: from, client: to, port: port, at: time)
        }
    }

    func testFanOutAndFirstSeenEdgesAfterLearning() {
        var rules = LateralMovementRules()
        rules.fanOutDistinctHosts = 5
        rules.learningPeriod = 3600
        let (d, c) = collectingLateralDetector(rules)
        let rdpServer = IPAddress("10.0.1.1")!
        // During learning: an RDP session is baseline.
        packet(d, from: attacker, to: rdpServer, port: 3389, flags: [.syn], fromOriginator: true, new: true, at: t(0))
        packet(d, from: rdpServer, to: attacker, port: 3389, flags: [.syn, .ack], fromOriginator: false, new: false, at: t(0))
        XCTAssertTrue(c.alerts.isEmpty)
        // After learning: the same edge is known, a new one alerts.
        let other = IPAddress("10.0.1.2")!
        packet(d, from: rdpServer, to: attacker, port: 3389, flags: [.syn, .ack], fromOriginator: false, new: false, at: t(4000))
        XCTAssertTrue(c.alerts.isEmpty)
        packet(d, from: other, to: attacker, port: 3389, flags: [.syn, .ack], fromOriginator: false, new: false, at: t(4001))
        XCTAssertEqual(c.alerts.map(\.ruleID), ["lateral_movement.new_rdp_edge"])
        XCTAssertEqual(c.alerts.first?.techniques.first?.id, "T1021.001")
        // Fan-out: five distinct hosts on 445 within the window (one already reached on 3389 counts too).
        for i in 3...6 { packet(d, from: attacker, to: IPAddress("10.0.1.\(i)")!, port: 445, flags: [.syn], fromOriginator: true, new: true, at: t(4002 + Double(i))) }
        XCTAssertEqual(c.alerts.map(\.ruleID), ["lateral_movement.new_rdp_edge"], "the 3389 contact was outside the window")
        packet(d, from: attacker, to: IPAddress("10.0.1.7")!, port: 445, flags: [.syn], fromOriginator: true, new: true, at: t(4010))
        XCTAssertEqual(c.alerts.map(\.ruleID), ["lateral_movement.new_rdp_edge", "lateral_movement.fan_out"])
    }

    func testStateIsBoundedAndEvictionsCounted() {
        var rules = LateralMovementRules()
        rules.maxPairs = 64
        rules.maxHosts = 64
        let (d, _) = collectingLateralDetector(rules)
        for i in 0..<1000 {
            let client = IPAddress(ipv4: 0x0A00_0000 | UInt32(i + 10))
            let e = SessionEndpoints(client: client, server: target, serverPort: 445)
            d.observe(.treeConnect(path: "\\\\x\\share\(i)"), on: e, at: t(Double(i)))
            d.observe(failure("u\(i)"), on: e, at: t(Double(i)))
        }
        XCTAssertLessThanOrEqual(d.pairs.count, 64)
        XCTAssertLessThanOrEqual(d.hosts.count, 64)
        XCTAssertGreaterThan(d.counters.pairsEvicted, 900)
        XCTAssertGreaterThan(d.counters.hostsEvicted, 900)
    }

    func testRulesFileErrorsCarryLineNumbers() {
        let text = "authentication:\n  window: 10m\n  spray_distinct_users: one\nfan_out:\n  ports: [445, 70000]\n"
        XCTAssertThrowsError(try LateralMovementRules.parse(text: text, file: "lm.yaml")) { error in
            let issues = (error as? ConfigIssues)?.issues ?? []
            XCTAssertEqual(Set(issues.map(\.line)), [3, 5], "\(issues)")
            XCTAssertTrue(issues.allSatisfy { $0.file == "lm.yaml" })
        }
        let ok = try? LateralMovementRules.parse(text: "first_seen_edges:\n  learning_period: 7d\n  services:\n    ssh: [22, 2222]\n", file: "ok.yaml")
        XCTAssertEqual(ok?.learningPeriod, 7 * 86400)
        XCTAssertEqual(ok?.edgeServices, [22: "ssh", 2222: "ssh"])
    }

    func testShippedRulesFileIsValid() throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Rules/lateral-movement.yaml").path
        let r = try LateralMovementRules.load(path: path)
        XCTAssertEqual(r.toolTransferWindow, 600)
        XCTAssertEqual(r.fanOutPorts, [445, 139, 135, 3389, 5985, 5986, 22])
    }
}
