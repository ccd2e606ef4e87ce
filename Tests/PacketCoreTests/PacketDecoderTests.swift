import XCTest
import TestSupport
@testable import PacketCore

final class PacketDecoderTests: XCTestCase {
    func testEthernetIPv4TCP() {
        var f = FrameBuilder()
        f.ethernet(type: 0x0800)
        f.ipv4(src: "10.1.2.3", dst: "192.168.0.9", proto: 6, payloadLength: 24)
        f.tcp(sport: 51000, dport: 443, seq: 77, flags: 0x02, payload: [1, 2, 3, 4])
        let (o, p) = f.decode()
        XCTAssertEqual(o, .ok)
        XCTAssertEqual(p.source.description, "10.1.2.3")
        XCTAssertEqual(p.destination.description, "192.168.0.9")
        XCTAssertEqual(p.sourcePort, 51000)
        XCTAssertEqual(p.destinationPort, 443)
        XCTAssertEqual(p.tcpSequence, 77)
        XCTAssertEqual(p.tcpFlags, .syn)
        XCTAssertEqual(p.payloadLength, 4)
        XCTAssertEqual(p.payloadOffset, 14 + 20 + 20)
    }

    func testVLANAndQinQ() {
        var f = FrameBuilder()
        f.ethernet(type: 0x88A8)
        f.vlan(100, next: 0x8100)
        f.vlan(200, next: 0x0800)
        f.ipv4(src: "1.1.1.1", dst: "2.2.2.2", proto: 17, payloadLength: 8)
        f.udp(sport: 53, dport: 5353)
        let (o, p) = f.decode()
        XCTAssertEqual(o, .ok)
        XCTAssertEqual(p.vlan, 100)
        XCTAssertEqual(p.destinationPort, 5353)
    }

    func testIPv4OptionsAndTrailerIgnored() {
        var f = FrameBuilder()
        f.ethernet(type: 0x0800)
        f.ipv4(src: "1.1.1.1", dst: "2.2.2.2", proto: 17, payloadLength: 10, options: [0x94, 0x04, 0, 0])
        f.udp(sport: 1, dport: 2, payload: [9, 9])
        f.raw([0, 0, 0, 0, 0, 0])  // Ethernet padding must not count as payload
        let (o, p) = f.decode()
        XCTAssertEqual(o, .ok)
        XCTAssertEqual(p.payloadOffset, 14 + 24 + 8)
        XCTAssertEqual(p.payloadLength, 2)
    }

    func testFragments() {
        var first = FrameBuilder()
        first.ethernet(type: 0x0800)
        first.ipv4(src: "1.1.1.1", dst: "2.2.2.2", proto: 17, payloadLength: 16, moreFragments: true)
        first.udp(sport: 5000, dport: 6000, payload: [UInt8](repeating: 7, count: 8))
        let (o1, p1) = first.decode()
        XCTAssertEqual(o1, .ok)
        XCTAssertEqual(p1.fragment, 1)
        XCTAssertEqual(p1.destinationPort, 6000)

        var later = FrameBuilder()
        later.ethernet(type: 0x0800)
        later.ipv4(src: "1.1.1.1", dst: "2.2.2.2", proto: 17, payloadLength: 8, fragOffset: 2)
        later.raw([UInt8](repeating: 7, count: 8))
        let (o2, p2) = later.decode()
        XCTAssertEqual(o2, .laterFragment)
        XCTAssertFalse(p2.hasPorts)
    }

    func testIPv6ExtensionHeadersAndFragment() {
        var f = FrameBuilder()
        f.ethernet(type: 0x86DD)
        // Hop-by-hop (8 bytes) -> fragment header (8 bytes, first fragment) -> TCP (20 bytes)
        f.ipv6(src: "2001:db8::1", dst: "2001:db8::2", next: 0, payloadLength: 8 + 8 + 20)
        f.raw([44, 0, 1, 4, 0, 0, 0, 0])
        f.raw([6, 0, 0, 1, 0, 0, 0, 42])
        f.tcp(sport: 1234, dport: 22, flags: 0x10)
        let (o, p) = f.decode()
        XCTAssertEqual(o, .ok)
        XCTAssertEqual(p.ipProtocol, 6)
        XCTAssertEqual(p.fragment, 1)
        XCTAssertEqual(p.destinationPort, 22)
        XCTAssertEqual(p.source.description, "2001:db8::1")
    }

    func testLinuxCookedV1AndV2AndRaw() {
        var ip = FrameBuilder()
        ip.ipv4(src: "10.0.0.1", dst: "10.0.0.2", proto: 17, payloadLength: 8)
        ip.udp(sport: 67, dport: 68)

        var sll = FrameBuilder()
        sll.raw([0, 0, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0]); sll.u16(0x0800); sll.raw(ip.bytes)
        XCTAssertEqual(sll.decode(.linuxSLL).0, .ok)

        var sll2 = FrameBuilder()
        sll2.u16(0x0800); sll2.raw([0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0]); sll2.raw(ip.bytes)
        XCTAssertEqual(sll2.decode(.linuxSLL2).0, .ok)
        XCTAssertEqual(sll2.decode(.linuxSLL2).1.destinationPort, 68)

        XCTAssertEqual(ip.decode(.raw).0, .ok)
        XCTAssertEqual(ip.decode(.ipv4).0, .ok)
        XCTAssertEqual(ip.decode(LinkType(rawValue: 9999)).0, .unsupportedLinkType)
    }

