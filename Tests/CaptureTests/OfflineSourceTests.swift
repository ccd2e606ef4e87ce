import XCTest
@testable import Capture
import PacketCore
import TestSupport

/// Counts and checks what a source hands over.
final class RecordingConsumer: PacketConsumer {
    var timestamps: [Int64] = []
    var lengths: [Int] = []
    /// A running hash of every packet's bytes.
    var checksum: UInt64 = 0
    override func consume(_ packet: RawPacket) {
        timestamps.append(packet.timestamp.nanoseconds)
        lengths.append(packet.capturedLength)
        for b in packet.bytes { checksum = (checksum ^ UInt64(b)) &* 0x100_0000_01B3 }
        XCTAssertEqual(packet.bytes.count, packet.capturedLength)
        XCTAssertGreaterThanOrEqual(packet.wireLength, packet.capturedLength)
    }
}

final class OfflineSourceTests: XCTestCase {
    /// Batch dispatch and one-at-a-time reads see the same packets, with nanosecond pcapng timestamps.
    func testDispatchAndNextAgree() throws {
        let file = TestSupport.data("pcaps/lateral/LM_smbexec_smb_dcerpc_svcctl_epm.pcapng")
        let a = try PcapFileReader(path: file)
        XCTAssertEqual(a.linkType, .ethernet)
        let batch = RecordingConsumer()
        while try a.dispatch(maxPackets: 7, to: batch) > 0 {}
        let b = try PcapFileReader(path: file)
        var single: [Int64] = []
        while let p = try b.next() { single.append(p.timestamp.nanoseconds) }
        XCTAssertEqual(batch.timestamps, single)
        XCTAssertEqual(batch.timestamps.count, 82)
        XCTAssertEqual(a.packetsRead, 82)
        // 2020-07-19 18:26:24.971636 UTC is the first packet (MANIFEST).
        XCTAssertEqual(batch.timestamps.first.map { $0 / 1_000 }, 1_595_183_184_971_636)
    }

    /// Files merge in timestamp order, whatever order they are given in.
    func testMergeIsTimeOrdered() throws {
        let files = [TestSupport.data("pcaps/dns-tunnel/dnscat2.pcap"), TestSupport.data("pcaps/benign/dns.pcap"),
                     TestSupport.data("pcaps/dns-tunnel/iodine.pcap")]
        let src = try MergedFileSource(paths: files)
        let c = RecordingConsumer()
        while try src.dispatch(maxPackets: 5, to: c) > 0 {}
        XCTAssertEqual(c.timestamps.count, 24 + 7 + 24)
        XCTAssertEqual(c.timestamps, c.timestamps.sorted())
        XCTAssertTrue(src.errors.isEmpty)
    }

    func testFilterAppliesAndBadFilterIsReported() throws {
        let file = TestSupport.data("pcaps/lateral/atexec_.pcap")
        let all = try MergedFileSource(paths: [file])
        let c1 = RecordingConsumer()
        while try all.dispatch(maxPackets: 100, to: c1) > 0 {}
        let smb = try MergedFileSource(paths: [file], filter: "tcp port 445")
        let c2 = RecordingConsumer()
        while try smb.dispatch(maxPackets: 100, to: c2) > 0 {}
        XCTAssertGreaterThan(c2.timestamps.count, 0)
        XCTAssertLessThan(c2.timestamps.count, c1.timestamps.count)
        XCTAssertThrowsError(try PcapFileReader(path: file, filter: "port banana")) { e in
            XCTAssertEqual((e as? CaptureError)?.kind, .filter)
        }
        XCTAssertThrowsError(try PcapFileReader(path: "/nonexistent.pcap")) { e in
            XCTAssertEqual((e as? CaptureError)?.kind, .open)
        }
    }

    func testStopEndsASource() throws {
        let src = try MergedFileSource(paths: [TestSupport.data("pcaps/lateral/atexec_.pcap")])
        let c = RecordingConsumer()
        _ = try src.dispatch(maxPackets: 3, to: c)
        src.stop()
        XCTAssertEqual(try src.dispatch(maxPackets: 100, to: c), 0)
        XCTAssertEqual(c.timestamps.count, 3)
    }

