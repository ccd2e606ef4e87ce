import Foundation
import TestSupport
import XCTest

/// `sensor replay --geoip-city --geoip-asn` end to end, on a capture made here with public addresses
/// that MaxMind's test databases describe.
final class EnrichmentCLITests: XCTestCase {
    /// A classic pcap of UDP packets (Ethernet/IPv4), one per address pair.
    static func writeCapture(_ pairs: [(String, String)], to url: URL) throws {
        var d = Data()
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { d.append(contentsOf: $0) } }
        func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { d.append(contentsOf: $0) } }
        u32(0xa1b2_c3d4); u16(2); u16(4); u32(0); u32(0); u32(65535); u32(1)
        for (i, (src, dst)) in pairs.enumerated() {
            func quad(_ s: String) -> [UInt8] { s.split(separator: ".").map { UInt8($0)! } }
            var frame: [UInt8] = [0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 6, 0x08, 0x00]
            let payload: [UInt8] = Array("hello".utf8)
            let total = 20 + 8 + payload.count
            frame += [0x45, 0, UInt8(total >> 8), UInt8(total & 0xff), 0, 1, 0, 0, 64, 17, 0, 0] + quad(src) + quad(dst)
            frame += [0x30, 0x39, 0x00, 0x35, 0, UInt8(8 + payload.count), 0, 0] + payload
            u32(1_700_000_000 + UInt32(i)); u32(0); u32(UInt32(frame.count)); u32(UInt32(frame.count))
            d.append(contentsOf: frame)
        }
        try d.write(to: url)
    }

    func testReplayEnrichesSourceAndDestination() throws {
        try XCTSkipUnless(TestSupport.hasTool("mmdblookup"), "mmdb-bin is not installed")
        let dir = try TestSupport.temporaryDirectory("geo-cli")
        defer { try? FileManager.default.removeItem(at: dir) }
        let pcap = dir.appendingPathComponent("geo.pcap")
        try EnrichmentCLITests.writeCapture([("81.2.69.160", "1.128.0.1"), ("10.0.0.5", "216.160.83.56"), ("89.160.20.112", "12.81.92.1")], to: pcap)
        let city = TestSupport.data("mmdb/GeoIP2-City-Test.mmdb"), asn = TestSupport.data("mmdb/GeoLite2-ASN-Test.mmdb")
        let r = try TestSupport.sensor(["replay", "--geoip-city", city, "--geoip-asn", asn, pcap.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let flows = try TestSupport.events(r).filter { TestSupport.value($0, "event.dataset") as? String == "spanwatch.flow" }
        XCTAssertEqual(flows.count, 3)
        func lookup(_ file: String, _ ip: String, _ path: String...) throws -> String? {
            let out = try TestSupport.run("mmdblookup", ["--file", file, "--ip", ip] + path).stdoutText
            guard let q1 = out.firstIndex(of: "\""), let q2 = out[out.index(after: q1)...].firstIndex(of: "\"") else {
                return out.split(separator: " ").first { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) != nil }.map {
                    $0.trimmingCharacters(in: .whitespacesAndNewlines)
                }
            }
            return String(out[out.index(after: q1)..<q2])
        }
        for f in flows {
            for side in ["source", "destination"] {
                let ip = try XCTUnwrap(TestSupport.value(f, "\(side).ip") as? String)
                if ip.hasPrefix("10.") {
                    XCTAssertNil(TestSupport.value(f, "\(side).geo"), "private address \(ip) is not enriched")
                    continue
                }
                XCTAssertEqual(TestSupport.value(f, "\(side).geo.country_iso_code") as? String, try lookup(city, ip, "country", "iso_code"), ip)
                XCTAssertEqual(TestSupport.value(f, "\(side).geo.city_name") as? String, try lookup(city, ip, "city", "names", "en"), ip)
                let number = (TestSupport.value(f, "\(side).as.number") as? Int).map(String.init)
                XCTAssertEqual(number, try lookup(asn, ip, "autonomous_system_number"), ip)
                XCTAssertEqual(TestSupport.value(f, "\(side).as.organization.name") as? String,
                               try lookup(asn, ip, "autonomous_system_organization"), ip)
            }
        }
        // Enriched events still follow docs/SCHEMA.md (source/destination are closed namespaces there).
        let schema = try EventSchema.load()
        for e in try TestSupport.events(r) { XCTAssertEqual(schema.problems(e), []) }
        let london = flows.first { TestSupport.value($0, "source.ip") as? String == "81.2.69.160" }
        XCTAssertEqual(london.flatMap { TestSupport.value($0, "source.geo.city_name") as? String }, "London")
        XCTAssertEqual(london.flatMap { TestSupport.value($0, "destination.as.number") as? Int }, 1221)
    }

    func testBrokenDatabaseStopsTheRunWithAClearError() throws {
        let pcap = TestSupport.data("pcaps/benign/dns.pcap")
        let bad = TestSupport.data("mmdb/GeoIP2-City-Test-Invalid-Node-Count.mmdb")
        let r = try TestSupport.sensor(["replay", "--geoip-city", bad, pcap])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains(bad) && r.stderr.contains("invalid metadata"), r.stderr)
        XCTAssertTrue(r.stdout.isEmpty, "no events before the error")
        let missing = try TestSupport.sensor(["replay", "--geoip-asn", "/nonexistent/asn.mmdb", pcap])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.stderr.contains("/nonexistent/asn.mmdb"), missing.stderr)
    }

    func testYAMLEnrichmentSection() throws {
        let dir = try TestSupport.temporaryDirectory("geo-yaml")
        defer { try? FileManager.default.removeItem(at: dir) }
        let conf = dir.appendingPathComponent("sensor.yaml")
        try """
        enrichment:
          geoip_city: \(TestSupport.data("mmdb/GeoIP2-City-Test.mmdb"))
          geoip_asn: \(TestSupport.data("mmdb/GeoLite2-ASN-Test.mmdb"))
          cache_size: 1000
        """.write(to: conf, atomically: true, encoding: .utf8)
        let pcap = dir.appendingPathComponent("geo.pcap")
        try EnrichmentCLITests.writeCapture([("81.2.69.160", "1.128.0.1")], to: pcap)
        let r = try TestSupport.sensor(["replay", "--config", conf.path, pcap.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let flow = try XCTUnwrap(try TestSupport.events(r).first { TestSupport.value($0, "event.dataset") as? String == "spanwatch.flow" })
        XCTAssertEqual(TestSupport.value(flow, "source.geo.city_name") as? String, "London")
        XCTAssertEqual(TestSupport.value(flow, "destination.as.number") as? Int, 1221)
        let bad = try TestSupport.sensor(["check-config", conf.path])
        XCTAssertEqual(bad.status, 0, bad.stderr)
    }
}
