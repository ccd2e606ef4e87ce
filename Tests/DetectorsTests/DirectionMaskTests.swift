import XCTest
import ConfigKit
@testable import Detectors
import PacketCore

/// The four-bit mask the port and beaconing detectors test a flow's direction with says what looking the
/// flow's direction up in the rules' set says: every set of directions, every direction.
final class DirectionMaskTests: XCTestCase {
    func testMaskAgreesWithTheDirectionForEverySet() {
        let homes = NetworkSet([IPNetwork("10.0.0.0/8")!, IPNetwork("fd00::/8")!])
        let inside = [IPAddress("10.1.2.3")!, IPAddress("fd00::1")!]
        let outside = [IPAddress("203.0.113.7")!, IPAddress("2001:db8::1")!]
        let all = NetworkDirection.allCases
        for subset in 0..<16 {
            let directions = Set(all.indices.filter { subset & 1 << $0 != 0 }.map { all[$0] })
            let mask = DirectionMask(directions)
            for s in inside + outside {
                for d in inside + outside {
                    XCTAssertEqual(mask.contains(homes, from: s, to: d), directions.contains(NetworkDirection(homes, from: s, to: d)),
                                   "\(directions) \(s) → \(d)")
                }
            }
        }
        XCTAssertEqual(NetworkDirection(homes, from: inside[0], to: outside[0]), .outbound)
        XCTAssertEqual(NetworkDirection(homes, from: outside[0], to: inside[0]), .inbound)
        XCTAssertEqual(NetworkDirection(homes, from: inside[0], to: inside[1]), .internal)
        XCTAssertEqual(NetworkDirection(homes, from: outside[0], to: outside[1]), .external)
    }

    /// Rules files name directions by their ECS values; any other name is an error on its line.
    func testRulesReadDirectionNamesAndReportUnknownOnes() throws {
        let ok = try YAMLDocument.parse("""
        nonstandard_port_c2:
          directions: [inbound, internal]
          encrypted_to_bare_ip:
            directions: [external]
        """, file: "c2.yaml")
        let rules = try C2PortRules.parse(ok!)
        XCTAssertEqual(rules.directions, [.inbound, .internal])
        XCTAssertEqual(rules.bareIP.directions, [.external])
        XCTAssertEqual(C2PortRules().directions, [.outbound, .internal, .external])
        XCTAssertEqual(C2PortRules().bareIP.directions, [.outbound])
        let bad = try YAMLDocument.parse("""
        nonstandard_port_c2:
          directions: [outbound, sideways]
        """, file: "c2.yaml")
        do {
            _ = try C2PortRules.parse(bad!)
            XCTFail("expected issues")
        } catch {
            XCTAssertEqual(error.issues.map(\.line), [2])
            XCTAssertEqual(error.issues.first?.message,
                           "nonstandard_port_c2.directions[1]: 'sideways' is not a direction (one of outbound, internal, external, inbound)")
        }
    }
}
