import ConfigKit
import Foundation
import PacketCore
import TestSupport
import XCTest
@testable import ThreatIntel

final class IndicatorLoaderTests: XCTestCase {
    func testPlainListDetectsTypesAndKeepsComments() throws {
        let text = """
        # example feed
        192.0.2.10            # C2 server
        2001:db8::1
        198.51.100.0/24
        Evil.Example.
        http://Bad.Example:80/path?q=1#frag
        d41d8cd98f00b204e9800998ecf8427e
        da39a3ee5e6b4b0d3255bfef95601890afd80709
        e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
        t13d1516h2_8daaf6152771_b0da82dd1658
        sni:c2.example.net
        ja3:e7d705a3286e19ea42f587b344ee6865

        """
        let f = try IndicatorLoader.parse(text, path: "/feeds/list.txt")
        XCTAssertEqual(f.format, .list)
        let got = f.indicators.map { "\($0.type.rawValue) \($0.value)" }
        XCTAssertEqual(got, [
            "ip 192.0.2.10", "ip 2001:db8::1", "cidr 198.51.100.0/24", "domain evil.example", "url bad.example/path?q=1",
            "md5 d41d8cd98f00b204e9800998ecf8427e", "sha1 da39a3ee5e6b4b0d3255bfef95601890afd80709",
            "sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "ja4 t13d1516h2_8daaf6152771_b0da82dd1658", "sni c2.example.net", "ja3 e7d705a3286e19ea42f587b344ee6865",
        ])
        XCTAssertEqual(f.indicators[0].description, "C2 server")
        XCTAssertEqual(f.indicators[0].origin, "/feeds/list.txt:2")
        XCTAssertEqual(f.indicators[0].source, "list.txt")
        // The file name decides what a bare 32-hex value or a name means.
        XCTAssertEqual(try IndicatorLoader.parse("e7d705a3286e19ea42f587b344ee6865\n", path: "ja3-blocklist.txt").indicators[0].type, .ja3)
        XCTAssertEqual(try IndicatorLoader.parse("c2.example.net\n", path: "sni.txt").indicators[0].type, .sni)
    }

    func testPlainListErrorsCarryLineNumbers() {
        XCTAssertThrowsError(try IndicatorLoader.parse("192.0.2.1\n# ok\nnot a value!\n300.1.2.3/8\n", path: "bad.txt")) { e in
            let issues = (e as! ConfigIssues).issues
            XCTAssertEqual(issues.map(\.line), [3, 4], "\(issues)")
            XCTAssertTrue(issues.allSatisfy { $0.file == "bad.txt" })
        }
    }

    /// Spreadsheet exports start with a UTF-8 byte order mark: it is not part of the header or the first value.
    func testLeadingByteOrderMarkIsIgnored() throws {
        let dir = try TestSupport.temporaryDirectory("bom")
        defer { try? FileManager.default.removeItem(at: dir) }
        let bom: [UInt8] = [0xEF, 0xBB, 0xBF]
        let csv = dir.appendingPathComponent("feed.csv").path
        try Data(bom + Array("type,value\r\nip,192.0.2.66\r\n".utf8)).write(to: URL(fileURLWithPath: csv))
        let c = try IndicatorLoader.load(path: csv)
        XCTAssertEqual(c.indicators.map(\.value), ["192.0.2.66"])
        let list = dir.appendingPathComponent("list.txt").path
        try Data(bom + Array("192.0.2.67\nevil.example\n".utf8)).write(to: URL(fileURLWithPath: list))
        XCTAssertEqual(try IndicatorLoader.load(path: list).indicators.map(\.value), ["192.0.2.67", "evil.example"])
        let stix = "{\"type\":\"bundle\",\"id\":\"bundle--1\",\"objects\":[{\"type\":\"indicator\",\"spec_version\":\"2.1\",\"id\":\"indicator--a\",\"pattern\":\"[ipv4-addr:value = '192.0.2.68']\",\"pattern_type\":\"stix\",\"valid_from\":\"2024-01-01T00:00:00Z\"}]}"
        XCTAssertEqual(try IndicatorLoader.parse("\u{FEFF}" + stix, path: "b.json").indicators.map(\.value), ["192.0.2.68"])
    }

