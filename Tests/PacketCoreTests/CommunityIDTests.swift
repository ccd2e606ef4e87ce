import Foundation
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

final class SHA1Tests: XCTestCase {
    func hex(_ s: String) -> String {
        var b = Array(s.utf8)
        let d = b.withUnsafeMutableBytes { SHA1.hash(UnsafeRawBufferPointer($0)) }
        return withUnsafeBytes(of: d) { $0.map { String(format: "%02x", $0) }.joined() }
    }

    /// FIPS 180 test vectors, including the multi-block and the 55/56/64-byte padding edges.
    func testKnownVectors() {
        XCTAssertEqual(hex(""), "da39a3ee5e6b4b0d3255bfef95601890afd80709")
        XCTAssertEqual(hex("abc"), "a9993e364706816aba3e25717850c26c9cd0d89d")
        XCTAssertEqual(hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"), "84983e441c3bd26ebaae4aa1f95129e5e54670f1")
        XCTAssertEqual(hex(String(repeating: "a", count: 55)), "c1c8bbdc22796e28c0e15163d20899b65621d65a")
        XCTAssertEqual(hex(String(repeating: "a", count: 64)), "0098ba824b5c16427bd7a1122a5a442a25ec644d")
        XCTAssertEqual(hex(String(repeating: "a", count: 1000)), "291e9a6c66994949b57ba5e650361e98fc36b1ba")
    }
}
