import XCTest
@testable import Detectors
import PacketCore

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