    /// Indicator files are read like rules files: a FIFO or a directory is an error naming the file, at once.
    func testNonRegularIndicatorFileIsRefused() throws {
        let dir = try TestSupport.temporaryDirectory("intel-fifo")
        defer { try? FileManager.default.removeItem(at: dir) }
        let fifo = dir.appendingPathComponent("feed.csv").path
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        XCTAssertThrowsError(try IndicatorLoader.load(path: fifo)) { e in
            let i = (e as! ConfigIssues).issues
            XCTAssertEqual(i.first?.file, fifo)
            XCTAssertTrue(i.first?.message.contains("FIFO") ?? false, "\(i)")
        }
        XCTAssertThrowsError(try IndicatorLoader.load(path: dir.path)) { e in
            XCTAssertTrue((e as! ConfigIssues).issues.first?.message.contains("directory") ?? false, "\(e)")
        }
    }

    func testCSVWithHeaderConfidenceAndExpiry() throws {
        let text = """
        type,value,source,confidence,expires,description,reference
        ip,192.0.2.66,acme-feed,90,2030-01-01T00:00:00Z,"C2, stage 2",https://intel.example/1
        domain,tunnel.example,,low,,,
        cidr,203.0.113.0/25,acme-feed,,1700000000,,
        ip,198.51.100.0/26,acme-feed,,,,
        """
        let f = try IndicatorLoader.parse(text, path: "feed.csv")
        XCTAssertEqual(f.format, .csv)
        XCTAssertEqual(f.indicators.count, 4)
        let a = f.indicators[0]
        XCTAssertEqual(a.type, .ip); XCTAssertEqual(a.source, "acme-feed"); XCTAssertEqual(a.confidence, 90)
        XCTAssertEqual(a.description, "C2, stage 2"); XCTAssertEqual(a.reference, "https://intel.example/1")
        XCTAssertEqual(a.expires, DateParser.timestamp("2030-01-01"))
        XCTAssertEqual(a.expires?.seconds, 1_893_456_000)
        XCTAssertEqual(f.indicators[1].source, "feed.csv")
        XCTAssertEqual(f.indicators[1].confidence, 15)
        XCTAssertEqual(f.indicators[2].expires?.seconds, 1_700_000_000)
        // An "ip" with a prefix length is a network.
        XCTAssertEqual(f.indicators[3].type, .cidr)
    }

    func testCSVMalformedLinesAreReportedByLine() {
        let text = """
        type,value,confidence
        ip,192.0.2.1,50
        ip,192.0.2.999,50
        colour,red,1
        domain,ok.example,200
        "unterminated,x
        """
        XCTAssertThrowsError(try IndicatorLoader.parse(text, path: "feed.csv")) { e in
            let issues = (e as! ConfigIssues).issues
            XCTAssertEqual(issues.map(\.line), [3, 4, 5, 6], "\(issues)")
            XCTAssertTrue(issues[0].description.hasPrefix("feed.csv:3:"), issues[0].description)
        }
        XCTAssertThrowsError(try IndicatorLoader.parse("value\n192.0.2.1\n", path: "nohdr.csv")) { e in
            XCTAssertEqual((e as! ConfigIssues).issues.first?.line, 1)
        }
    }

