import Capture
import Foundation
import PacketCore
@testable import SensorRuntime
import XCTest

/// The offline fanout's rings and doorbells with the reader and two worker threads: tiny rings, a
/// worker that stalls (its ring fills, the reader sleeps until it frees a quarter) and a reader that
/// pauses (the workers drain their rings and sleep until it publishes). Nothing may be lost, reordered
/// or left waiting.
final class OfflineFanoutTests: XCTestCase {
    /// What one worker got: each packet's sequence number (its last four bytes), in arrival order.
    final class Recorder: PacketConsumer {
        var sequence: [UInt32] = []
        let stallEvery: Int
        init(stallEvery: Int) { self.stallEvery = stallEvery }
        override func consume(_ p: RawPacket) {
            sequence.append(p.bytes.loadUnaligned(fromByteOffset: p.bytes.count - 4, as: UInt32.self))
            if stallEvery > 0 && sequence.count % stallEvery == 0 { usleep(2000) }
        }
    }

    /// A raw IPv4/UDP datagram from one of seven hosts to one server, `size` bytes, its sequence last.
    static func datagram(_ i: UInt32, size: Int) -> [UInt8] {
        var b = [UInt8](repeating: 0, count: size)
        b[0] = 0x45
        b[2] = UInt8(size >> 8); b[3] = UInt8(size & 0xFF)
        b[8] = 64; b[9] = 17
        b[12] = 10; b[15] = UInt8(i % 7 + 1)
        b[16] = 10; b[17] = 0; b[18] = 1; b[19] = 1
        b[20] = 0x04; b[21] = 0x00; b[22] = 0x00; b[23] = 53
        b[24] = UInt8((size - 20) >> 8); b[25] = UInt8((size - 20) & 0xFF)
        withUnsafeBytes(of: i.littleEndian) { for k in 0..<4 { b[size - 4 + k] = $0[k] } }
        return b
    }

    func testEveryPacketReachesOneWorkerInOrderWhileEitherSideSleeps() {
        let fanout = OfflineFanout(workers: 2, ringBytes: 4096)
        let recorders = [Recorder(stallEvery: 300), Recorder(stallEvery: 0)]
        let done = DispatchGroup()
        for w in 0..<2 {
            let source = RingPacketSource(fanout: fanout, worker: w)
            let recorder = recorders[w]
            done.enter()
            Thread {
                while !source.ended { _ = try? source.dispatch(maxPackets: 256, to: recorder) }
                done.leave()
            }.start()
        }
        let count: UInt32 = 20_000
        for i in 0..<count {
            // Sizes from 28 to 927 bytes: records wrap the 4 KiB rings at every offset.
            var bytes = Self.datagram(i, size: 28 + Int(i * 37 % 900))
            bytes.withUnsafeBytes { b in
                fanout.consume(RawPacket(timestamp: Timestamp(nanoseconds: 1_000_000_000 + Int64(i) * 1_000_000), capturedLength: b.count,
                                         wireLength: b.count, linkType: .raw, bytes: b))
            }
            bytes[0] = 0
            if i % 4000 == 3999 {
                fanout.publishAll()
                usleep(5000)
            }
        }
        fanout.finish()
        XCTAssertEqual(done.wait(timeout: .now() + 60), .success, "a worker still waits after the end record")
        for r in recorders {
            XCTAssertGreaterThan(r.sequence.count, 1000)
            XCTAssertEqual(r.sequence, r.sequence.sorted(), "one worker's packets in reading order")
        }
        XCTAssertEqual((recorders[0].sequence + recorders[1].sequence).sorted(), Array(0..<count))
        XCTAssertGreaterThan(fanout.waits, 0, "the stalled worker's ring filled and the reader waited")
    }
}
