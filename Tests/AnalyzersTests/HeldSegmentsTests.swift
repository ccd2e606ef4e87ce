import XCTest
import TestSupport
@testable import Analyzers
import Events
import PacketCore

/// Out-of-order holding: hostile sequence numbers, floods, and the real-memory bounds.
final class HeldSegmentsTests: XCTestCase {
    /// The remote crash: a segment exactly 2^31 from the expected sequence number (`Int32.min`).
    func testSegmentHalfTheSequenceSpaceAwayIsOldData() {
        var d = SegmentDriver()
        d.send(fromClient: true, seq: 1000, payload: Array("ABCDEFGH".utf8))
        d.send(fromClient: true, seq: 1000 &+ 8 &+ (1 << 31), payload: [0x5A])
        d.send(fromClient: true, seq: 1008, payload: Array("IJ".utf8))
        XCTAssertEqual(String(decoding: d.consumer.data[0], as: UTF8.self), "ABCDEFGHIJ")
        XCTAssertEqual(d.reassembler.counters.retransmittedBytes, 1)
        XCTAssertEqual(d.consumer.gaps, [false, false])
    }

    /// Every relative position around the half-space boundary, both sides, with and without held data.
    func testSequenceDistancesAroundTheHalfSpace() {
        for delta: UInt32 in [(1 << 31) - 1, 1 << 31, (1 << 31) + 1, UInt32.max, 1 << 30] {
            var d = SegmentDriver()
            d.send(fromClient: true, seq: 5, payload: [1, 2, 3])
            d.send(fromClient: true, seq: 20, payload: [9])         // held
            d.send(fromClient: true, seq: 8 &+ delta, payload: [7, 7])
            d.send(fromClient: false, seq: 100, flags: [.ack], payload: [], ack: 8 &+ delta)
            XCTAssertEqual(Array(d.consumer.data[0].prefix(3)), [1, 2, 3], "delta \(delta)")
        }
    }

    /// Hole at the front, 80,000 one-byte segments, then the hole fills: linear, and cheap in memory.
    func testEightyThousandOneByteSegmentsDrainInLinearTime() {
        let n = 80_000
        let clock = ContinuousClock()
        // The same segments in order: what the driver and a linear reassembler cost in this build.
        var inOrder = SegmentDriver()
        let baseline = clock.measure {
            for i in 0...(n + 1) { inOrder.send(fromClient: true, seq: UInt32(1 + i), payload: [UInt8(truncatingIfNeeded: i)]) }
        }
        XCTAssertEqual(inOrder.consumer.data[0].count, n + 2)
        var d = SegmentDriver()
        let elapsed = clock.measure {
            d.send(fromClient: true, seq: 1, payload: [0])
            for i in 1...n { d.send(fromClient: true, seq: UInt32(2 + i), payload: [UInt8(truncatingIfNeeded: i)]) }
            d.send(fromClient: true, seq: 2, payload: [0xFF])
        }
        XCTAssertEqual(d.consumer.data[0].count, n + 2)
        XCTAssertEqual(d.consumer.data[0][2...].elementsEqual((1...n).map { UInt8(truncatingIfNeeded: $0) }), true)
        XCTAssertEqual(d.reassembler.counters.outOfOrderSegments, UInt64(n))
        // 80,000 bytes coalesce into one range over 20 blocks: far below one record per segment.
        XCTAssertLessThanOrEqual(d.reassembler.heldBytesPeak, 20 * HeldBlockPool.blockSize + 4096)
        XCTAssertEqual(d.reassembler.heldBytes, 0)
        XCTAssertEqual(d.reassembler.pool.blocksInUse, 0)
        // The quadratic drain took 40 s (release) here; holding and draining linearly costs about as much
        // as the in-order path.
        XCTAssertLessThan(elapsed, baseline * 3 + .milliseconds(200), "out of order \(elapsed), in order \(baseline)")
    }