    func testICMPAndICMPv6() {
        var f = FrameBuilder()
        f.ethernet(type: 0x0800)
        f.ipv4(src: "10.0.0.1", dst: "10.0.0.2", proto: 1, payloadLength: 8)
        f.raw([8, 0, 0, 0, 0, 1, 0, 1])
        let (o, p) = f.decode()
        XCTAssertEqual(o, .ok)
        XCTAssertEqual(p.icmpType, 8)

        var g = FrameBuilder()
        g.ethernet(type: 0x86DD)
        g.ipv6(src: "fe80::1", dst: "ff02::1", next: 58, payloadLength: 8)
        g.raw([135, 0, 0, 0, 0, 0, 0, 0])
        XCTAssertEqual(g.decode().1.icmpType, 135)
    }

    func testNonIPAndHostileHeaders() {
        var arp = FrameBuilder()
        arp.ethernet(type: 0x0806)
        arp.raw([UInt8](repeating: 0, count: 28))
        XCTAssertEqual(arp.decode().0, .notIP)

        var badIHL = FrameBuilder()
        badIHL.ethernet(type: 0x0800)
        badIHL.ipv4(src: "1.1.1.1", dst: "2.2.2.2", proto: 6, payloadLength: 20)
        badIHL.bytes[14] = 0x43  // IHL 3 words
        XCTAssertEqual(badIHL.decode().0, .malformed)

        var cut = FrameBuilder()
        cut.ethernet(type: 0x0800)
        cut.ipv4(src: "1.1.1.1", dst: "2.2.2.2", proto: 6, payloadLength: 20)
        cut.raw([0, 80])  // only 2 bytes of TCP
        XCTAssertEqual(cut.decode().0, .truncated)

        var lyingOffset = FrameBuilder()
        lyingOffset.ethernet(type: 0x0800)
        lyingOffset.ipv4(src: "1.1.1.1", dst: "2.2.2.2", proto: 6, payloadLength: 20)
        lyingOffset.tcp(sport: 1, dport: 2, flags: 0x10, dataOffsetWords: 15)  // claims 60 bytes, IP has 20
        let (o, p) = lyingOffset.decode()
        XCTAssertEqual(o, .truncated)
        XCTAssertTrue(p.hasPorts, "ports are still real: the flow keeps the packet")
        XCTAssertEqual(p.payloadLength, 0)

        var vlanLoop = FrameBuilder()
        vlanLoop.ethernet(type: 0x8100)
        for _ in 0..<20 { vlanLoop.vlan(1, next: 0x8100) }
        XCTAssertEqual(vlanLoop.decode().0, .malformed)
    }

    /// 200k random and mutated frames: the decoder and flow table never trap, and every packet lands in
    /// exactly one outcome.
    func testRandomAndMutatedFramesNeverCrash() {
        var rng = SystemRandomNumberGenerator()
        var seedRNG = SeededRandom(seed: 2024)
        var templates: [[UInt8]] = []
        var t = FrameBuilder(); t.ethernet(type: 0x0800); t.ipv4(src: "10.0.0.1", dst: "10.0.0.2", proto: 6, payloadLength: 24); t.tcp(sport: 1, dport: 2, flags: 0x18, payload: [1, 2, 3, 4])
        templates.append(t.bytes)
        var u = FrameBuilder(); u.ethernet(type: 0x86DD); u.ipv6(src: "::1", dst: "::2", next: 0, payloadLength: 16); u.raw([17, 0, 0, 0, 0, 0, 0, 0]); u.udp(sport: 5, dport: 53)
        templates.append(u.bytes)
        var v = FrameBuilder(); v.ethernet(type: 0x8100); v.vlan(5, next: 0x0800); v.ipv4(src: "1.2.3.4", dst: "5.6.7.8", proto: 1, payloadLength: 8); v.raw([3, 3, 0, 0, 0, 0, 0, 0])
        templates.append(v.bytes)
        var config = FlowTableConfiguration()
        config.capacity = 1024
        let table = FlowTable(configuration: config)
        var outcomes = [Int](repeating: 0, count: DecodeOutcome.allCases.count)
        let linkTypes: [LinkType] = [.ethernet, .raw, .linuxSLL, .linuxSLL2, .null, .loop, .ipv4, .ipv6]
        let iterations = 200_000
        var ended = 0
        for i in 0..<iterations {
            var frame: [UInt8]
            if i % 2 == 0 {
                frame = templates[Int(seedRNG.next() % UInt64(templates.count))]
                for _ in 0..<(1 + Int(seedRNG.next() % 4)) {
                    frame[Int(seedRNG.next() % UInt64(frame.count))] = UInt8(truncatingIfNeeded: seedRNG.next())
                }
                frame = Array(frame.prefix(Int(seedRNG.next() % UInt64(frame.count + 1))))
            } else {
                frame = (0..<Int(seedRNG.next() % 128)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            }
            var p = DecodedPacket()
            p.timestamp = Timestamp(nanoseconds: Int64(i) * 1_000_000)
            p.wireLength = frame.count
            p.capturedLength = frame.count
            let lt = i % 2 == 0 ? LinkType.ethernet : linkTypes[i % linkTypes.count]
            let o = frame.withUnsafeBytes { PacketDecoder.decode($0, linkType: lt, into: &p) }
            outcomes[Int(o.rawValue)] += 1
            if o == .ok || p.hasPorts {
                _ = table.update(p) { _, _, _ in ended += 1 }
            }
            if i % 1000 == 0 { table.expire(now: p.timestamp) { _, _, _ in ended += 1 } }
        }
        XCTAssertEqual(outcomes.reduce(0, +), iterations)
        XCTAssertGreaterThan(outcomes[Int(DecodeOutcome.ok.rawValue)], 1000)
        XCTAssertGreaterThan(outcomes[Int(DecodeOutcome.truncated.rawValue)], 1000)
        XCTAssertLessThanOrEqual(table.activeFlows, 1024)
        XCTAssertEqual(UInt64(ended), table.counters.ended)
    }
}
