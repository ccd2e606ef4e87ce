import XCTest
import TestSupport

/// The sensor against the reference tools on every real capture in ../shared (the large merged capture is
/// left to the benchmark: tshark needs minutes and a GiB for it).
final class ReferenceToolTests: XCTestCase {
    static let categories = ["benign", "beacon", "c2-nonstd-port", "dns-tunnel", "lateral"]

    override func setUpWithError() throws {
        try XCTSkipUnless(TestSupport.hasTool("tshark") && TestSupport.hasTool("capinfos"), "tshark/capinfos not installed (scripts/install-deps.sh test)")
        XCTAssertFalse(TestSupport.captures("benign").isEmpty, "shared captures missing at \(TestSupport.shared.path)")
    }

    func replay(_ file: String) throws -> [[String: Any]] {
        let r = try TestSupport.sensor(["replay", file, "--log-level", "error"])
        XCTAssertEqual(r.status, 0, "\(file): \(r.stderr)")
        return try TestSupport.events(r)
    }

    /// The set of `network.community_id` values of our flow events equals what Wireshark's Community ID
    /// dissector computes for the TCP/UDP/ICMP packets of the same capture.
    func testCommunityIDsMatchTshark() throws {
        var compared = 0
        for category in Self.categories {
            for file in TestSupport.captures(category) {
                let t = try TestSupport.run("tshark", ["-r", file, "--enable-protocol", "communityid", "-Y", "tcp or udp or icmp or icmpv6",
                                                       "-T", "fields", "-e", "communityid"])
                XCTAssertEqual(t.status, 0, t.stderr)
                let expected = Set(t.lines.flatMap { $0.split(separator: ",").map(String.init) }.filter { !$0.isEmpty })
                let transports: Set<String> = ["tcp", "udp", "icmp", "ipv6-icmp"]
                let ours = Set(try replay(file).compactMap { e -> String? in
                    guard TestSupport.value(e, "event.dataset") as? String == "spanwatch.flow",
                          let t = TestSupport.value(e, "network.transport") as? String, transports.contains(t) else { return nil }
                    return TestSupport.value(e, "network.community_id") as? String
                })
                XCTAssertFalse(expected.isEmpty, file)
                XCTAssertEqual(ours, expected, "\(file): only tshark \(expected.subtracting(ours).sorted().prefix(5)), only sensor \(ours.subtracting(expected).sorted().prefix(5))")
                compared += 1
            }
        }
        XCTAssertGreaterThan(compared, 30)
    }

    /// Packet and byte totals (the `spanwatch.stats` event) equal what capinfos counts, and every packet
    /// is either in a flow event or counted as a non-flow packet.
    func testTotalsMatchCapinfos() throws {
        for category in Self.categories {
            for file in TestSupport.captures(category) {
                let c = try TestSupport.run("capinfos", ["-M", "-c", "-d", file])
                XCTAssertEqual(c.status, 0, c.stderr)
                func number(after label: String) -> Int? {
                    guard let line = c.lines.first(where: { $0.contains(label) }) else { return nil }
                    return Int(line.split(separator: ":")[1].split(separator: " ")[0].trimmingCharacters(in: .whitespaces))
                }
                let packets = try XCTUnwrap(number(after: "Number of packets"), c.stdoutText)
                let bytes = try XCTUnwrap(number(after: "Data size"), c.stdoutText)
                let events = try replay(file)
                let stats = try XCTUnwrap(events.last { TestSupport.value($0, "event.dataset") as? String == "spanwatch.stats" }, file)
                XCTAssertEqual(TestSupport.value(stats, "spanwatch.stats.packets") as? Int, packets, file)
                XCTAssertEqual(TestSupport.value(stats, "spanwatch.stats.bytes") as? Int, bytes, file)
                let flows = events.filter { TestSupport.value($0, "event.dataset") as? String == "spanwatch.flow" }
                let flowPackets = flows.reduce(0) { $0 + ((TestSupport.value($1, "network.packets") as? Int) ?? 0) }
                let flowBytes = flows.reduce(0) { $0 + ((TestSupport.value($1, "network.bytes") as? Int) ?? 0) }
                XCTAssertEqual(flowPackets, TestSupport.value(stats, "spanwatch.stats.flow_packets") as? Int, file)
                XCTAssertLessThanOrEqual(flowBytes, bytes, file)
                for f in flows {
                    let src = (TestSupport.value(f, "source.packets") as? Int ?? 0) + (TestSupport.value(f, "destination.packets") as? Int ?? 0)
                    XCTAssertEqual(src, TestSupport.value(f, "network.packets") as? Int)
                }
            }
        }
    }

    /// Merging files gives the union of their flows, in timestamp order across files.
    func testSeveralFilesMergeInTimeOrder() throws {
        let a = TestSupport.data("pcaps/dns-tunnel/dnscat2.pcap"), b = TestSupport.data("pcaps/benign/dns.pcap")
        let merged = try TestSupport.sensor(["replay", b, a, "--log-level", "error"])
        XCTAssertEqual(merged.status, 0, merged.stderr)
        let events = try TestSupport.events(merged)
        let ids = Set(events.compactMap { TestSupport.value($0, "network.community_id") as? String })
        let separate = Set(try (replay(a) + replay(b)).compactMap { TestSupport.value($0, "network.community_id") as? String })
        XCTAssertEqual(ids, separate)
        let stats = try XCTUnwrap(events.last)
        XCTAssertEqual(TestSupport.value(stats, "spanwatch.stats.packets") as? Int, 24 + 7)
        // dns.pcap is from 2016, dnscat2.pcap from 2023: the first packet seen is the older one.
        XCTAssertEqual((TestSupport.value(stats, "spanwatch.stats.first_packet") as? String)?.prefix(4), "2016")
    }
}
