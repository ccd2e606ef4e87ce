import XCTest
import TestSupport
@testable import Analyzers
import Events
import PacketCore

/// Collects what reassembly delivers, per direction.
final class CollectingConsumer: StreamConsumer {
    let name = "collect"
    var data: [[UInt8]] = [[], []]
    var gaps: [Bool] = [false, false]
    var ended = 0
    var stopAfter: Int?
    func wantsStream(_ flow: FlowRecord, slot: Int32, firstPayload: UnsafeRawBufferPointer, fromOriginator: Bool) -> Bool { true }
    func stream(_ bytes: UnsafeRawBufferPointer, fromOriginator: Bool, slot: Int32, flows: FlowTable, at time: Timestamp) -> StreamVerdict {
        data[fromOriginator ? 0 : 1].append(contentsOf: bytes)
        if let s = stopAfter, data[0].count >= s { return .doneWithFlow }
        return .more
    }
    func gap(fromOriginator: Bool, slot: Int32, flows: FlowTable, at time: Timestamp) { gaps[fromOriginator ? 0 : 1] = true }
    func streamEnded(_ flow: FlowRecord, slot: Int32) { ended += 1 }
}

/// Drives a flow table and the reassembler with hand-built TCP segments (IPv4/TCP in an Ethernet frame).
struct SegmentDriver {
    let table = FlowTable(configuration: { var c = FlowTableConfiguration(); c.capacity = 1024; return c }())
    let reassembler: StreamReassembler
    let consumer = CollectingConsumer()
    var time: Int64 = 1_000_000_000

    init(configuration: ReassemblyConfiguration = ReassemblyConfiguration()) {
        reassembler = StreamReassembler(flowCapacity: 1024, configuration: configuration)
        reassembler.add(consumer)
    }

    mutating func send(fromClient: Bool, seq: UInt32, flags: TCPFlags = [.ack, .psh], payload: [UInt8], claimed: Int? = nil) {
        var frame = [UInt8](repeating: 0, count: 54)
        frame.append(contentsOf: payload)
        time += 1000
        var p = DecodedPacket()
        p.timestamp = Timestamp(nanoseconds: time)
        p.ipVersion = 4
        p.ipProtocol = IPProtocol.tcp
        let client = IPAddress("10.0.0.1")!, server = IPAddress("10.0.0.2")!
        p.source = fromClient ? client : server
        p.destination = fromClient ? server : client
        p.sourcePort = fromClient ? 40000 : 445
        p.destinationPort = fromClient ? 445 : 40000
        p.hasPorts = true
        p.tcpFlags = flags
        p.tcpSequence = seq
        p.payloadOffset = 54
        p.payloadLength = claimed ?? payload.count
        p.wireLength = 54 + (claimed ?? payload.count)
        p.capturedLength = frame.count
        let u = table.update(p) { _, _, _ in }
        frame.withUnsafeBytes { f in
            let ctx = PacketContext(packet: p, frame: f, linkType: .ethernet, slot: u.slot, fromOriginator: u.fromOriginator, isNewFlow: u.isNew)
            reassembler.packet(ctx, flows: table)
        }
    }
}

final class StreamReassemblerTests: XCTestCase {
    func testInOrderWithHandshake() {
        var d = SegmentDriver()
        d.send(fromClient: true, seq: 1000, flags: [.syn], payload: [])
        d.send(fromClient: false, seq: 5000, flags: [.syn, .ack], payload: [])
        d.send(fromClient: true, seq: 1001, payload: Array("hello ".utf8))
        d.send(fromClient: true, seq: 1007, payload: Array("world".utf8))
        d.send(fromClient: false, seq: 5001, payload: Array("ok".utf8))
        XCTAssertEqual(String(decoding: d.consumer.data[0], as: UTF8.self), "hello world")
        XCTAssertEqual(String(decoding: d.consumer.data[1], as: UTF8.self), "ok")
        XCTAssertEqual(d.consumer.gaps, [false, false])
    }

    func testRetransmissionOverlapAndOutOfOrder() {
        var d = SegmentDriver()
        d.send(fromClient: true, seq: 1000, flags: [.syn], payload: [])
        d.send(fromClient: true, seq: 1011, payload: Array("KLMNO".utf8))      // out of order
        d.send(fromClient: true, seq: 1001, payload: Array("ABCDE".utf8))
        d.send(fromClient: true, seq: 1001, payload: Array("ABCDE".utf8))      // retransmission
        d.send(fromClient: true, seq: 1004, payload: Array("DEFGHIJ".utf8))    // overlap: old data wins
        XCTAssertEqual(String(decoding: d.consumer.data[0], as: UTF8.self), "ABCDEFGHIJKLMNO")
        XCTAssertGreaterThan(d.reassembler.counters.retransmittedBytes, 0)
        XCTAssertEqual(d.reassembler.counters.outOfOrderSegments, 1)
    }