    /// Plain pcap files are read in blocks beside libpcap (`PlainPcapRecords`), which takes over at the first
    /// record it must judge: both give the same records, times and errors. libpcap alone reads a filtered
    /// file, so an always-true filter is the reference.
    func testPlainRecordsMatchLibpcap() throws {
        let original = try Data(contentsOf: URL(fileURLWithPath: TestSupport.data("pcaps/benign/bro.org.pcap")))
        let dir = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        func variant(_ name: String, _ edit: (inout [UInt8], [Int]) -> Void) throws -> String {
            var b = [UInt8](original)
            var records: [Int] = []  // offsets of the record headers
            var o = 24
            while o + 16 <= b.count { records.append(o); o += 16 + Int(u32(b, o + 8)) }
            edit(&b, records)
            let path = dir.appendingPathComponent(name).path
            try Data(b).write(to: URL(fileURLWithPath: path))
            return path
        }
        func u32(_ b: [UInt8], _ o: Int) -> UInt32 { UInt32(b[o]) | UInt32(b[o + 1]) << 8 | UInt32(b[o + 2]) << 16 | UInt32(b[o + 3]) << 24 }
        func put(_ b: inout [UInt8], _ o: Int, _ v: UInt32) { for k in 0..<4 { b[o + k] = UInt8(truncatingIfNeeded: v >> (8 * k)) } }
        let files = [
            try variant("plain.pcap") { _, _ in },
            // Nanosecond magic, fractions scaled.
            try variant("ns.pcap") { b, r in
                put(&b, 0, 0xA1B2_3C4D)
                for o in r { put(&b, o + 4, u32(b, o + 4) * 1000) }
            },
            // Seconds past 2038 (negative to libpcap) from the tenth record on.
            try variant("2038.pcap") { b, r in for o in r.dropFirst(10) { put(&b, o, u32(b, o) | 0x8000_0000) } },
            // A fraction of a whole second: libpcap reads on from there.
            try variant("fraction.pcap") { b, r in put(&b, r[40] + 4, 2_000_000) },
            // Cut inside a record.
            try variant("cut.pcap") { b, r in b.removeLast(b.count - r[300] - 20) },
            // A record longer than any snapshot: libpcap's error after the packets before it.
            try variant("long.pcap") { b, r in put(&b, r[50] + 8, 0x7FFF_FFFF) },
        ]
        XCTAssertNotNil(try PcapFileReader(path: files[0]).plain, "a plain file is read in blocks")
        for file in files {
            func read(filter: String?) -> (RecordingConsumer, UInt64, CaptureError?) {
                let c = RecordingConsumer()
                var failure: CaptureError?
                var count: UInt64 = 0
                do {
                    let r = try PcapFileReader(path: file, filter: filter)
                    defer { count = r.packetsRead }
                    while try r.dispatch(maxPackets: 64, to: c) > 0 {}
                } catch { failure = error }
                return (c, count, failure)
            }
            let (plain, n, e) = read(filter: nil)
            let (reference, m, f) = read(filter: "len >= 0")
            XCTAssertEqual(plain.timestamps, reference.timestamps, file)
            XCTAssertEqual(plain.lengths, reference.lengths, file)
            XCTAssertEqual(plain.checksum, reference.checksum, file)
            XCTAssertEqual(n, m, file)
            XCTAssertEqual(e?.message, f?.message, file)
            XCTAssertEqual(e?.packetsBefore, f?.packetsBefore, file)
            XCTAssertGreaterThan(plain.timestamps.count, 40, file)
            // One at a time too.
            let single = try PcapFileReader(path: file)
            var times: [Int64] = []
            do { while let p = try single.next() { times.append(p.timestamp.nanoseconds) } } catch {}
            XCTAssertEqual(times, reference.timestamps, file)
            if file.hasSuffix("2038.pcap") {
                // The seconds field is unsigned: past January 2038, not before 1970 (as tshark reads it).
                XCTAssertTrue(reference.timestamps.dropFirst(10).allSatisfy { $0 >= Int64(1) << 31 * 1_000_000_000 }, "\(reference.timestamps.suffix(2))")
            }
        }
    }
}
