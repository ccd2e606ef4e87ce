import XCTest
import TestSupport
@testable import Analyzers
import Events
import PacketCore

/// The worker-wide bound on stream parser buffers, and buffers that grow with what they hold.
final class ParserMemoryBudgetTests: XCTestCase {
    /// The first 11 bytes of a TLS record carrying a ClientHello of 0x1fc bytes: a hello cut after its header.
    static let tlsFragment: [UInt8] = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xFC, 0x03, 0x03]

    /// Sends `payload` as the first segment of a new client flow (source address from `n`) to `port`.
    func open(_ n: Int, port: UInt16, payload: [UInt8], table: FlowTable, reassembler: StreamReassembler) {
        var p = DecodedPacket()
        p.ipVersion = 4
        p.ipProtocol = IPProtocol.tcp
        p.source = IPAddress(ipv4: 0x0A00_0000 | UInt32(n))
        p.destination = IPAddress("10.200.0.1")!
        p.sourcePort = UInt16(1024 + n % 50_000)
        p.destinationPort = port
        p.hasPorts = true
        p.tcpFlags = [.ack, .psh]
        p.tcpSequence = 1
        p.payloadOffset = 54
        p.payloadLength = payload.count
        p.wireLength = 54 + payload.count
        p.capturedLength = 54 + payload.count
        let u = table.update(p) { r, reason, slot in reassembler.flowEnded(r, reason: reason, slot: slot) }
        let frame = [UInt8](repeating: 0, count: 54) + payload
        frame.withUnsafeBytes { f in
            reassembler.packet(PacketContext(packet: p, frame: f, linkType: .ethernet, slot: u.slot, fromOriginator: u.fromOriginator, isNewFlow: u.isNew), flows: table)
        }
    }

    func testPartialHelloCostsWhatItHolds() {
        let table = FlowTable(configuration: { var c = FlowTableConfiguration(); c.capacity = 1024; return c }())
        let reassembler = StreamReassembler(flowCapacity: 1024)
        let tls = TLSAnalyzer(flowCapacity: 1024, budget: reassembler.parserBudget)
        reassembler.add(tls)
        open(1, port: 443, payload: Self.tlsFragment, table: table, reassembler: reassembler)
        // One buffer: its object and a few dozen bytes of storage, not a 2 KiB reservation.
        XCTAssertGreaterThan(reassembler.parserBudget.used, 0)
        XCTAssertLessThanOrEqual(reassembler.parserBudget.used, ParserBufferStorage.overhead + 64)
        table.flushAll(reason: .endOfInput) { r, reason, slot in reassembler.flowEnded(r, reason: reason, slot: slot) }
        XCTAssertEqual(reassembler.parserBudget.used, 0)
    }

    /// Thousands of flows that each open with a partial TLS hello, HTTP head, SMB or DCE-RPC message:
    /// the shared budget holds, refusals are counted (not as malformed), and ending the flows returns it all.
    func testSharedBudgetBoundsEveryParser() {
        let limit = 256 << 10
        let budget = ParserMemoryBudget(limit: limit)
        let table = FlowTable(configuration: { var c = FlowTableConfiguration(); c.capacity = 65536; return c }())
        let reassembler = StreamReassembler(flowCapacity: 65536, parserBudget: budget)
        let tls = TLSAnalyzer(flowCapacity: 65536, budget: budget)
        let http = HTTPAnalyzer(budget: budget)
        let smb = SMBAnalyzer(budget: budget)
        let rpc = DCERPCAnalyzer(budget: budget)
        let kerberos = KerberosAnalyzer(budget: budget)
        for c in [tls, http, smb, rpc, kerberos] as [any StreamConsumer] { reassembler.add(c) }
        let httpHead = Array("GET /index.html HTTP/1.1\r\nHost: exa".utf8)
        let smbPart: [UInt8] = [0x00, 0x00, 0x01, 0x00, 0xFE, 0x53, 0x4D, 0x42, 0x40, 0x00]
        let rpcPart: [UInt8] = [5, 0, 11, 3, 0x10, 0, 0, 0, 0x00, 0x04, 0, 0, 1, 0, 0, 0, 0xB8, 0x10, 0xB8, 0x10]
        let krbPart: [UInt8] = [0, 0, 0x01, 0x00, 0x6A, 0x82]
        for i in 0..<20_000 {
            switch i % 5 {
            case 0: open(i, port: 443, payload: Self.tlsFragment, table: table, reassembler: reassembler)
            case 1: open(i, port: 8080, payload: httpHead, table: table, reassembler: reassembler)
            case 2: open(i, port: 445, payload: smbPart, table: table, reassembler: reassembler)
            case 3: open(i, port: 135, payload: rpcPart, table: table, reassembler: reassembler)
            default: open(i, port: 88, payload: krbPart, table: table, reassembler: reassembler)
            }
            XCTAssertLessThanOrEqual(budget.used, limit)
        }
        XCTAssertGreaterThan(budget.refusals, 10_000)
        XCTAssertGreaterThan(budget.peak, limit - 4096)
        XCTAssertEqual(tls.counters.malformed, 0)
        XCTAssertEqual(http.counters.malformed, 0)
        XCTAssertEqual(smb.counters.desyncs, 0)
        table.flushAll(reason: .endOfInput) { r, reason, slot in reassembler.flowEnded(r, reason: reason, slot: slot) }
        XCTAssertEqual(budget.used, 0)
    }

    /// Buffers grow geometrically from what they hold and give their charge back when dropped.
    func testBufferChargesFollowCapacity() {
        let budget = ParserMemoryBudget(limit: 1 << 20)
        var b: ParserBuffer? = [UInt8](repeating: 1, count: 5).withUnsafeBytes { ParserBuffer(budget: budget, holding: $0) }
        for _ in 0..<1000 { XCTAssertTrue([UInt8](repeating: 2, count: 7).withUnsafeBytes { b!.append($0) }) }
        XCTAssertEqual(b!.count, 7005)
        XCTAssertGreaterThanOrEqual(budget.used, ParserBufferStorage.overhead + 7005)
        XCTAssertLessThanOrEqual(budget.used, ParserBufferStorage.overhead + 2 * 7005 + 64)
        b = nil
        XCTAssertEqual(budget.used, 0)
        let small = ParserMemoryBudget(limit: 200)
        XCTAssertNil([UInt8](repeating: 0, count: 300).withUnsafeBytes { ParserBuffer(budget: small, holding: $0) })
        XCTAssertEqual(small.used, 0)
        XCTAssertEqual(small.refusals, 1)
    }
}
