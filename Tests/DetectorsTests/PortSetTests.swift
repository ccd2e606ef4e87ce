import XCTest
@testable import Detectors

/// `members` lists exactly the ports `contains` accepts, in order: the port-ownership tables the
/// non-standard-port detector builds at start come from it.
final class PortSetTests: XCTestCase {
    func testMembersAreTheContainedPortsAscending() {
        let sets: [PortSet] = [
            PortSet(),
            PortSet([0...0]),
            PortSet([65535...65535]),
            PortSet([20...22, 63...65, 127...129, 443...443, 8000...8080]),
            PortSet([0...65535]),
            PortSet([1024...65535, 7...7]),
        ]
        for set in sets {
            let expected = (0...65535).filter { set.contains(UInt16($0)) }.map { UInt16($0) }
            XCTAssertEqual(set.members, expected)
        }
        XCTAssertEqual(PortSet([20...22, 63...65]).members, [20, 21, 22, 63, 64, 65])
    }
}
