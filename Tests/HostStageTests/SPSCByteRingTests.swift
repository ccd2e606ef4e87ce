import Foundation
import Synchronization
@testable import HostStage
import XCTest
import TestSupport

final class SPSCByteRingTests: XCTestCase {
    func push(_ ring: SPSCByteRing, _ bytes: [UInt8]) -> Bool { bytes.withUnsafeBytes { ring.push($0) } }

    func pop(_ ring: SPSCByteRing) -> [UInt8]? {
        guard let r = ring.peek() else { return nil }
        let out = Array(r)
        ring.pop()
        return out
    }

    func testRecordsComeOutInOrderWithTheirLengths() {
        let ring = SPSCByteRing(capacity: 4096)
        let records: [[UInt8]] = [[], [1], [1, 2, 3], Array(0..<8), Array(0..<9), Array(repeating: 7, count: 100)]
        for r in records { XCTAssertTrue(push(ring, r)) }
        for r in records { XCTAssertEqual(pop(ring), r) }
        XCTAssertNil(pop(ring))
        XCTAssertTrue(ring.isEmpty)
        XCTAssertEqual(ring.pushedCount, UInt64(records.count))
        XCTAssertEqual(ring.droppedCount, 0)
    }

    /// Offline producers batch and never lose: `write` refuses without counting a drop when the ring
    /// is full, and nothing written is visible before `publish`; the consumer's `skip` hands space back
    /// only at `release`.
    func testBatchedWritesAppearAtPublishAndRefusalsAreNotDrops() {
        let ring = SPSCByteRing(capacity: 4096)
        let head: [UInt8] = [1, 2, 3]
        let body = [UInt8](repeating: 9, count: 500)
        func write() -> Bool { head.withUnsafeBytes { h in body.withUnsafeBytes { b in ring.write(h, b) } } }
        var written = 0
        while write() { written += 1 }
        XCTAssertEqual(written, 4096 / 512, "records of 8 + 503 bytes, rounded to 512, fill it exactly")
        XCTAssertEqual(ring.droppedCount, 0)
        XCTAssertNil(ring.peek(), "nothing published yet")
        ring.publish()
        XCTAssertEqual(ring.pushedCount, UInt64(written))
        for _ in 0..<written {
            let r = ring.peek()
            XCTAssertEqual(r.map(Array.init), head + body)
            ring.skip()
        }
        XCTAssertNil(ring.peek())
        XCTAssertFalse(write(), "skipped records still hold their space")
        ring.release()
        XCTAssertTrue(write())
        XCTAssertEqual(ring.droppedCount, 0)
    }

    /// Records that do not fit before the end of the buffer start again at offset 0 behind a skip
    /// marker; many laps over a small ring with odd sizes cross that boundary at every offset.
    func testWrapAroundKeepsEveryRecordWhole() {
        let ring = SPSCByteRing(capacity: 4096)
        var next: UInt8 = 0
        var expected: [[UInt8]] = []
        for lap in 0..<2000 {
            let size = (lap * 37) % 700
            var r: [UInt8] = []
            for _ in 0..<size { r.append(next); next &+= 1 }
            XCTAssertTrue(push(ring, r), "lap \(lap)")
            expected.append(r)
            // Keep one or two records in flight so the producer writes while the consumer lags.
            if expected.count > 2 { XCTAssertEqual(pop(ring), expected.removeFirst(), "lap \(lap)") }
        }
        while !expected.isEmpty { XCTAssertEqual(pop(ring), expected.removeFirst()) }
        XCTAssertNil(pop(ring))
        XCTAssertEqual(ring.droppedCount, 0)
    }

    func testAFullRingDropsAndCountsThenAcceptsAgain() {
        let ring = SPSCByteRing(capacity: 4096)
        let record = [UInt8](repeating: 1, count: 1000 - 8)  // 1000 bytes with its header
        var accepted = 0
        while push(ring, record) { accepted += 1 }
        XCTAssertEqual(accepted, 4)
        XCTAssertEqual(ring.droppedCount, 1)
        XCTAssertEqual(pop(ring), record)
        // The next record does not fit in the 96 bytes before the end: it wraps into the space just freed.
        XCTAssertTrue(push(ring, record), "room again after a pop")
        XCTAssertFalse(push(ring, record), "full again")
        XCTAssertFalse(push(ring, [UInt8](repeating: 0, count: ring.maxRecord + 1)), "larger than a record may be")
        XCTAssertEqual(ring.droppedCount, 3)
        var n = 0
        while let r = pop(ring) { XCTAssertEqual(r, record); n += 1 }
        XCTAssertEqual(n, 4)
        XCTAssertEqual(ring.pushedCount, 5)
    }

    /// One producer thread, one consumer thread, a seeded stream of variable-length records: every
    /// record arrives once, whole and in order, or was counted as dropped and never arrives. Even records
    /// are retried until they fit, so all of them must arrive.
    func testTwoThreadStressKeepsOrderAndContent() {
        let ring = SPSCByteRing(capacity: 16 << 10)
        let total = 100_000
        let done = Atomic<Bool>(false)
        let producer = Thread {
            var rng = SeededRandom(seed: 0x5EED)
            var buffer = [UInt8](repeating: 0, count: 600)
            for i in 0..<total {
                let size = 4 + Int(rng.next() % 500)
                withUnsafeBytes(of: UInt32(i).littleEndian) { for j in 0..<4 { buffer[j] = $0[j] } }
                for j in 4..<size { buffer[j] = UInt8(truncatingIfNeeded: i &* 31 &+ j) }
                // Even records are retried until they fit (so they must all arrive); odd ones may be dropped.
                while !buffer.withUnsafeBytes({ ring.push(UnsafeRawBufferPointer(rebasing: $0[..<size])) }) && i % 2 == 0 {
                    sched_yield()
                }
                if i % 1000 == 0 { usleep(50) }  // let the consumer catch up now and then
            }
            done.store(true, ordering: .releasing)
        }
        producer.start()
        var last = -1
        var received = 0
        var evenReceived = 0
        var problems: [String] = []
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline && problems.count < 5 {
            let finished = done.load(ordering: .acquiring)
            guard let r = ring.peek() else {
                if finished { break }
                continue
            }
            let i = Int(r.loadUnaligned(as: UInt32.self).littleEndian)
            if i <= last { problems.append("record \(i) after \(last)") }
            for j in 4..<r.count where r[j] != UInt8(truncatingIfNeeded: i &* 31 &+ j) {
                problems.append("record \(i) byte \(j) damaged"); break
            }
            last = i
            if i % 2 == 0 { evenReceived += 1 }
            received += 1
            ring.pop()
        }
        XCTAssertEqual(problems, [])
        XCTAssertTrue(done.load(ordering: .acquiring))
        XCTAssertEqual(UInt64(received), ring.pushedCount)
        XCTAssertEqual(evenReceived, total / 2, "every record that was retried arrived")
        XCTAssertLessThanOrEqual(received - evenReceived, total / 2)
        // Every failed push was counted (retries of even records included): pushed + dropped ≥ attempts.
        XCTAssertGreaterThanOrEqual(ring.pushedCount + ring.droppedCount, UInt64(total))
    }
}
