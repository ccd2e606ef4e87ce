import Enrichment
import Events
import Foundation
import Logging
import PacketCore
import TestSupport
import XCTest

/// GeoIP/ASN enrichment against MaxMind's test databases, checked field by field against what the real
/// `mmdblookup` prints for the same address.
final class GeoEnricherTests: XCTestCase {
    static let city = TestSupport.data("mmdb/GeoIP2-City-Test.mmdb")
    static let country = TestSupport.data("mmdb/GeoIP2-Country-Test.mmdb")
    static let asn = TestSupport.data("mmdb/GeoLite2-ASN-Test.mmdb")
    static let broken = TestSupport.data("mmdb/GeoIP2-City-Test-Invalid-Node-Count.mmdb")
    let logger = Logger(label: "test")

    func configuration(city: String? = GeoEnricherTests.city, asn: String? = GeoEnricherTests.asn) -> EnrichmentConfiguration {
        var c = EnrichmentConfiguration()
        c.cityDatabase = city
        c.asnDatabase = asn
        c.reloadCheckSeconds = 0.1
        return c
    }

    /// What the enricher writes for one address, parsed.
    func enriched(_ e: GeoEnricher, _ ip: String) throws -> [String: Any] {
        var w = JSONWriter()
        w.beginObject()
        e.enrich(try XCTUnwrap(IPAddress(ip)), into: &w)
        w.endObject()
        return try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(w.bytes)) as? [String: Any])
    }

    /// One value as `mmdblookup` prints it (`"GB" <utf8_string>`, `51.514200 <double>`), or nil when absent.
    func mmdblookup(_ file: String, _ ip: String, _ path: [String]) throws -> String? {
        let r = try TestSupport.run("mmdblookup", ["--file", file, "--ip", ip] + path)
        guard r.status == 0 else { return nil }
        let text = r.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
        guard let lt = text.range(of: " <", options: .backwards) else { return nil }
        var v = String(text[..<lt.lowerBound])
        if v.hasPrefix("\""), v.hasSuffix("\"") { v = String(v.dropFirst().dropLast()) }
        return v
    }

    func testFieldsEqualMmdblookup() throws {
        try XCTSkipUnless(TestSupport.hasTool("mmdblookup"), "mmdb-bin is not installed (scripts/install-deps.sh test)")
        let dbs = try GeoDatabases(configuration: configuration(), logger: logger)
        let e = GeoEnricher(databases: dbs)
        var checkedCity = 0, checkedASN = 0
        for ip in ["81.2.69.160", "216.160.83.56", "89.160.20.112", "175.16.199.0", "2001:480::1", "2a02:cf40::1", "67.43.156.1"] {
            let obj = try enriched(e, ip)
            let geo = obj["geo"] as? [String: Any]
            let pairs: [(String, [String])] = [
                ("country_iso_code", ["country", "iso_code"]), ("country_name", ["country", "names", "en"]),
                ("city_name", ["city", "names", "en"]), ("continent_name", ["continent", "names", "en"]),
                ("region_name", ["subdivisions", "0", "names", "en"]),
            ]
            for (field, path) in pairs {
                let expected = try mmdblookup(GeoEnricherTests.city, ip, path)
                XCTAssertEqual(geo?[field] as? String, expected, "\(ip) geo.\(field)")
                if expected != nil { checkedCity += 1 }
            }
            let location = geo?["location"] as? [String: Any]
            if let lat = try mmdblookup(GeoEnricherTests.city, ip, ["location", "latitude"]).flatMap(Double.init) {
                XCTAssertEqual(location?["lat"] as? Double ?? .nan, lat, accuracy: 1e-6, "\(ip) geo.location.lat")
                let lon = try XCTUnwrap(try mmdblookup(GeoEnricherTests.city, ip, ["location", "longitude"]).flatMap(Double.init))
                XCTAssertEqual(location?["lon"] as? Double ?? .nan, lon, accuracy: 1e-6, "\(ip) geo.location.lon")
            } else {
                XCTAssertNil(location)
            }
        }
        for ip in ["1.128.0.0", "12.81.92.1", "2600:6000::1", "149.101.100.1", "81.2.69.160"] {
            let asObj = try enriched(e, ip)["as"] as? [String: Any]
            let number = try mmdblookup(GeoEnricherTests.asn, ip, ["autonomous_system_number"])
            XCTAssertEqual((asObj?["number"] as? Int).map(String.init), number, "\(ip) as.number")
            let org = try mmdblookup(GeoEnricherTests.asn, ip, ["autonomous_system_organization"])
            XCTAssertEqual((asObj?["organization"] as? [String: Any])?["name"] as? String, org, "\(ip) as.organization.name")
            if number != nil { checkedASN += 1 }
        }
        XCTAssertGreaterThanOrEqual(checkedCity, 12, "the test addresses must be in the City test database")
        XCTAssertGreaterThanOrEqual(checkedASN, 3, "the test addresses must be in the ASN test database")
        // Cached: a second lookup is a hit and gives the same bytes.
        let before = e.hits
        XCTAssertEqual(try enriched(e, "81.2.69.160") as NSDictionary, try enriched(e, "81.2.69.160") as NSDictionary)
        XCTAssertEqual(e.hits, before + 2)
    }

    func testPrivateAndReservedAddressesAreSkipped() throws {
        let e = GeoEnricher(databases: try GeoDatabases(configuration: configuration(), logger: logger))
        for ip in ["10.1.2.3", "192.168.1.1", "127.0.0.1", "169.254.1.1", "224.0.0.251", "fe80::1", "fd00::1", "::1", "2001:db8::1"] {
            XCTAssertTrue(GeoEnricher.reserved.contains(try XCTUnwrap(IPAddress(ip))), ip)
            XCTAssertTrue(try enriched(e, ip).isEmpty, ip)
        }
        XCTAssertEqual(e.skipped, 9)
        XCTAssertEqual(e.misses, 0)
    }

    func testCacheIsBoundedOldestFirst() throws {
        var c = configuration()
        c.cacheSize = 16
        let e = GeoEnricher(databases: try GeoDatabases(configuration: c, logger: logger))
        for i in 0..<40 { _ = try enriched(e, "81.2.69.\(100 + i)") }
        XCTAssertEqual(e.misses, 40)
        XCTAssertEqual(e.evictions, 24)
        _ = try enriched(e, "81.2.69.139")  // among the newest 16: still cached
        XCTAssertEqual(e.hits, 1)
        _ = try enriched(e, "81.2.69.100")  // the oldest: evicted
        XCTAssertEqual(e.misses, 41)
    }

    /// Replacing the file (write beside it, rename over it) switches to the new data while running;
    /// a broken replacement keeps the old data and is counted.
    func testReloadWhenFileIsReplaced() throws {
        let dir = try TestSupport.temporaryDirectory("geoip")
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("city.mmdb").path
        try FileManager.default.copyItem(atPath: GeoEnricherTests.city, toPath: path)
        let dbs = try GeoDatabases(configuration: configuration(city: path, asn: nil), logger: logger)
        dbs.startWatching()
        defer { dbs.stopWatching() }
        let e = GeoEnricher(databases: dbs)
        let ip = "81.2.69.160"
        XCTAssertEqual((try enriched(e, ip)["geo"] as? [String: Any])?["city_name"] as? String, "London")

        func replace(with source: String) throws {
            let tmp = dir.appendingPathComponent("city.mmdb.new").path
            try? FileManager.default.removeItem(atPath: tmp)
            try FileManager.default.copyItem(atPath: source, toPath: tmp)
            XCTAssertEqual(rename(tmp, path), 0)
        }
        // A broken file: the old database stays, the failure is counted.
        try replace(with: GeoEnricherTests.broken)
        XCTAssertTrue(TestSupport.waitUntil(timeout: 5) { dbs.reloadFailures.load(ordering: .relaxed) == 1 })
        XCTAssertEqual((try enriched(e, ip)["geo"] as? [String: Any])?["city_name"] as? String, "London")
        // A Country database in its place: the city disappears, the country stays.
        try replace(with: GeoEnricherTests.country)
        XCTAssertTrue(TestSupport.waitUntil(timeout: 5) { dbs.reloads.load(ordering: .relaxed) == 1 })
        let geo = try enriched(e, ip)["geo"] as? [String: Any]
        XCTAssertNil(geo?["city_name"])
        XCTAssertEqual(geo?["country_iso_code"] as? String, try mmdblookup(GeoEnricherTests.country, ip, ["country", "iso_code"]))
    }

    /// SIGHUP reopens the databases even when the files look unchanged.
    func testSIGHUPReloads() throws {
        let dbs = try GeoDatabases(configuration: configuration(), logger: logger)
        dbs.startWatching()
        defer { dbs.stopWatching() }
        usleep(100_000)
        XCTAssertEqual(dbs.reloads.load(ordering: .relaxed), 0)
        kill(getpid(), SIGHUP)
        XCTAssertTrue(TestSupport.waitUntil(timeout: 5) { dbs.reloads.load(ordering: .relaxed) == 1 })
        let e = GeoEnricher(databases: dbs)
        XCTAssertEqual((try enriched(e, "81.2.69.160")["geo"] as? [String: Any])?["city_name"] as? String, "London")
    }

    func testMissingOrCorruptDatabaseIsAClearError() {
        XCTAssertThrowsError(try GeoDatabases(configuration: configuration(city: "/nonexistent/city.mmdb"), logger: logger)) { e in
            XCTAssertTrue("\(e)".contains("/nonexistent/city.mmdb"), "\(e)")
            XCTAssertTrue("\(e)".contains("No such file"), "\(e)")
        }
        XCTAssertThrowsError(try GeoDatabases(configuration: configuration(city: GeoEnricherTests.broken), logger: logger)) { e in
            XCTAssertTrue("\(e)".contains("invalid metadata"), "\(e)")
        }
        XCTAssertThrowsError(try GeoDatabases(configuration: configuration(city: GeoEnricherTests.asn, asn: nil), logger: logger)) { e in
            XCTAssertTrue("\(e)".contains("GeoLite2-ASN"), "\(e)")
        }
    }
}
