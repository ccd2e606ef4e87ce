import XCTest
@testable import Detectors
import PacketCore

/// The non-standard-port rule reads a port's popularity as of the last tick (plus the judged session's
/// own server): sessions ending within one second give the same figures in any order, which is what
/// keeps a several-worker replay's alerts equal to a one-worker replay's.
final class PortPopularityTests: XCTestCase {
    let servers = (1...40).map { IPAddress(ipv4: 0xC000_0200 | UInt32($0)) }

    func testFiguresWithinASecondDoNotDependOnOrder() {
        func figures(_ order: [IPAddress]) -> [Int] {
            let p = PortPopularity()
            for s in servers.prefix(5) { p.learn(port: 8443, server: s) }
            p.tick()
            var out: [Int] = []
            for s in order {
                out.append(p.servers(port: 8443, including: s))
                p.learn(port: 8443, server: s)
            }
            return out
        }
        let second = Array(servers[5..<25])
        let forward = figures(second), backward = figures(second.reversed())
        XCTAssertEqual(forward, Array(backward.reversed()))
        // Each reads the five servers of the earlier second and its own, none of its own second's others.
        let before = PortPopularity()
        for s in servers.prefix(5) { before.learn(port: 8443, server: s) }
        before.tick()
        XCTAssertEqual(forward, second.map { before.servers(port: 8443, including: $0) })
        XCTAssertTrue(forward.allSatisfy { $0 <= 6 })
    }

    func testLearningCountsFromTheNextTick() {
        let p = PortPopularity()
        XCTAssertEqual(p.servers(port: 4444, including: servers[0]), 1)
        for s in servers.prefix(10) { p.learn(port: 4444, server: s) }
        XCTAssertEqual(p.servers(port: 4444, including: servers[0]), 1)
        p.tick()
        let afterTick = p.servers(port: 4444, including: servers[0])
        XCTAssertGreaterThan(afterTick, 5)  // a 64-bit sketch: ten servers show as about ten
        XCTAssertEqual(p.servers(port: 4445, including: servers[0]), 1)
        // More ports changed in one second than the tick lists: all of them still arrive.
        for port in 0..<UInt16(PortPopularity.foldAll + 100) { p.learn(port: port, server: servers[1]) }
        p.tick()
        XCTAssertEqual(p.servers(port: UInt16(PortPopularity.foldAll + 99), including: servers[1]), 1)
        XCTAssertEqual(p.servers(port: UInt16(PortPopularity.foldAll + 99), including: servers[2]), 2)
    }

    /// A checkpoint keeps what was learned, this second's sessions included.
    func testSketchesRoundTripWithLearningIncluded() {
        let p = PortPopularity()
        for s in servers.prefix(8) { p.learn(port: 9001, server: s) }
        p.tick()
        for s in servers[8..<12] { p.learn(port: 9002, server: s) }
        let restored = PortPopularity()
        restored.restore(p.sketches)
        p.tick()
        for port: UInt16 in [9001, 9002, 9003] {
            XCTAssertEqual(restored.servers(port: port, including: servers[30]), p.servers(port: port, including: servers[30]))
        }
        XCTAssertEqual(restored.sketches.map(\.port), [9001, 9002])
    }
}

/// The service baseline counts a service's distinct clients as of the last tick, plus the judged
/// session's own client: whether a session of one second finds its service established does not
/// depend on the order in which that second's sessions arrive.
final class ServiceBaselineOrderTests: XCTestCase {
    func testEstablishedWithinASecondDoesNotDependOnOrder() {
        let second: Int64 = 1_000_000_000
        func verdicts(_ clients: [Int]) -> [Int: Bool] {
            let f = FlowFactory()
            var b = ServiceBaseline()
            var out: [Int: Bool] = [:]
            // Two clients in an earlier second.
            for c in [1, 2] {
                let u = f.packet("10.0.0.\(c)", 40000, "10.9.9.9", 8001, [.syn], payload: 0, at: 10 * second)
                b.learn(f.table[u.slot], learningPeriod: 0, maxServices: 100)
            }
            b.tick()
            for c in clients {
                let u = f.packet("10.0.0.\(c)", 40001, "10.9.9.9", 8001, [.syn], payload: 0, at: 20 * second + Int64(c))
                b.learn(f.table[u.slot], learningPeriod: 0, maxServices: 100)
                out[c] = b.isEstablished(f.table[u.slot], establishedClients: 4)
            }
            return out
        }
        let forward = verdicts(Array(3...12)), backward = verdicts(Array((3...12).reversed()))
        XCTAssertEqual(forward, backward)
        // Two earlier clients and its own make three: short of four, whatever else came this second.
        XCTAssertEqual(Set(forward.values), [false])
        // After the tick the second's clients count.
        let f = FlowFactory()
        var b = ServiceBaseline()
        var last: FlowRecord?
        for c in 1...5 {
            let u = f.packet("10.0.0.\(c)", 40000, "10.9.9.9", 8001, [.syn], payload: 0, at: 30 * second)
            b.learn(f.table[u.slot], learningPeriod: 0, maxServices: 100)
            last = f.table[u.slot]
        }
        XCTAssertFalse(b.isEstablished(last!, establishedClients: 4))
        b.tick()
        XCTAssertTrue(b.isEstablished(last!, establishedClients: 4))
    }
}
