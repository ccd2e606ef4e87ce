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
