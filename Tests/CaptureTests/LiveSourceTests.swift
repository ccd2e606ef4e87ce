import Capture
import Foundation
import PacketCore
import XCTest

/// The live source against the real kernel, on loopback only, with a filter narrow enough that other
/// traffic on the machine's loopback never matches.
final class LiveSourceTests: XCTestCase {
    func requireRoot() throws {
        guard getuid() == 0 else { throw XCTSkip("opening a capture handle needs CAP_NET_RAW") }
    }

    func testUnknownInterfaceAndBadFilterAreReportedAtOpen() throws {
        try requireRoot()
        XCTAssertThrowsError(try PcapLiveSource(options: LiveCaptureOptions(interface: "no-such-if0"))) { e in
            XCTAssertEqual((e as? CaptureError)?.kind, .open)
        }
        var o = LiveCaptureOptions(interface: "lo")
        o.filter = "tcp port"
        XCTAssertThrowsError(try PcapLiveSource(options: o)) { e in XCTAssertEqual((e as? CaptureError)?.kind, .filter) }
        o.fanoutGroup = 4242
        XCTAssertThrowsError(try PcapLiveSource(options: o)) { e in XCTAssertEqual((e as? CaptureError)?.kind, .filter) }
    }

    /// Two handles in one fanout group split the flows between them: every flow lands whole on one handle,
    /// and nothing is delivered twice. An idle handle comes back with `.idle`, not a hang.
    func testFanoutDeliversEachFlowToOneHandle() throws {
        try requireRoot()
        let port: UInt16 = 39_871
        var o = LiveCaptureOptions(interface: "lo")
        o.filter = "udp and dst port \(port)"
        o.timeoutMilliseconds = 50
        o.bufferBytes = 4 << 20
        o.fanoutGroup = UInt16(truncatingIfNeeded: getpid() &+ 7)
        let a = try PcapLiveSource(options: o), b = try PcapLiveSource(options: o)
        usleep(100_000)
        try a.beginCapture()
        try b.beginCapture()

        // 32 flows (distinct source ports: every socket stays open until all are sent, so the kernel cannot
        // hand the same ephemeral port out twice), 4 datagrams each, to a port nobody listens on.
        let flows = 32, perFlow = 4
        var sockets: [Int32] = []
        defer { for fd in sockets { close(fd) } }
        var to = sockaddr_in()
        to.sin_family = sa_family_t(AF_INET)
        to.sin_port = port.bigEndian
        inet_pton(AF_INET, "127.0.0.1", &to.sin_addr)
        for i in 0..<flows {
            let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
            sockets.append(fd)
            for _ in 0..<perFlow {
                var payload = [UInt8](repeating: UInt8(i), count: 16)
                _ = withUnsafePointer(to: &to) { p in
                    p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, &payload, payload.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
                }
            }
        }
        func drain(_ s: PcapLiveSource) throws -> [UInt16: Int] {
            var ports: [UInt16: Int] = [:]
            var idles = 0
            while idles < 3 {
                switch try s.read() {
                case .packet(let p):
                    var d = DecodedPacket()
                    if PacketDecoder.decode(p.bytes, linkType: p.linkType, into: &d) == .ok { ports[d.sourcePort, default: 0] += 1 }
                case .idle: idles += 1
                case .end: return ports
                }
            }
            return ports
        }
        let fromA = try drain(a), fromB = try drain(b)
        XCTAssertEqual(fromA.count + fromB.count, flows, "every flow seen: \(fromA) \(fromB)")
        XCTAssertTrue(Set(fromA.keys).isDisjoint(with: fromB.keys), "a flow was split between handles")
        XCTAssertTrue((fromA.values.map { $0 } + fromB.values.map { $0 }).allSatisfy { $0 == perFlow })
        XCTAssertGreaterThan(fromA.count, 0)
        XCTAssertGreaterThan(fromB.count, 0)
        // On loopback the kernel counts the outgoing copy too (libpcap skips it), so at least one per datagram.
        XCTAssertGreaterThanOrEqual((a.statistics()?.received ?? 0) + (b.statistics()?.received ?? 0), UInt64(flows * perFlow))
        a.stop()
        if case .end = try a.read() {} else { XCTFail("read after stop must end") }
    }

    func testRootIsRefusedWithoutATargetUser() throws {
        try requireRoot()
        XCTAssertThrowsError(try LeastPrivilege.check(target: nil, allowRoot: false)) { e in
            XCTAssertEqual(e as? PrivilegeError, .refuseRoot)
        }
        XCTAssertNoThrow(try LeastPrivilege.check(target: nil, allowRoot: true))
        let nobody = try Account.lookup(user: "nobody")
        XCTAssertNoThrow(try LeastPrivilege.check(target: nobody, allowRoot: false))
        XCTAssertThrowsError(try Account.lookup(user: "no-such-user-x"))
        XCTAssertThrowsError(try Account.lookup(user: "nobody", group: "no-such-group-x"))
    }
}