    /// Random segmentations, full shuffles, retransmissions and overlaps (consistent content) against the
    /// model (the stream itself): every byte delivered once, in order; memory fully returned at the end.
    func testRandomOrdersAgainstModel() {
        var rng = SeededRandom(seed: 0x4E1D)
        var config = ReassemblyConfiguration()
        config.maxPendingBytesPerFlow = 1 << 20
        config.maxHeldSegmentsPerFlow = 1 << 16
        for round in 0..<300 {
            var d = SegmentDriver(configuration: config)
            let length = Int(rng.next() % 60_000) + 1
            let stream = (0..<length).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            let isn = UInt32(truncatingIfNeeded: rng.next())
            var segments: [(Int, Int)] = []
            var off = 0
            while off < length {
                let n = min(length - off, Int(rng.next() % 1500) + 1)
                segments.append((off, n))
                off += n
            }
            for _ in 0..<(segments.count / 3) {
                // Overlapping pieces (same bytes) and retransmissions.
                let a = Int(rng.next() % UInt64(length))
                segments.append((a, min(length - a, Int(rng.next() % 3000) + 1)))
            }
            segments.shuffle(using: &rng)
            d.send(fromClient: true, seq: isn, flags: [.syn], payload: [])
            for (o, n) in segments {
                d.send(fromClient: true, seq: isn &+ 1 &+ UInt32(o), payload: Array(stream[o..<(o + n)]))
                XCTAssertEqual(d.reassembler.heldBytes, d.reassembler.pending.values.reduce(0) { $0 + $1.memory })
            }
            XCTAssertEqual(d.consumer.data[0], stream, "round \(round)")
            XCTAssertFalse(d.consumer.gaps[0])
            XCTAssertEqual(d.reassembler.heldBytes, 0, "round \(round)")
            XCTAssertEqual(d.reassembler.pool.blocksInUse, 0)
        }
    }

    /// With tight bounds, whatever order: only a prefix of the stream is delivered, memory stays within the
    /// per-flow and worker bounds at every step, and ending the flow returns all of it.
    func testBoundedHoldingDeliversPrefixesWithinBounds() {
        var rng = SeededRandom(seed: 0xB0B)
        var config = ReassemblyConfiguration()
        config.maxPendingBytesPerFlow = 24 << 10
        config.maxHeldSegmentsPerFlow = 8
        for _ in 0..<300 {
            var d = SegmentDriver(configuration: config)
            let length = Int(rng.next() % 40_000) + 1
            let stream = (0..<length).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            var segments: [(Int, Int)] = []
            var off = 0
            while off < length {
                let n = min(length - off, Int(rng.next() % 700) + 1)
                segments.append((off, n))
                off += n
            }
            segments.shuffle(using: &rng)
            d.send(fromClient: true, seq: 99, flags: [.syn], payload: [])
            for (o, n) in segments {
                d.send(fromClient: true, seq: 100 &+ UInt32(o), payload: Array(stream[o..<(o + n)]))
                XCTAssertLessThanOrEqual(d.reassembler.heldBytes, config.maxPendingBytesPerFlow)
                XCTAssertLessThanOrEqual(d.reassembler.pending.values.reduce(0) { $0 + $1.ranges.count }, config.maxHeldSegmentsPerFlow)
            }
            XCTAssertTrue(d.consumer.data[0].elementsEqual(stream.prefix(d.consumer.data[0].count)))
            let c = d.reassembler.counters
            XCTAssertEqual(c.pendingDropped, c.heldFlowLimit + c.heldSegmentLimit + c.heldWorkerLimit)
            d.table.flushAll(reason: .endOfInput) { r, reason, slot in d.reassembler.flowEnded(r, reason: reason, slot: slot) }
            XCTAssertEqual(d.reassembler.heldBytes, 0)
            XCTAssertEqual(d.reassembler.pool.blocksInUse, 0)
        }
    }

