import XCTest
import TestSupport
@testable import PacketCore
#if canImport(Glibc)
import Glibc
#endif

final class IPAddressTests: XCTestCase {
    /// Our IPv6 text form equals glibc's inet_ntop (RFC 5952) for random and edge-case addresses.
    func testIPv6FormattingMatchesInetNtop() {
        var rng = SeededRandom(seed: 99)
        var cases: [(UInt64, UInt64)] = [(0, 0), (0, 1), (0, 0xffff_0a00_0001), (0x2001_0db8_0000_0000, 1), (0xfe80_0000_0000_0000, 0x0000_0000_0000_0001),
                                         (0x2001_0db8_0000_0000, 0x0000_0001_0000_0000), (0x0001_0000_0000_0000, 0)]
        for _ in 0..<5000 {
            var h = rng.next(), l = rng.next()
            // Zero out random groups to exercise "::" placement.
            for g in 0..<4 where rng.next() % 2 == 0 { h &= ~(UInt64(0xffff) << UInt64(16 * g)) }
            for g in 0..<4 where rng.next() % 2 == 0 { l &= ~(UInt64(0xffff) << UInt64(16 * g)) }
            cases.append((h, l))
        }
        for (h, l) in cases {
            let a = IPAddress(high: h, low: l, isIPv6: true)
            var bytes = (h.bigEndian, l.bigEndian)
            var buf = [CChar](repeating: 0, count: 64)
            withUnsafeBytes(of: &bytes) { _ = inet_ntop(AF_INET6, $0.baseAddress, &buf, 64) }
            let expected = String(cString: buf)
            XCTAssertEqual(a.description, expected)
            XCTAssertEqual(IPAddress(expected), a, "parse \(expected)")
        }
    }

    func testIPv4AndNetworks() {
        XCTAssertEqual(IPAddress("192.168.1.254")?.description, "192.168.1.254")
        XCTAssertNil(IPAddress("256.1.1.1"))
        XCTAssertNil(IPAddress("1.2.3"))
        XCTAssertNil(IPAddress("1:2:3"))
        XCTAssertNil(IPAddress("1::2::3"))
        let n = IPNetwork("172.16.0.0/12")!
        XCTAssertTrue(n.contains(IPAddress("172.31.255.1")!))
        XCTAssertFalse(n.contains(IPAddress("172.32.0.1")!))
        XCTAssertTrue(NetworkSet.privateDefaults.contains(IPAddress("fd12::1")!))
        XCTAssertFalse(NetworkSet.privateDefaults.contains(IPAddress("8.8.8.8")!))
        XCTAssertNil(IPNetwork("10.0.0.0/33"))
    }

    func testRFC3339() {
        XCTAssertEqual(RFC3339.string(Timestamp(nanoseconds: 0)), "1970-01-01T00:00:00.000000Z")
        XCTAssertEqual(RFC3339.string(Timestamp(seconds: 1_700_000_000, nanoseconds: 123_456_789)), "2023-11-14T22:13:20.123456Z")
        XCTAssertEqual(RFC3339.string(Timestamp(seconds: 951_782_400)), "2000-02-29T00:00:00.000000Z")
        XCTAssertEqual(RFC3339.string(Timestamp(nanoseconds: -1_000)), "1969-12-31T23:59:59.999999Z")
    }
}