    static let stix = """
    {
      "type": "bundle",
      "id": "bundle--5d0092c5-5f74-4287-9642-33f4c354e56d",
      "objects": [
        {"type": "identity", "spec_version": "2.1", "id": "identity--f431f809-377b-45e0-aa1c-6a4751cae5ff", "name": "Example CERT"},
        {
          "type": "indicator", "spec_version": "2.1",
          "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
          "created_by_ref": "identity--f431f809-377b-45e0-aa1c-6a4751cae5ff",
          "name": "C2 address or domain",
          "pattern": "[ipv4-addr:value = '192.0.2.44' OR domain-name:value = 'c2.example.org']",
          "pattern_type": "stix",
          "confidence": 80,
          "valid_until": "2031-05-01T00:00:00.000Z",
          "external_references": [{"source_name": "report", "url": "https://intel.example/r/7"}]
        },
        {
          "type": "indicator", "spec_version": "2.1", "id": "indicator--2",
          "pattern": "[file:hashes.'SHA-256' = 'E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855'] OR [url:value = 'https://bad.example/x.php']",
          "pattern_type": "stix"
        },
        {"type": "indicator", "spec_version": "2.1", "id": "indicator--3", "pattern": "[ipv6-addr:value = '2001:db8::/32']", "pattern_type": "stix"},
        {"type": "indicator", "spec_version": "2.1", "id": "indicator--4", "pattern": "[ipv4-addr:value = '192.0.2.1' AND network-traffic:dst_port = 443]", "pattern_type": "stix"},
        {"type": "indicator", "spec_version": "2.1", "id": "indicator--5", "pattern": "[domain-name:value = 'old.example']", "pattern_type": "stix", "revoked": true},
        {"type": "indicator", "spec_version": "2.1", "id": "indicator--6", "pattern": "alert tcp any any", "pattern_type": "snort"},
        {"type": "malware", "spec_version": "2.1", "id": "malware--1", "name": "x"}
      ]
    }
    """

    func testSTIXBundle() throws {
        let f = try IndicatorLoader.parse(Self.stix, path: "bundle.json")
        XCTAssertEqual(f.format, .stix)
        XCTAssertEqual(f.indicators.map { "\($0.type.rawValue) \($0.value)" }, [
            "ip 192.0.2.44", "domain c2.example.org",
            "sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "url bad.example/x.php",
            "cidr 2001:db8::/32",
        ])
        let a = f.indicators[0]
        XCTAssertEqual(a.source, "Example CERT")
        XCTAssertEqual(a.confidence, 80)
        XCTAssertEqual(a.reference, "https://intel.example/r/7")
        XCTAssertEqual(a.description, "C2 address or domain")
        XCTAssertEqual(a.expires, DateParser.timestamp("2031-05-01T00:00:00Z"))
        XCTAssertEqual(a.origin, "bundle.json:11")
        XCTAssertEqual(f.indicators[2].source, "bundle.json")
        XCTAssertEqual(f.skipped["AND pattern"], 1)
        XCTAssertEqual(f.skipped["revoked"], 1)
        XCTAssertEqual(f.skipped["pattern_type snort"], 1)
    }

    func testSTIXMalformedObjectsReportTheirLines() {
        let text = """
        {"type": "bundle", "id": "bundle--1", "objects": [
          {"type": "indicator", "id": "indicator--1", "pattern": "[ipv4-addr:value = '192.0.2.1']", "pattern_type": "stix"},
          {"type": "indicator", "id": "indicator--2", "pattern": "[ipv4-addr:value = '192.0.2.1'", "pattern_type": "stix"},
          {"type": "indicator", "id": "indicator--3", "pattern_type": "stix"},
          {"type": "indicator", "id": "indicator--4", "pattern": "[ipv4-addr:value = 'not-an-ip']", "pattern_type": "stix"},
          {"type": "indicator", "id": "indicator--5", "pattern": "[domain-name:value = 'ok.example']", "confidence": 900}
        ]}
        """
        XCTAssertThrowsError(try IndicatorLoader.parse(text, path: "bad.json")) { e in
            let issues = (e as! ConfigIssues).issues
            XCTAssertEqual(issues.map(\.line), [3, 4, 5, 6], "\(issues)")
        }
        // A JSON syntax error names its line as well.
        XCTAssertThrowsError(try IndicatorLoader.parse("{\"type\": \"bundle\",\n \"objects\": [\n {\"type\": \"indicator\",, }\n]}", path: "syntax.json")) { e in
            XCTAssertEqual((e as! ConfigIssues).issues.first?.line, 3, "\(e)")
        }
    }

