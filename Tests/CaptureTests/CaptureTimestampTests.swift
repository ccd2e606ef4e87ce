import XCTest
@testable import Capture
import PacketCore
import TestSupport

/// Record times are checked once, where libpcap hands them over: inside `Timestamp.validRange` they
/// pass exactly, outside it (however far, whichever way) the packet is flagged and its time is the epoch,
/// never a value wrapped back into range.
final class CaptureTimestampTests: XCTestCase {
    static let ns: UInt64 = 1_000_000_000
    static let last = UInt64(Timestamp.validRange.upperBound)

    func testPcapngTimesAtAndBeyondTheRange() throws {
        var w = PcapngFileWriter()
        w.interface(options: [(9, [9])])                                          // 0: nanoseconds
        w.interface(options: [(9, [0]), (14, PcapngFileWriter.le(Int64(-1)))])   // 1: seconds, one before the epoch
        w.interface(options: [(9, [6]), (14, PcapngFileWriter.le(Int64(1) << 40))]) // 2: microseconds, offset past Int64 ns
        w.interface(options: [(9, [0])])                                          // 3: whole seconds
        let frame = [UInt8](repeating: 0, count: 14)
        let cases: [(UInt32, UInt64, Int64?)] = [
            (0, 1_700_000_000 * Self.ns, 1_700_000_000_000_000_000),
            (0, 0, 0),                                   // the epoch: first valid time
            (0, Self.last, Timestamp.validRange.upperBound), // last valid time (2116-02-20T23:53:38.427387903Z)
            (0, Self.last + 1, nil),                     // first invalid one
            (0, .max, nil),                              // 2554
            (1, 0, nil),                                 // 1969-12-31T23:59:59Z
            (1, 1, 0),                                   // the offset brings it back to the epoch
            (2, 5, nil),                                 // 2^40 s: wraps Int64 nanoseconds
            (3, UInt64(Int64.max), nil),                 // seconds libpcap hands over as a huge time_t
            (3, 18_446_744_074, nil),                    // 2554: × 10⁹ wraps to a valid-looking 1970
            (3, 4_611_686_018, Timestamp.validRange.upperBound - 427_387_903),
            (3, 4_611_686_019, nil),
        ]
        for (interface, stamp, _) in cases { w.packet(interface: interface, timestamp: stamp, frame) }
        let dir = try TestSupport.temporaryDirectory("capture-times")
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("times.pcapng").path
        try w.write(to: file)

        // One at a time and in batches (the C callback path): the same verdicts.
        let reader = try PcapFileReader(path: file)
        var single: [Int64?] = []
        while let p = try reader.next() {
            XCTAssertTrue(Timestamp.validRange.contains(p.timestamp.nanoseconds))
            single.append(p.timestampOutOfRange ? nil : p.timestamp.nanoseconds)
            if p.timestampOutOfRange { XCTAssertEqual(p.timestamp, .zero) }
        }
        XCTAssertEqual(single, cases.map(\.2))
        final class Verdicts: PacketConsumer {
            var seen: [Int64?] = []
            override func consume(_ p: RawPacket) { seen.append(p.timestampOutOfRange ? nil : p.timestamp.nanoseconds) }
        }
        let batch = Verdicts()
        let again = try PcapFileReader(path: file)
        while try again.dispatch(maxPackets: 3, to: batch) > 0 {}
        XCTAssertEqual(batch.seen, single)
    }

    /// The check itself, exactly at the edges and where multiplication or addition would overflow.
    func testCaptureTimeCheck() {
        XCTAssertEqual(Timestamp(captureSeconds: 1_700_000_000, fraction: 123_456, fractionUnit: 1000)?.nanoseconds, 1_700_000_000_123_456_000)
        XCTAssertEqual(Timestamp(captureSeconds: 0, fraction: 0, fractionUnit: 1), .zero)
        XCTAssertNil(Timestamp(captureSeconds: 0, fraction: -1, fractionUnit: 1))
        XCTAssertNil(Timestamp(captureSeconds: -1, fraction: 999_999_999, fractionUnit: 1))
        XCTAssertEqual(Timestamp(captureSeconds: 4_611_686_018, fraction: 427_387_903, fractionUnit: 1), Timestamp.latest)
        XCTAssertNil(Timestamp(captureSeconds: 4_611_686_018, fraction: 427_387_904, fractionUnit: 1))
        // 18,446,744,074 s (year 2554) × 10⁹ wraps to 290,448,384 ns, a valid-looking 1970: refused, not misread.
        XCTAssertNil(Timestamp(captureSeconds: 18_446_744_074, fraction: 0, fractionUnit: 1))
        XCTAssertNil(Timestamp(captureSeconds: 9_223_372_037, fraction: 0, fractionUnit: 1))
        XCTAssertNil(Timestamp(captureSeconds: .max, fraction: .max, fractionUnit: 1000))
        XCTAssertNil(Timestamp(captureSeconds: .min, fraction: 0, fractionUnit: 1))
        XCTAssertNil(Timestamp(captureSeconds: 1, fraction: .max, fractionUnit: 1000))
    }
}
