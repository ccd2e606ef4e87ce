import XCTest
import TestSupport

/// Capture times no clock produces — pcapng `if_tsoffset` centuries back, 64-bit EPB timestamps past the
/// range of nanoseconds in Int64, and a capture jumping from 1970 to 2100 and back — through the real
/// binary: the out-of-range records are counted and analysed at the packet clock, the ordinary packets'
/// flows are still reported, and neither `replay` nor a `hunt` over a directory falls over.
final class HostileTimestampTests: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws { dir = try TestSupport.temporaryDirectory("hostile-times") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

    static let ns: UInt64 = 1_000_000_000
    static let t2024: UInt64 = 1_704_067_200
    /// The two records whose times capture must refuse.
    static let outOfRange = 2

    /// Eight packets on three interfaces: 0 in nanoseconds, 1 in whole seconds with an offset to 1677
    /// (`if_tsoffset` −9,223,372,036 s: the SYN on it lands a hair above Int64.min nanoseconds, where
    /// `now − window` traps), 2 in nanoseconds carrying the largest 64-bit timestamp (year 2554).
    static func hostileCapture() -> Data {
        var w = PcapngFileWriter()
        w.interface(options: [(9, [9])])
        w.interface(options: [(9, [0]), (14, PcapngFileWriter.le(Int64(-9_223_372_036)))])
        w.interface(options: [(9, [9])])
        w.packet(interface: 0, timestamp: t2024 * ns, tcp("10.0.0.5", 40000, "10.0.0.9", 8080, flags: 0x02))
        w.packet(interface: 0, timestamp: t2024 * ns + 1000, tcp("10.0.0.9", 8080, "10.0.0.5", 40000, flags: 0x12))
        w.packet(interface: 1, timestamp: 0, tcp("10.0.0.66", 41000, "10.0.0.77", 445, flags: 0x02))
        w.packet(interface: 2, timestamp: .max, tcp("10.0.0.66", 41001, "10.0.0.78", 22, flags: 0x02))
        w.packet(interface: 0, timestamp: (t2024 + 1) * ns, tcp("10.0.0.5", 40000, "10.0.0.9", 8080, flags: 0x18, seq: 1001, payload: Array("hello".utf8)))
        // Valid but far apart: 1970, then 2100, then back to 2024.
        w.packet(interface: 0, timestamp: 1 * ns, tcp("10.0.0.20", 42000, "10.0.0.21", 3389, flags: 0x02))
        w.packet(interface: 0, timestamp: 4_102_444_800 * ns, tcp("10.0.0.20", 42001, "10.0.0.22", 22, flags: 0x02))
        w.packet(interface: 0, timestamp: (t2024 + 2) * ns, tcp("10.0.0.5", 40001, "198.51.100.7", 443, flags: 0x02))
        return w.data
    }

    /// The file is what it claims to be: Wireshark's reader agrees on every record and its time.
    func checkWellFormed(_ file: String) throws {
        XCTAssertTrue(TestSupport.hasTool("tshark") && TestSupport.hasTool("capinfos"), "tshark and capinfos are required")
        let info = try TestSupport.run("capinfos", ["-c", "-M", file])
        XCTAssertEqual(info.status, 0, info.stderr)
        XCTAssertTrue(info.stdoutText.contains("Number of packets:   8"), info.stdoutText)
        let times = try TestSupport.run("tshark", ["-r", file, "-T", "fields", "-e", "frame.time_epoch"])
        XCTAssertEqual(times.status, 0, times.stderr)
        XCTAssertEqual(times.lines, ["1704067200.000000000", "1704067200.000001000", "-9223372036.000000000", "18446744073.709551615",
                                     "1704067201.000000000", "1.000000000", "4102444800.000000000", "1704067202.000000000"])
    }

