import XCTest
@testable import Capture
import PacketCore
import TestSupport

/// Hostile classic pcap files through `PlainPcapRecords` (the reader's own block reads) and through
/// libpcap alone (a filtered read: an always-true filter): the same packets, times, counts and errors,
/// whether the records are read in batches or one at a time.
final class PlainPcapHostileTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws { dir = try TestSupport.temporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    /// Everything a read gave, comparable.
    struct Outcome: Equatable {
        /// Per packet: time (and whether it was out of range), captured and wire lengths, a digest of the bytes.
        var packets: [String] = []
        var packetsRead: UInt64 = 0
        var error: String?
    }

    final class Recorder: PacketConsumer {
        var packets: [String] = []
        override func consume(_ p: RawPacket) {
            var digest: UInt64 = 0xCBF2_9CE4_8422_2325
            for b in p.bytes { digest = (digest ^ UInt64(b)) &* 0x100_0000_01B3 }
            packets.append("\(p.timestamp.nanoseconds) \(p.timestampOutOfRange) \(p.capturedLength) \(p.wireLength) \(digest)")
        }
    }

    /// `path` read to its end: `batch` packets per dispatch, or one `next()` at a time when 0.
    static func read(_ path: String, filter: String? = nil, batch: Int = 64) -> Outcome {
        let r = Recorder()
        var o = Outcome()
        do {
            let reader = try PcapFileReader(path: path, filter: filter)
            defer { o.packetsRead = reader.packetsRead }
            if batch == 0 {
                while let p = try reader.next() { r.consume(p) }
            } else {
                while try reader.dispatch(maxPackets: batch, to: r) > 0 {}
            }
        } catch {
            o.error = "\(error.kind) \(error.message) after \(error.packetsBefore)"
        }
        o.packets = r.packets
        return o
    }

    /// The reference read must compile its filter (libpcap knows the link type).
    static let libpcapOnly = "len >= 0"

    func assertSameAsLibpcap(_ path: String, plain expectPlain: Bool? = nil, file: StaticString = #filePath, line: UInt = #line) {
        let name = (path as NSString).lastPathComponent
        if let expectPlain {
            let reader = try? PcapFileReader(path: path)
            XCTAssertEqual(reader?.plain != nil, expectPlain, "\(name): read in blocks", file: file, line: line)
        }
        let reference = Self.read(path, filter: Self.libpcapOnly)
        XCTAssertNotEqual(reference.error?.hasPrefix("filter"), true, name, file: file, line: line)
        XCTAssertEqual(Self.read(path), reference, name, file: file, line: line)
        XCTAssertEqual(Self.read(path, batch: 0), reference, "\(name), one at a time", file: file, line: line)
        XCTAssertEqual(Self.read(path, batch: 1), reference, "\(name), batches of 1", file: file, line: line)
    }

