import XCTest
import TestSupport
@testable import PacketCore

final class FlowTableTests: XCTestCase {
    func packet(_ src: String, _ sport: UInt16, _ dst: String, _ dport: UInt16, proto: UInt8 = 6, flags: TCPFlags = [.ack], at seconds: Double, wire: Int = 100) -> DecodedPacket {
        var p = DecodedPacket()
        p.timestamp = Timestamp(seconds: seconds)
        p.ipVersion = 4
        p.ipProtocol = proto
        p.source = IPAddress(src)!
        p.destination = IPAddress(dst)!
        p.sourcePort = sport
        p.destinationPort = dport
        p.hasPorts = true
        p.tcpFlags = flags
        p.wireLength = wire
        p.payloadLength = 10
        return p
    }

    func table(capacity: Int = 1024, configure: (inout FlowTableConfiguration) -> Void = { _ in }) -> FlowTable {
        var c = FlowTableConfiguration()
        c.capacity = capacity
        configure(&c)
        return FlowTable(configuration: c)
    }

    func testBidirectionalAccountingAndOriginator() {
        let t = table()
        var ended: [(FlowRecord, FlowEndReason)] = []
        let u1 = t.update(packet("10.0.0.9", 40000, "10.0.0.1", 445, flags: [.syn], at: 1)) { r, why, _ in ended.append((r, why)) }
        let u2 = t.update(packet("10.0.0.1", 445, "10.0.0.9", 40000, flags: [.syn, .ack], at: 1.1, wire: 60)) { r, why, _ in ended.append((r, why)) }
        _ = t.update(packet("10.0.0.9", 40000, "10.0.0.1", 445, flags: [.ack], at: 1.2)) { _, _, _ in }
        XCTAssertEqual(u1.slot, u2.slot)
        XCTAssertTrue(u1.isNew)
        XCTAssertFalse(u2.isNew)
        XCTAssertTrue(u1.fromOriginator)
        XCTAssertFalse(u2.fromOriginator)
        let r = t[u1.slot]
        XCTAssertEqual(r.originator.description, "10.0.0.9")
        XCTAssertEqual(r.responderPort, 445)
        XCTAssertEqual(r.originatorPackets, 2)
        XCTAssertEqual(r.responderBytes, 60)
        XCTAssertEqual(r.tcpState, .established)
        XCTAssertTrue(ended.isEmpty)
    }

    func testMissedSYNMakesSynAckReceiverTheOriginator() {
        let t = table()
        let u = t.update(packet("10.0.0.1", 80, "10.0.0.9", 50000, flags: [.syn, .ack], at: 1)) { _, _, _ in }
        XCTAssertEqual(t[u.slot].originator.description, "10.0.0.9")
        XCTAssertFalse(u.fromOriginator)
    }

    func testTCPCloseRejectAndReuse() {
        let t = table()
        var reasons: [FlowEndReason] = []
        _ = t.update(packet("10.0.0.9", 1, "10.0.0.1", 80, flags: [.syn], at: 1)) { _, _, _ in }
        let u = t.update(packet("10.0.0.1", 80, "10.0.0.9", 1, flags: [.rst, .ack], at: 1.1)) { _, _, _ in }
        XCTAssertEqual(t[u.slot].tcpState, .rejected)
        XCTAssertFalse(t[u.slot].isEstablished)
        // A new SYN on the finished tuple reports the old attempt and starts a new flow.
        let u2 = t.update(packet("10.0.0.9", 1, "10.0.0.1", 80, flags: [.syn], at: 2)) { _, why, _ in reasons.append(why) }
        XCTAssertEqual(reasons, [.reused])
        XCTAssertTrue(u2.isNew)

        _ = t.update(packet("10.0.0.1", 80, "10.0.0.9", 1, flags: [.syn, .ack], at: 2.1)) { _, _, _ in }
        _ = t.update(packet("10.0.0.9", 1, "10.0.0.1", 80, flags: [.fin, .ack], at: 3)) { _, _, _ in }
        XCTAssertEqual(t[u2.slot].tcpState, .closing)
        _ = t.update(packet("10.0.0.1", 80, "10.0.0.9", 1, flags: [.fin, .ack], at: 3.1)) { _, _, _ in }
        XCTAssertEqual(t[u2.slot].tcpState, .closed)
        // Finished TCP flows leave after the short close timeout, not the long idle one.
        var closed: [FlowEndReason] = []
        t.expire(now: Timestamp(seconds: 4)) { _, why, _ in closed.append(why) }
        XCTAssertEqual(closed, [])
        t.expire(now: Timestamp(seconds: 8.2)) { _, why, _ in closed.append(why) }
        XCTAssertEqual(closed, [.tcpClosed])
        XCTAssertEqual(t.activeFlows, 0)
    }