    func testReplayCountsOutOfRangeTimesAndKeepsEveryFlow() throws {
        let file = path("hostile.pcapng")
        try Self.hostileCapture().write(to: URL(fileURLWithPath: file))
        try checkWellFormed(file)
        let r = try TestSupport.sensor(["replay", file])
        XCTAssertEqual(r.status, 0, r.stderr)
        let events = try TestSupport.events(r)
        let stats = try XCTUnwrap(events.last { TestSupport.value($0, "event.dataset") as? String == "spanwatch.stats" }, r.stderr)
        XCTAssertEqual(TestSupport.value(stats, "spanwatch.stats.packets") as? Int, 8)
        XCTAssertEqual(TestSupport.value(stats, "spanwatch.stats.timestamps_out_of_range") as? Int, Self.outOfRange)

        let flows = events.filter { TestSupport.value($0, "event.dataset") as? String == "spanwatch.flow" }
        func flow(to ip: String) -> [String: Any]? { flows.first { TestSupport.value($0, "destination.ip") as? String == ip } }
        XCTAssertEqual(Set(flows.compactMap { TestSupport.value($0, "destination.ip") as? String }),
                       ["10.0.0.9", "10.0.0.77", "10.0.0.78", "10.0.0.21", "10.0.0.22", "198.51.100.7"])
        // The ordinary connection around the out-of-range records: its packets and the answer in one flow
        // (the records did not move the clock).
        let ordinary = try XCTUnwrap(flow(to: "10.0.0.9"))
        XCTAssertEqual(TestSupport.value(ordinary, "source.packets") as? Int, 2)
        XCTAssertEqual(TestSupport.value(ordinary, "destination.packets") as? Int, 1)
        XCTAssertEqual(TestSupport.value(ordinary, "event.start") as? String, "2024-01-01T00:00:00.000000Z")
        XCTAssertEqual(TestSupport.value(flow(to: "198.51.100.7") ?? [:], "event.start") as? String, "2024-01-01T00:00:02.000000Z")
        // Out-of-range records are analysed at the packet clock of their arrival (the SYN-ACK's time).
        for ip in ["10.0.0.77", "10.0.0.78"] {
            XCTAssertEqual(TestSupport.value(flow(to: ip) ?? [:], "event.start") as? String, "2024-01-01T00:00:00.000001Z", ip)
        }
        XCTAssertEqual(TestSupport.value(flow(to: "10.0.0.21") ?? [:], "event.start") as? String, "1970-01-01T00:00:01.000000Z")
        XCTAssertEqual(TestSupport.value(flow(to: "10.0.0.22") ?? [:], "event.start") as? String, "2100-01-01T00:00:00.000000Z")
        // No event carries a time outside the valid range.
        for e in events {
            let t = try XCTUnwrap(TestSupport.value(e, "@timestamp") as? String)
            let year = Int(t.prefix(4)) ?? 0
            XCTAssertTrue((1970...2116).contains(year), "\(t) in \(e)")
        }
    }

    /// One such file among the captures of a directory does not end the hunt: the indicator on the
    /// ordinary flow after the jumps still matches, and the summary says how many times were refused.
    func testHuntOverDirectoryWithExtremeTimes() throws {
        let nested = dir.appendingPathComponent("store/2024/01")
        try FileManager.default.createDirectory(at: nested, withIntermediateDirectories: true)
        try Self.hostileCapture().write(to: nested.appendingPathComponent("hostile.pcapng"))
        try FileManager.default.copyItem(atPath: TestSupport.data("pcaps/benign/dns.pcap"),
                                         toPath: dir.appendingPathComponent("store/dns.pcap").path)
        try "198.51.100.7\n".write(toFile: path("feed.txt"), atomically: true, encoding: .utf8)
        let r = try TestSupport.sensor(["hunt", "--quiet", "--indicators", path("feed.txt"), dir.appendingPathComponent("store").path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let events = try TestSupport.events(r)
        XCTAssertEqual(events.count, 1, r.stdoutText)
        XCTAssertEqual(events.first.flatMap { TestSupport.value($0, "destination.ip") as? String }, "198.51.100.7")
        XCTAssertTrue(r.stderr.contains("hunt: 2 capture file(s)"), r.stderr)
        XCTAssertTrue(r.stderr.contains("\(Self.outOfRange) with a time out of range"), r.stderr)
        XCTAssertTrue(r.stderr.contains("hunt: 1 indicator(s) matched"), r.stderr)
    }

    // MARK: Building the capture

    static func be16(_ v: UInt16) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xFF)] }
    static func be32(_ v: UInt32) -> [UInt8] { be16(UInt16(v >> 16)) + be16(UInt16(v & 0xFFFF)) }
    static func address(_ s: String) -> [UInt8] { s.split(separator: ".").map { UInt8($0)! } }

    /// Ethernet, IPv4 (header checksum set) and a TCP header with `flags`.
    static func tcp(_ src: String, _ sport: UInt16, _ dst: String, _ dport: UInt16, flags: UInt8, seq: UInt32 = 1000,
                    payload: [UInt8] = []) -> [UInt8] {
        let segment = be16(sport) + be16(dport) + be32(seq) + be32(0) + [0x50, flags] + be16(65535) + [0, 0, 0, 0] + payload
        var ip: [UInt8] = [0x45, 0] + be16(UInt16(20 + segment.count)) + [0, 1, 0, 0, 64, 6, 0, 0] + address(src) + address(dst)
        var sum: UInt32 = 0
        for i in stride(from: 0, to: 20, by: 2) { sum += UInt32(ip[i]) << 8 | UInt32(ip[i + 1]) }
        while sum > 0xFFFF { sum = (sum & 0xFFFF) + (sum >> 16) }
        ip[10] = UInt8(~sum >> 8 & 0xFF); ip[11] = UInt8(~sum & 0xFF)
        return [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00] + ip + segment
    }
}