    func testSTIXPatternGrammar() {
        XCTAssertEqual(try STIXPattern.parse("[url:value = 'http://a.example/it\\'s']").get(), .anyOf([.init(path: "url:value", value: "http://a.example/it's")]))
        XCTAssertEqual(try STIXPattern.parse("([ipv4-addr:value = '192.0.2.1']) OR ([ipv4-addr:value = '192.0.2.2'])").get(),
                       .anyOf([.init(path: "ipv4-addr:value", value: "192.0.2.1"), .init(path: "ipv4-addr:value", value: "192.0.2.2")]))
        XCTAssertEqual(try STIXPattern.parse("[domain-name:value IN ('a.example', 'b.example')]").get(),
                       .anyOf([.init(path: "domain-name:value", value: "a.example"), .init(path: "domain-name:value", value: "b.example")]))
        XCTAssertEqual(try STIXPattern.parse("[domain-name:value MATCHES '^a']").get(), .unsupported("operator MATCHES"))
        XCTAssertEqual(try STIXPattern.parse("[ipv4-addr:value = '192.0.2.1'] WITHIN 10 SECONDS").get(), .unsupported("qualified pattern"))
        for bad in ["", "[", "[ipv4-addr:value = ]", "ipv4-addr:value = '1.2.3.4'", "[ipv4-addr:value = '1.2.3.4'] OR", "[a = 'x']"] {
            XCTAssertThrowsError(try STIXPattern.parse(bad).get(), bad)
        }
    }

    static let misp = """
    {"response": [{"Event": {
      "id": "1234", "uuid": "5c8f6b1e-0000-4000-8000-000000000001", "info": "Phishing campaign", "threat_level_id": "1",
      "Orgc": {"name": "CIRCL-example"},
      "Attribute": [
        {"type": "ip-dst", "value": "192.0.2.200", "to_ids": true, "category": "Network activity", "comment": "C2"},
        {"type": "domain|ip", "value": "login.bad.example|198.51.100.23", "to_ids": true},
        {"type": "ip-src|port", "value": "203.0.113.9|4444", "to_ids": true},
        {"type": "ja3-fingerprint-md5", "value": "E7D705A3286E19EA42F587B344EE6865", "to_ids": true},
        {"type": "filename|sha256", "value": "invoice.exe|e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "to_ids": true},
        {"type": "url", "value": "http://bad.example/gate.php", "to_ids": "1"},
        {"type": "hostname", "value": "benign.example", "to_ids": false},
        {"type": "email-src", "value": "a@bad.example", "to_ids": true}
      ],
      "Object": [{"name": "domain-ip", "Attribute": [{"type": "hostname", "value": "cdn.bad.example", "to_ids": true}]}]
    }}]}
    """

    func testMISPExport() throws {
        let f = try IndicatorLoader.parse(Self.misp, path: "misp-export.json")
        XCTAssertEqual(f.format, .misp)
        XCTAssertEqual(f.indicators.map { "\($0.type.rawValue) \($0.value)" }, [
            "ip 192.0.2.200", "domain login.bad.example", "ip 198.51.100.23", "ip 203.0.113.9",
            "ja3 e7d705a3286e19ea42f587b344ee6865", "sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "url bad.example/gate.php", "domain cdn.bad.example",
        ])
        XCTAssertEqual(f.indicators[0].source, "CIRCL-example")
        XCTAssertEqual(f.indicators[0].confidence, 85)
        XCTAssertEqual(f.indicators[0].description, "C2")
        XCTAssertEqual(f.indicators[1].description, "Phishing campaign")
        XCTAssertEqual(f.indicators[0].reference, "misp:event/5c8f6b1e-0000-4000-8000-000000000001")
        XCTAssertEqual(f.skipped["to_ids false"], 1)
        XCTAssertEqual(f.skipped["attribute type email-src"], 1)
    }

