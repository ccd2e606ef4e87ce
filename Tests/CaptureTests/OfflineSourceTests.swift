import XCTest
@testable import Capture
import PacketCore
import TestSupport

/// Counts and checks what a source hands over.
final class RecordingConsumer: PacketConsumer {
    var timestamps: [Int64] = []
    var lengths: [Int] = []
    override func consume(_ packet: RawPacket) {
        timestamps.append(packet.timestamp.nanoseconds)
        lengths.append(packet.capturedLength)
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
}
