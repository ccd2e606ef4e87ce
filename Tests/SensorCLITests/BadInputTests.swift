import XCTest
import TestSupport

/// Unusable or damaged inputs: a clear message and the right exit status, never a crash, and every event
/// produced before the damage is still written.
final class BadInputTests: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws { dir = try TestSupport.temporaryDirectory("bad-input") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

    func stats(_ r: TestSupport.ProcessResult) throws -> [String: Any] {
        let events = try TestSupport.events(r)
        return try XCTUnwrap(events.last { TestSupport.value($0, "event.dataset") as? String == "spanwatch.stats" }, "no stats event: \(r.stderr)")
    }

    func testMissingFile() throws {
        let r = try TestSupport.sensor(["replay", path("nope.pcap")])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("nope.pcap") && r.stderr.contains("cannot read capture"), r.stderr)
        XCTAssertTrue(r.stdout.isEmpty)
    }

    func testTextFileIsNotACapture() throws {
        try "this is not a capture\n".write(toFile: path("notes.txt"), atomically: true, encoding: .utf8)
        let r = try TestSupport.sensor(["replay", path("notes.txt")])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("notes.txt") && r.stderr.contains("format"), r.stderr)
    }

    func testOneBadInputAmongGoodOnesFailsBeforeProcessing() throws {
        let r = try TestSupport.sensor(["replay", TestSupport.data("pcaps/benign/dns.pcap"), path("missing.pcap")])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stdout.isEmpty, "nothing is half-processed when an input cannot even be opened")
    }

    /// A capture cut in the middle of a record: every complete packet before the cut is processed and its
    /// flows reported, then exit status 3 names the damage.
    func testTruncatedCaptureKeepsEverythingBeforeTheCut() throws {
        let source = TestSupport.data("pcaps/lateral/20171220_smb_at_schedule.pcap")
        let full = try Data(contentsOf: URL(fileURLWithPath: source))
        let cut = full.prefix(full.count - 100)
        try cut.write(to: URL(fileURLWithPath: path("cut.pcap")))
        let t = try TestSupport.run("tshark", ["-r", path("cut.pcap"), "-T", "fields", "-e", "frame.number"])
        let complete = t.lines.count
        XCTAssertGreaterThan(complete, 5)
        let r = try TestSupport.sensor(["replay", path("cut.pcap")])
        XCTAssertEqual(r.status, 3, r.stderr)
        XCTAssertTrue(r.stderr.contains("cut.pcap") && r.stderr.contains("after packet \(complete)"), r.stderr)
        XCTAssertEqual(TestSupport.value(try stats(r), "spanwatch.stats.packets") as? Int, complete)
        XCTAssertFalse(try TestSupport.events(r).filter { TestSupport.value($0, "event.dataset") as? String == "spanwatch.flow" }.isEmpty)
    }

    func testTruncatedPcapng() throws {
        let source = TestSupport.data("pcaps/lateral/LM_smbexec_smb_dcerpc_svcctl_epm.pcapng")
        let full = try Data(contentsOf: URL(fileURLWithPath: source))
        try full.prefix(full.count / 2).write(to: URL(fileURLWithPath: path("half.pcapng")))
        let r = try TestSupport.sensor(["replay", path("half.pcapng")])
        XCTAssertEqual(r.status, 3, r.stderr)
        XCTAssertGreaterThan(TestSupport.value(try stats(r), "spanwatch.stats.packets") as? Int ?? 0, 10)
    }

    /// A record whose captured length is absurd: libpcap refuses it; packets before it still count.
    func testRecordWithLyingLength() throws {
        var w = PcapFileWriter()
        let good: [UInt8] = Array(repeating: 0, count: 12) + [0x08, 0x00] + [0x45, 0, 0, 28, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 0, 53, 0, 53, 0, 8, 0, 0]
        w.record(seconds: 1, bytes: good)
        w.record(seconds: 2, bytes: good, wireLength: 10)  // captured > wire: tolerated, counted as captured
        w.record(seconds: 3, bytes: good, capturedLength: 0x7fff_ffff)
        try w.write(to: path("lying.pcap"))
        let r = try TestSupport.sensor(["replay", path("lying.pcap")])
        XCTAssertEqual(r.status, 3, r.stderr)
        XCTAssertTrue(r.stderr.contains("lying.pcap"), r.stderr)
        XCTAssertEqual(TestSupport.value(try stats(r), "spanwatch.stats.packets") as? Int, 2)
    }

    /// Random bytes as packets, under every link type we decode: all counted, none crash the sensor.
    func testRandomBytesAsPackets() throws {
        var rng = SystemRandomNumberGenerator()
        for linkType: UInt32 in [1, 101, 113, 276, 228, 229, 0] {
            var w = PcapFileWriter(linkType: linkType)
            for i in 0..<3000 {
                let n = Int.random(in: 0...160, using: &rng)
                w.record(seconds: UInt32(1_600_000_000 + i), bytes: (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) })
            }
            try w.write(to: path("random-\(linkType).pcap"))
            let r = try TestSupport.sensor(["replay", path("random-\(linkType).pcap")])
            XCTAssertEqual(r.status, 0, "link type \(linkType): \(r.stderr)")
            let s = try stats(r)
            XCTAssertEqual(TestSupport.value(s, "spanwatch.stats.packets") as? Int, 3000)
            let decode = try XCTUnwrap(TestSupport.value(s, "spanwatch.stats.decode") as? [String: Int])
            XCTAssertEqual(decode.values.reduce(0, +), 3000, "every packet lands in exactly one decode outcome")
        }
    }

    func testBadFilterIsAClearError() throws {
        let r = try TestSupport.sensor(["replay", TestSupport.data("pcaps/benign/dns.pcap"), "--bpf", "port nonsense"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("BPF"), r.stderr)
    }

    func testUnwritableOutputIsAClearError() throws {
        let r = try TestSupport.sensor(["replay", TestSupport.data("pcaps/benign/dns.pcap"), "--output", "file:/nonexistent-dir/x.json"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("/nonexistent-dir/x.json"), r.stderr)
    }
}