    /// A scatter of one-byte segments with holes between them hits the per-flow range cap, not memory.
    func testScatteredSegmentsHitTheSegmentCap() {
        var d = SegmentDriver()
        d.send(fromClient: true, seq: 1, payload: [0])
        for i in 0..<2000 { d.send(fromClient: true, seq: UInt32(10 + 2 * i), payload: [1]) }
        XCTAssertEqual(d.reassembler.counters.heldSegmentLimit, 1)
        XCTAssertEqual(d.reassembler.counters.pendingDropped, 1)
        XCTAssertTrue(d.consumer.gaps[0])
        XCTAssertEqual(d.reassembler.heldBytes, 0)
    }

    /// Many flows each holding up to their own bound: the worker bound bites, counted, in real bytes.
    func testWorkerBoundCountsRealMemory() {
        var config = ReassemblyConfiguration()
        config.maxPendingBytesTotal = 1 << 20
        let table = FlowTable(configuration: { var c = FlowTableConfiguration(); c.capacity = 4096; return c }())
        let reassembler = StreamReassembler(flowCapacity: 4096, configuration: config)
        reassembler.add(CollectingConsumer())
        let frame = [UInt8](repeating: 0, count: 54 + 1)
        for flow in 0..<2000 {
            for seq: UInt32 in [1, 3, 5000, 9000] {
                var p = DecodedPacket()
                p.ipVersion = 4
                p.ipProtocol = IPProtocol.tcp
                p.source = IPAddress(ipv4: 0x0A00_0000 | UInt32(flow))
                p.destination = IPAddress("10.9.9.9")!
                p.sourcePort = 40000
                p.destinationPort = 445
                p.hasPorts = true
                p.tcpFlags = [.ack, .psh]
                p.tcpSequence = seq
                p.payloadOffset = 54
                p.payloadLength = 1
                p.wireLength = 55
                p.capturedLength = 55
                let u = table.update(p) { _, _, _ in }
                frame.withUnsafeBytes { f in
                    reassembler.packet(PacketContext(packet: p, frame: f, linkType: .ethernet, slot: u.slot, fromOriginator: u.fromOriginator, isNewFlow: u.isNew), flows: table)
                }
                XCTAssertLessThanOrEqual(reassembler.heldBytes, config.maxPendingBytesTotal)
            }
        }
        // Three held bytes per flow cost three blocks: about 85 flows fit in 1 MiB, the rest are counted.
        XCTAssertGreaterThan(reassembler.counters.heldWorkerLimit, 1800)
        XCTAssertEqual(reassembler.heldBytes, reassembler.pending.values.reduce(0) { $0 + $1.memory })
        XCTAssertLessThanOrEqual(reassembler.pool.blocksInUse * HeldBlockPool.blockSize, config.maxPendingBytesTotal)
    }

    /// The statistics block carries every reassembly and parser-memory counter.
    func testStatisticsFields() {
        var d = SegmentDriver()
        d.send(fromClient: true, seq: 1, payload: [0])
        d.send(fromClient: true, seq: 5, payload: [1])
        var w = JSONWriter()
        w.beginObject()
        d.reassembler.writeStatistics(into: &w)
        w.endObject()
        let json = try! JSONSerialization.jsonObject(with: Data(w.bytes)) as! [String: Any]
        let r = json["reassembly"] as! [String: Any]
        for key in ["out_of_order_segments", "pending_dropped", "held_flow_limit", "held_segment_limit", "held_worker_limit",
                    "held_bytes", "held_bytes_peak", "held_bytes_limit", "gaps", "budget_stops"] {
            XCTAssertNotNil(r[key], key)
        }
        XCTAssertEqual(r["out_of_order_segments"] as? Int, 1)
        XCTAssertEqual(r["held_bytes"] as? Int, d.reassembler.heldBytes)
        let p = json["parser_memory"] as! [String: Any]
        for key in ["bytes", "peak", "limit", "refused"] { XCTAssertNotNil(p[key], key) }
    }
}
