import XCTest
@testable import PacketCore

final class CommunityIDTests: XCTestCase {
    func testSpecVectorTCP() {
        // From the Community ID spec's baseline: 128.232.110.120:34855 -> 66.35.250.204:80 TCP, seed 0.
        var p = DecodedPacket()
        p.ipVersion = 4
        p.ipProtocol = IPProtocol.tcp
        p.source = IPAddress("128.232.110.120")!
        p.destination = IPAddress("66.35.250.204")!
        p.sourcePort = 34855
        p.destinationPort = 80
        p.hasPorts = true
        let (key, _) = FlowKey.make(p)
        XCTAssertEqual(CommunityID().string(key), "1:LQU9qZlK+B5F3KDmev6m5PMibrg=")
    }
}