    /// MISP is PHP: its JSON escapes slashes (`\/`) and exports are often tab-indented.
    func testMISPPHPStyleJSON() throws {
        let text = "{\n\t\"Event\": {\n\t\t\"info\": \"x\",\n\t\t\"Attribute\": [\n\t\t\t{\"type\": \"url\", \"value\": \"http:\\/\\/bad.example\\/gate.php\", \"to_ids\": true}\n\t\t]\n\t}\n}\n"
        let f = try IndicatorLoader.parse(text, path: "php.json")
        XCTAssertEqual(f.indicators.map(\.value), ["bad.example/gate.php"])
        XCTAssertEqual(f.indicators.first?.originLine, 5)
    }

    func testMISPMalformedAttributesReportTheirLines() {
        let text = """
        {"Event": {"info": "x", "Attribute": [
          {"type": "ip-dst", "value": "192.0.2.1"},
          {"type": "ip-dst", "value": "192.0.2.300"},
          {"type": "domain"},
          {"type": "sha256", "value": "abc"}
        ]}}
        """
        XCTAssertThrowsError(try IndicatorLoader.parse(text, path: "misp.json")) { e in
            let issues = (e as! ConfigIssues).issues
            XCTAssertEqual(issues.map(\.line), [3, 4, 5], "\(issues)")
        }
    }

    func testDates() {
        XCTAssertEqual(DateParser.timestamp("1970-01-01")?.nanoseconds, 0)
        XCTAssertEqual(DateParser.timestamp("2024-02-29T12:00:00Z")?.seconds, 1_709_208_000)
        XCTAssertEqual(DateParser.timestamp("2024-02-29T14:00:00+02:00")?.seconds, 1_709_208_000)
        XCTAssertEqual(DateParser.timestamp("2024-02-29T12:00:00.5Z")?.nanoseconds, 1_709_208_000_500_000_000)
        XCTAssertNil(DateParser.timestamp("2024-13-01"))
        XCTAssertNil(DateParser.timestamp("yesterday"))
    }

    /// STIX's customary `valid_until` of 9999-12-31 (and dates before 1970) clamp to the packet clock's
    /// range instead of overflowing nanoseconds: later (earlier) than every packet.
    func testDatesBeyondThePacketClockClamp() {
        XCTAssertEqual(DateParser.timestamp("9999-12-31T23:59:59Z"), Timestamp.latest)
        XCTAssertEqual(DateParser.timestamp("2262-04-12"), Timestamp.latest)
        XCTAssertEqual(DateParser.timestamp("99999999999999999"), Timestamp.latest)
        XCTAssertEqual(DateParser.timestamp("0001-01-01T00:00:00Z"), Timestamp.zero)
        XCTAssertEqual(DateParser.timestamp("-99999999999999999"), Timestamp.zero)
        XCTAssertEqual(DateParser.timestamp("3200-01-01"), Timestamp.latest)
        XCTAssertEqual(DateParser.timestamp("1015-01-01T00:00:00Z"), Timestamp.zero)
    }

    /// Found by the `intel` fuzz target: a STIX `valid_until` in year 1015, 3200 or 8841 trapped
    /// ("arithmetic overflow" converting to nanoseconds) and took the loader, and the sensor's start or
    /// reload, down.
    func testFeedWithDatesBeyondTheClockLoads() throws {
        let text = """
        {"type": "bundle", "id": "bundle--1", "objects": [
          {"type": "indicator", "spec_version": "2.1", "id": "indicator--1", "pattern": "[ipv4-addr:value = '192.0.2.7']",
           "pattern_type": "stix", "valid_from": "0001-01-01T00:00:00Z", "valid_until": "8841-01-01T00:00:00Z"}
        ]}
        """
        let file = try IndicatorLoader.parse(text, path: "feed.json")
        XCTAssertEqual(file.indicators.count, 1)
        XCTAssertEqual(file.indicators.first?.expires, Timestamp.latest)
    }
}