    func testMidstreamFlowIsFollowed() {
        var d = SegmentDriver()
        d.send(fromClient: true, seq: 777_000, payload: Array("mid".utf8))
        d.send(fromClient: true, seq: 777_003, payload: Array("stream".utf8))
        XCTAssertEqual(String(decoding: d.consumer.data[0], as: UTF8.self), "midstream")
    }

    func testSequenceWrapAround() {
        var d = SegmentDriver()
        d.send(fromClient: true, seq: UInt32.max - 2, payload: Array("abc".utf8))
        d.send(fromClient: true, seq: 0, payload: Array("def".utf8))
        XCTAssertEqual(String(decoding: d.consumer.data[0], as: UTF8.self), "abcdef")
    }

    func testGapEndsDirectionCleanly() {
        var c = ReassemblyConfiguration()
        c.maxPendingBytesPerFlow = 8
        var d = SegmentDriver(configuration: c)
        d.send(fromClient: true, seq: 1, payload: Array("abc".utf8))
        d.send(fromClient: true, seq: 100, payload: Array("0123456789".utf8))  // hole that cannot be held
        d.send(fromClient: true, seq: 4, payload: Array("def".utf8))
        XCTAssertEqual(String(decoding: d.consumer.data[0], as: UTF8.self), "abc")
        XCTAssertEqual(d.consumer.gaps[0], true)
        XCTAssertEqual(d.reassembler.counters.gaps, 1)
    }

    func testSnapLengthCutIsAGap() {
        var d = SegmentDriver()
        d.send(fromClient: true, seq: 1, payload: Array("abc".utf8), claimed: 100)
        d.send(fromClient: true, seq: 101, payload: Array("zzz".utf8))
        XCTAssertEqual(String(decoding: d.consumer.data[0], as: UTF8.self), "abc")
        XCTAssertTrue(d.consumer.gaps[0])
    }

    func testPerDirectionBudgetStops() {
        var c = ReassemblyConfiguration()
        c.maxBytesPerDirection = 4
        var d = SegmentDriver(configuration: c)
        d.send(fromClient: true, seq: 1, payload: Array("abcdef".utf8))
        d.send(fromClient: true, seq: 7, payload: Array("gh".utf8))
        XCTAssertEqual(String(decoding: d.consumer.data[0], as: UTF8.self), "abcd")
        XCTAssertEqual(d.reassembler.counters.budgetStops, 1)
    }

    func testConsumerCanStopFollowingAFlow() {
        var d = SegmentDriver()
        d.consumer.stopAfter = 2
        d.send(fromClient: true, seq: 1, payload: Array("ab".utf8))
        d.send(fromClient: true, seq: 3, payload: Array("cd".utf8))
        d.send(fromClient: false, seq: 50, payload: Array("xy".utf8))
        XCTAssertEqual(d.consumer.data[0], Array("ab".utf8))
        XCTAssertEqual(d.consumer.data[1], [])
    }

    /// Random segmentations, reorderings and duplications of a stream (no loss) always reassemble exactly.
    func testRandomReorderingReassemblesExactly() {
        var rng = SeededRandom(seed: 42)
        for _ in 0..<2000 {
            var d = SegmentDriver()
            let length = Int(rng.next() % 3000) + 1
            let stream = (0..<length).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            let isn = UInt32(truncatingIfNeeded: rng.next())
            var segments: [(UInt32, [UInt8])] = []
            var off = 0
            while off < length {
                let n = min(length - off, Int(rng.next() % 400) + 1)
                segments.append((isn &+ 1 &+ UInt32(off), Array(stream[off..<(off + n)])))
                off += n
            }
            // Duplicates and local reordering (within a window, as real networks do).
            for _ in 0..<(segments.count / 4) { segments.append(segments[Int(rng.next() % UInt64(segments.count))]) }
            for i in segments.indices.dropFirst() where rng.next() % 3 == 0 {
                let j = max(1, i - Int(rng.next() % 4))
                segments.swapAt(i, j)
            }
            d.send(fromClient: true, seq: isn, flags: [.syn], payload: [])
            for (seq, bytes) in segments { d.send(fromClient: true, seq: seq, payload: bytes) }
            XCTAssertEqual(d.consumer.data[0], stream)
            XCTAssertFalse(d.consumer.gaps[0])
        }
    }
}