    func testIdleTimeoutsPerTransport() {
        let t = table { $0.udpTimeout = .seconds(60); $0.tcpTimeout = .seconds(300) }
        _ = t.update(packet("10.0.0.1", 5353, "10.0.0.2", 53, proto: 17, at: 0)) { _, _, _ in }
        _ = t.update(packet("10.0.0.1", 1000, "10.0.0.2", 22, at: 0)) { _, _, _ in }
        var ended: [UInt8] = []
        t.expire(now: Timestamp(seconds: 59)) { r, _, _ in ended.append(r.key.ipProtocol) }
        XCTAssertEqual(ended, [])
        t.expire(now: Timestamp(seconds: 61)) { r, _, _ in ended.append(r.key.ipProtocol) }
        XCTAssertEqual(ended, [17])
        // Activity keeps a flow alive even though it sits at its list's head.
        _ = t.update(packet("10.0.0.1", 1000, "10.0.0.2", 22, at: 250)) { _, _, _ in }
        t.expire(now: Timestamp(seconds: 301)) { r, _, _ in ended.append(r.key.ipProtocol) }
        XCTAssertEqual(ended, [17])
        t.expire(now: Timestamp(seconds: 551)) { r, _, _ in ended.append(r.key.ipProtocol) }
        XCTAssertEqual(ended, [17, 6])
    }

    func testActiveTimeoutReportsAndRestartsCounters() {
        let t = table { $0.activeTimeout = .seconds(10) }
        var reports: [(UInt64, FlowEndReason)] = []
        for s in 0..<25 {
            _ = t.update(packet("10.0.0.1", 1000, "10.0.0.2", 22, at: Double(s))) { r, why, _ in reports.append((r.packetsA + r.packetsB, why)) }
        }
        XCTAssertEqual(reports.map(\.1), [.activeTimeout, .activeTimeout])
        XCTAssertEqual(reports.map(\.0), [10, 10])
        XCTAssertEqual(t.counters.activeTimeouts, 2)
    }

    func testCapacityEvictsStalestAndCounts() {
        let t = table(capacity: 16)
        var evicted: [UInt16] = []
        for i in 0..<20 {
            _ = t.update(packet("10.0.0.1", UInt16(1000 + i), "10.0.0.2", 80, proto: 17, at: Double(i) * 2)) { r, why, _ in
                XCTAssertEqual(why, .evicted)
                evicted.append(r.originatorPort)
            }
        }
        XCTAssertEqual(evicted, [1000, 1001, 1002, 1003])
        XCTAssertEqual(t.counters.evicted, 4)
        XCTAssertEqual(t.activeFlows, 16)
    }

    /// Random inserts, lookups and removals against a dictionary model: the open-addressing index with
    /// backward-shift deletion never loses or duplicates a flow.
    func testIndexAgainstModel() {
        let t = table(capacity: 512) { $0.udpTimeout = .seconds(1) }
        var rng = SeededRandom(seed: 7)
        var live = Set<UInt16>()
        var now = 0.0
        for step in 0..<60_000 {
            let port = UInt16(rng.next() % 700)
            now += 0.01
            let u = t.update(packet("10.9.9.9", port, "10.0.0.1", 53, proto: 17, at: now)) { r, _, _ in live.remove(r.originatorPort) }
            XCTAssertEqual(u.isNew, !live.contains(port), "step \(step)")
            live.insert(port)
            if step % 500 == 0 {
                t.expire(now: Timestamp(seconds: now)) { r, _, _ in live.remove(r.originatorPort) }
            }
            XCTAssertEqual(t.activeFlows, live.count)
            if t.activeFlows != live.count { return }
        }
        var seen = Set<UInt16>()
        t.forEach { r, _ in seen.insert(r.originatorPort) }
        XCTAssertEqual(seen, live)
    }

    func testBytesPerFlowIsDocumentedSize() {
        let t = table(capacity: 262_144)
        XCTAssertLessThanOrEqual(t.bytesPerFlow, 200)
        XCTAssertEqual(MemoryLayout<FlowRecord>.stride + 16 + 4, t.bytesPerFlow)
    }
}

final class FlowTableIndexGrowthTests: XCTestCase {
    /// The index starts small and doubles as flows arrive; every flow stays findable across growths.
    func testIndexGrowsAndKeepsEveryFlow() {
        var c = FlowTableConfiguration()
        c.capacity = 100_000
        let t = FlowTable(configuration: c)
        var ports: [Int32: UInt32] = [:]
        for i in 0..<60_000 {
            var p = DecodedPacket()
            p.timestamp = Timestamp(seconds: 1)
            p.ipVersion = 4; p.ipProtocol = 17; p.hasPorts = true
            p.source = IPAddress(ipv4: 0x0a00_0000 | UInt32(i)); p.destination = IPAddress("192.0.2.1")!
            p.sourcePort = UInt16(i & 0xffff); p.destinationPort = 53
            let u = t.update(p) { _, _, _ in XCTFail("nothing ends") }
            XCTAssertTrue(u.isNew)
            ports[u.slot] = UInt32(i)
        }
        XCTAssertGreaterThanOrEqual(t.indexGrowths, 3)
        for i in stride(from: 0, to: 60_000, by: 7) {
            var p = DecodedPacket()
            p.timestamp = Timestamp(seconds: 2)
            p.ipVersion = 4; p.ipProtocol = 17; p.hasPorts = true
            p.source = IPAddress("192.0.2.1")!; p.destination = IPAddress(ipv4: 0x0a00_0000 | UInt32(i))
            p.sourcePort = 53; p.destinationPort = UInt16(i & 0xffff)
            let u = t.update(p) { _, _, _ in }
            XCTAssertFalse(u.isNew, "flow \(i) lost after growth")
            XCTAssertEqual(ports[u.slot], UInt32(i))
        }
        XCTAssertEqual(t.activeFlows, 60_000)
    }
}
