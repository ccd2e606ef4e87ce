import XCTest
@testable import Detectors
import PacketCore

/// The four-bit mask the port and beaconing detectors test a flow's direction with says what naming
/// the direction and looking it up in the rules' set said: every set of directions, every direction.
final class DirectionMaskTests: XCTestCase {
    func testMaskAgreesWithTheNamedDirectionForEverySet() {
        let homes = NetworkSet([IPNetwork("10.0.0.0/8")!, IPNetwork("fd00::/8")!])
        let inside = [IPAddress("10.1.2.3")!, IPAddress("fd00::1")!]
        let outside = [IPAddress("203.0.113.7")!, IPAddress("2001:db8::1")!]
        let names = ["outbound", "internal", "external", "inbound"]
        for subset in 0..<16 {
            let directions = Set(names.indices.filter { subset & 1 << $0 != 0 }.map { names[$0] })
            let mask = DirectionMask(directions)
            for s in inside + outside {
                for d in inside + outside {
                    XCTAssertEqual(mask.contains(homes, from: s, to: d), directions.contains(directionName(homes, from: s, to: d)),
                                   "\(directions) \(s) → \(d)")
                }
            }
        }
        XCTAssertEqual(directionName(homes, from: inside[0], to: outside[0]), "outbound")
        XCTAssertEqual(directionName(homes, from: outside[0], to: inside[0]), "inbound")
        XCTAssertEqual(directionName(homes, from: inside[0], to: inside[1]), "internal")
        XCTAssertEqual(directionName(homes, from: outside[0], to: outside[1]), "external")
    }
}
