import PacketCore
import XCTest

final class IPAddressParsingTests: XCTestCase {
    /// A trailing `::` keeps the groups before it in front (`fe80::` is fe80:0:…:0, not ::fe80).
    func testTrailingDoubleColon() {
        XCTAssertEqual(IPAddress("fe80::")?.description, "fe80::")
        XCTAssertEqual(IPAddress("2001:db8::")?.high, 0x2001_0db8_0000_0000)
        XCTAssertEqual(IPAddress("::")?.description, "::")
        XCTAssertEqual(IPAddress("::1")?.low, 1)
        XCTAssertNil(IPAddress("::1::"))
        XCTAssertTrue(NetworkSet.privateDefaults.contains(IPAddress("fe80::1")!))
        XCTAssertTrue(NetworkSet.privateDefaults.contains(IPAddress("fd12:3456::1")!))
        XCTAssertFalse(NetworkSet.privateDefaults.contains(IPAddress("2a02:cf40::1")!))
    }
}