    /// A record's bytes: `count` of a pattern that differs per record.
    static func frame(_ count: Int, _ i: Int) -> [UInt8] { (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ i) } }

    func write(_ name: String, _ w: PcapFileWriter, cutTo length: Int? = nil) throws -> String {
        let path = dir.appendingPathComponent(name).path
        try (length.map { w.data.prefix($0) } ?? w.data).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// Records around the end of the first 512 KiB block: a record header starting just before, at and just
    /// after it, or a 200 KB record across it; then a cut, or a record libpcap must judge, right there.
    func testRecordsAtTheBlockBoundary() throws {
        let blockEnd = 24 + PlainPcapRecords.capacity
        let frames = (0..<64).map { Self.frame(1000, $0) }
        for shift in [-17, -16, -15, -1, 0, 1, 15, 16, 17] {
            for spanning in [false, true] {
                var w = PcapFileWriter(snapLength: 0)
                // 1016-byte records, then one sized so that the next starts at `start`.
                let start = blockEnd + shift - (spanning ? 100_000 : 0)
                var i = 0
                while w.data.count + 2 * 1016 <= start {
                    w.record(seconds: 1_400_000_000, micros: UInt32(i), bytes: frames[i % 64])
                    i += 1
                }
                w.record(seconds: 1_400_000_000, micros: UInt32(i), bytes: Self.frame(start - w.data.count - 16, i))
                if spanning { w.record(seconds: 1_400_000_001, bytes: Self.frame(200_000, -1)) }
                let next = w.data.count
                XCTAssertEqual(next, start + (spanning ? 200_016 : 0))
                for j in 0..<40 { w.record(seconds: 1_400_000_002, micros: UInt32(j), bytes: frames[j]) }
                let name = "boundary\(shift)\(spanning ? "-spanning" : "")"
                assertSameAsLibpcap(try write(name + ".pcap", w), plain: true)
                assertSameAsLibpcap(try write(name + "-cut.pcap", w, cutTo: blockEnd + shift + 9))
                var bad = w
                bad.data.replaceSubrange((next + 4)..<(next + 8), with: [0x40, 0x42, 0x0F, 0x00])  // 1,000,000 µs
                assertSameAsLibpcap(try write(name + "-fraction.pcap", bad))
            }
        }
    }

    /// Captured lengths at libpcap's limit (256 KiB) and one past it, under several snapshot lengths; and
    /// such records cut.
    func testCapturedLengthsAroundTheLimit() throws {
        for snap: UInt32 in [0, 65_535, 262_143, 262_144, 262_145, 0xFFFF_FFFF] {
            for length in [262_143, 262_144, 262_145] {
                var w = PcapFileWriter(snapLength: snap)
                for i in 0..<3 { w.record(seconds: 1_600_000_000, micros: UInt32(i), bytes: Self.frame(60, i)) }
                w.record(seconds: 1_600_000_001, bytes: Self.frame(length, 9))
                // Two at once fill most of a block.
                w.record(seconds: 1_600_000_001, micros: 1, bytes: Self.frame(length, 10))
                w.record(seconds: 1_600_000_002, bytes: Self.frame(60, 11))
                assertSameAsLibpcap(try write("cap\(length)-snap\(snap).pcap", w))
                assertSameAsLibpcap(try write("cap\(length)-snap\(snap)-cut.pcap", w, cutTo: 24 + 3 * 76 + 16 + 1000))
            }
        }
    }

    /// Lengths and times that lie: empty records, captured beyond the snapshot or the wire length, fractions
    /// of a whole second, seconds past 2038 and at the 32-bit ends.
    func testLyingRecordHeaders() throws {
        func file(_ name: String, snap: UInt32 = 65_535, magic: UInt32 = 0xA1B2_C3D4, _ edit: (Int, inout PcapFileWriter) -> Void) throws -> String {
            var w = PcapFileWriter(snapLength: snap, magic: magic)
            for i in 0..<30 { edit(i, &w) }
            return try write(name, w)
        }
        func plainRecord(_ i: Int, _ w: inout PcapFileWriter) { w.record(seconds: 1_500_000_000, micros: UInt32(i), bytes: Self.frame(80, i)) }
        assertSameAsLibpcap(try file("empty-records.pcap") { i, w in
            i % 3 == 0 ? w.record(seconds: 1_500_000_000, bytes: []) : plainRecord(i, &w)
        }, plain: true)
        for snap: UInt32 in [0, 1, 79, 80] {
            assertSameAsLibpcap(try file("snap\(snap).pcap", snap: snap) { i, w in plainRecord(i, &w) })
        }
        assertSameAsLibpcap(try file("captured-beyond-wire.pcap") { i, w in
            w.record(seconds: 1_500_000_000, bytes: Self.frame(80, i), wireLength: i % 4 == 0 ? 0 : 70)
        })
        for (magic, fractions): (UInt32, [UInt32]) in [(0xA1B2_C3D4, [999_999, 1_000_000]), (0xA1B2_3C4D, [999_999_999, 1_000_000_000])] {
            for f: UInt32 in fractions + [0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF] {
                assertSameAsLibpcap(try file("fraction\(f)-\(magic).pcap", magic: magic) { i, w in
                    i == 12 ? w.record(seconds: 1_500_000_000, micros: f, bytes: Self.frame(80, i)) : plainRecord(i, &w)
                })
            }
        }
        for s: UInt32 in [0, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF] {
            assertSameAsLibpcap(try file("seconds\(s).pcap") { i, w in
                w.record(seconds: i < 10 ? 1_500_000_000 : s, micros: UInt32(i), bytes: Self.frame(80, i))
            }, plain: true)
        }
    }

    /// Files libpcap alone reads (other byte order, version 2.2, Linux USB headers it rewrites) and link
    /// types read in blocks.
    func testFileKinds() throws {
        func file(_ name: String, _ w: PcapFileWriter) throws -> String {
            var w = w
            for i in 0..<20 { w.record(seconds: 1_500_000_000, micros: UInt32(i) * 1000, bytes: Self.frame(64 + i, i)) }
            return try write(name, w)
        }
        assertSameAsLibpcap(try file("swapped.pcap", PcapFileWriter(bigEndian: true)), plain: false)
        assertSameAsLibpcap(try file("swapped-ns.pcap", PcapFileWriter(magic: 0xA1B2_3C4D, bigEndian: true)), plain: false)
        assertSameAsLibpcap(try file("ns.pcap", PcapFileWriter(magic: 0xA1B2_3C4D)), plain: true)
        assertSameAsLibpcap(try file("v2.2.pcap", PcapFileWriter(minorVersion: 2)), plain: false)
        assertSameAsLibpcap(try file("usb-linux.pcap", PcapFileWriter(linkType: 189)), plain: false)
        assertSameAsLibpcap(try file("usb-linux-mmapped.pcap", PcapFileWriter(linkType: 220)), plain: false)
        assertSameAsLibpcap(try file("raw.pcap", PcapFileWriter(linkType: 101)), plain: true)
        assertSameAsLibpcap(try file("sll2.pcap", PcapFileWriter(linkType: 276)), plain: true)
    }

    /// A small file cut at every length, its 24-byte header included.
    func testCutAtEveryOffset() throws {
        var w = PcapFileWriter()
        for i in 0..<3 { w.record(seconds: 1_500_000_000, micros: UInt32(i), bytes: Self.frame(40, i)) }
        for length in 0...w.data.count {
            let path = try write("cut\(length).pcap", w, cutTo: length)
            let reference = Self.read(path, filter: length < 24 ? nil : Self.libpcapOnly)
            XCTAssertEqual(Self.read(path), reference, "cut at \(length)")
            XCTAssertEqual(Self.read(path, batch: 0), reference, "cut at \(length), one at a time")
        }
    }

    /// Several files merged, one of which hands over to libpcap part-way (a fraction of a whole second)
    /// and one that ends in a cut record: the same merged stream and errors as libpcap's alone.
    func testMergeWithAFileHandedToLibpcapPartWay() throws {
        var a = PcapFileWriter(), b = PcapFileWriter(), c = PcapFileWriter()
        for i in 0..<50 {
            a.record(seconds: 1_500_000_000 + UInt32(i), bytes: Self.frame(100, i))
            b.record(seconds: 1_500_000_000 + UInt32(i), micros: i == 20 ? 1_000_000 : 500_000, bytes: Self.frame(90, i))
            c.record(seconds: 1_500_000_000 + UInt32(i), micros: 250_000, bytes: Self.frame(80, i))
        }
        let paths = [try write("a.pcap", a), try write("b.pcap", b), try write("c.pcap", c, cutTo: c.data.count - 30)]
        func merged(filter: String?) throws -> (Outcome, [CaptureError]) {
            let source = try MergedFileSource(paths: paths, filter: filter)
            let r = Recorder()
            while try source.dispatch(maxPackets: 16, to: r) > 0 {}
            return (Outcome(packets: r.packets, packetsRead: source.packetsRead), source.errors)
        }
        let (plain, plainErrors) = try merged(filter: nil)
        let (reference, referenceErrors) = try merged(filter: Self.libpcapOnly)
        XCTAssertEqual(plain, reference)
        XCTAssertEqual(plainErrors, referenceErrors)
        XCTAssertEqual(plain.packets.count, 149)
        XCTAssertEqual(plainErrors.map(\.packetsBefore), [49])
    }

    /// A file cut below what was read while it is read (`truncate`, a copy-and-truncate rotation): an error
    /// after the packets read, as libpcap gives when it next finds a record cut, not a clean end.
    func testFileCutWhileRead() throws {
        var w = PcapFileWriter()
        for i in 0..<1500 { w.record(seconds: 1_500_000_000, micros: UInt32(i), bytes: Self.frame(1000, i)) }
        for filter in [nil, Self.libpcapOnly] {
            let path = try write("shrinking.pcap", w)
            let reader = try PcapFileReader(path: path, filter: filter)
            let r = Recorder()
            XCTAssertEqual(try reader.dispatch(maxPackets: 1, to: r), 1)
            XCTAssertEqual(truncate(path, 100_000), 0)
            var failure: CaptureError?
            do { while try reader.dispatch(maxPackets: 64, to: r) > 0 {} } catch { failure = error }
            XCTAssertEqual(failure?.kind, .read, "filter \(filter ?? "none")")
            XCTAssertEqual(failure?.packetsBefore, reader.packetsRead)
            if filter == nil {
                // The first block's whole records, then the complaint.
                XCTAssertEqual(reader.packetsRead, UInt64(PlainPcapRecords.capacity / 1016))
                XCTAssertEqual(failure?.message, "the file shrank to 100000 bytes while it was read")
            }
        }
    }
}
