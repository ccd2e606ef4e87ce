import XCTest
import TestSupport

/// Every event a replay of the shared captures produces conforms to docs/SCHEMA.md.
final class SchemaConformanceTests: XCTestCase {
    func testReplayEventsConformToDocumentedSchema() throws {
        let schema = try EventSchema.load()
        XCTAssertNotNil(schema.sections["spanwatch.flow"])
        XCTAssertGreaterThan(schema.sections["spanwatch.flow"]!.fields.count, 20)
        var datasets = Set<String>()
        var checked = 0
        for category in ["benign", "beacon", "c2-nonstd-port", "dns-tunnel", "lateral"] {
            for file in TestSupport.captures(category) {
                let r = try TestSupport.sensor(["replay", file, "--log-level", "error"])
                XCTAssertEqual(r.status, 0, r.stderr)
                for e in try TestSupport.events(r) {
                    let p = schema.problems(e)
                    XCTAssertTrue(p.isEmpty, "\(file): \(p.prefix(5))")
                    if !p.isEmpty { return }
                    datasets.insert(TestSupport.value(e, "event.dataset") as? String ?? "")
                    checked += 1
                }
            }
        }
        XCTAssertTrue(datasets.isSuperset(of: ["spanwatch.flow", "spanwatch.stats"]))
        XCTAssertGreaterThan(checked, 500)
    }

    /// The validator itself catches what it must (a test that cannot fail is a defect).
    func testValidatorRejectsBrokenEvents() throws {
        let schema = try EventSchema.load()
        let r = try TestSupport.sensor(["replay", TestSupport.data("pcaps/benign/dns.pcap"), "--log-level", "error"])
        var flow = try XCTUnwrap(try TestSupport.events(r).first)
        XCTAssertEqual(schema.problems(flow), [])
        var network = flow["network"] as! [String: Any]
        network["community_id"] = nil
        network["surprise"] = "x"
        flow["network"] = network
        var source = flow["source"] as! [String: Any]
        source["ip"] = "not-an-ip"
        flow["source"] = source
        let problems = schema.problems(flow)
        XCTAssertTrue(problems.contains { $0.contains("missing required network.community_id") }, "\(problems)")
        XCTAssertTrue(problems.contains { $0.contains("network.surprise") }, "\(problems)")
        XCTAssertTrue(problems.contains { $0.contains("source.ip") }, "\(problems)")
    }
}
