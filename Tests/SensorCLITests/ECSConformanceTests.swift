import Foundation
import TestSupport
import XCTest

/// Events checked against ECS itself (Elastic's ecs_flat.yml, ECS 8.11.0), not only against our own docs:
/// every field outside the vendor namespace `sensor` is an ECS field with ECS's type, arrays where ECS
/// normalises to arrays, and allowed values where ECS lists them.
final class ECSConformanceTests: XCTestCase {
    /// Every event of every shared capture (the categorised captures, the large one and tcpdump's protocol
    /// test captures), one sensor run per folder.
    func testEveryEventOfEverySharedCaptureConformsToECS() throws {
        let ecs = try ECSReference.load()
        XCTAssertGreaterThan(ecs.fields.count, 1500)
        var datasets: [String: Int] = [:]
        var problems: [String: Int] = [:]
        XCTAssertGreaterThan(SharedCaptureEvents.protocolTestCaptures, 500)
        for run in SharedCaptureEvents.runs {
            XCTAssertEqual(run.status, 0, run.stderr)
            for e in run.events {
                datasets[TestSupport.value(e, "event.dataset") as? String ?? "?", default: 0] += 1
                for p in ecs.problems(e) {
                    if problems.count < 40 { print(p) }
                    problems[p.split(separator: ":").first.map(String.init) ?? p, default: 0] += 1
                }
            }
        }
        XCTAssertEqual(problems, [:])
        for d in ["spanwatch.flow", "spanwatch.dns", "spanwatch.alert", "spanwatch.stats"] { XCTAssertGreaterThan(datasets[d] ?? 0, 0, d) }
        XCTAssertGreaterThan(datasets.values.reduce(0, +), 5000)
    }

    /// docs/SCHEMA.md agrees with ECS: every documented field is an ECS field with ECS's type (and array-ness),
    /// or lives under the vendor namespace.
    func testDocumentedSchemaAgreesWithECS() throws {
        let ecs = try ECSReference.load()
        let schema = try EventSchema.load()
        let kinds: [String: Set<String>] = [
            "keyword": ["keyword", "constant_keyword", "wildcard", "match_only_text"], "long": ["long"], "float": ["float", "scaled_float"],
            "ip": ["ip"], "date": ["date"], "boolean": ["boolean"], "object": ["object", "nested", "flattened"],
        ]
        var problems: [String] = []
        var checked = 0
        for (name, section) in schema.sections {
            for f in section.fields {
                // Rows naming two fields (`a`, `b`) are documented as text; the first path is the one checked.
                let path = f.path.components(separatedBy: "`").first ?? f.path
                if path.hasPrefix(ECSReference.vendorNamespace + ".") { continue }
                // `geo.location` is an ECS geo_point, documented (and written) as its `lat` and `lon`.
                if path.hasSuffix(".lat") || path.hasSuffix(".lon"), ecs.fields[String(path.dropLast(4))]?.type == "geo_point", f.type == "float" { continue }
                guard let e = ecs.fields[path] else { problems.append("\(name): \(path) is neither ECS nor under spanwatch.*"); continue }
                let isArray = f.type.hasSuffix("[]")
                let base = isArray ? String(f.type.dropLast(2)) : f.type
                if !(kinds[base] ?? []).contains(e.type) { problems.append("\(name): \(path) documented \(f.type), ECS \(e.type)") }
                if isArray != e.isArray { problems.append("\(name): \(path) documented \(f.type), ECS array: \(e.isArray)") }
                checked += 1
            }
        }
        XCTAssertEqual(problems, [])
        XCTAssertGreaterThan(checked, 100)
    }

    /// The check can fail: each kind of slip in an otherwise conforming event is reported.
    func testCheckRejectsWrongFields() throws {
        let ecs = try ECSReference.load()
        let r = try TestSupport.sensor(["replay", TestSupport.data("pcaps/benign/dns.pcap"), "--log-level", "error"])
        let good = try XCTUnwrap(try TestSupport.events(r).first { TestSupport.value($0, "event.dataset") as? String == "spanwatch.flow" })
        XCTAssertEqual(ecs.problems(good), [])
        func broken(_ path: [String], _ value: Any) -> [String] {
            func set(_ d: [String: Any], _ p: ArraySlice<String>) -> [String: Any] {
                var d = d
                if p.count == 1 { d[p.first!] = value } else { d[p.first!] = set(d[p.first!] as? [String: Any] ?? [:], p.dropFirst()) }
                return d
            }
            return ecs.problems(set(good, path[...]))
        }
        XCTAssertEqual(broken(["network", "bytes"], 1.5).count, 1, "a long written as a float")
        XCTAssertEqual(broken(["event", "risk_score"], NSNumber(value: 55)).count, 1, "a float written as an integer")
        XCTAssertEqual(broken(["source", "ip"], "not-an-ip").count, 1)
        XCTAssertEqual(broken(["event", "kind"], "flow").count, 1, "not an allowed event.kind")
        XCTAssertEqual(broken(["event", "category"], "network").count, 1, "event.category must be an array")
        XCTAssertEqual(broken(["event", "type"], ["connection", "finished"]).count, 1, "not an allowed event.type")
        XCTAssertEqual(broken(["network", "transport"], ["tcp"]).count, 1, "an array where ECS has a single value")
        XCTAssertEqual(broken(["network", "surprise"], "x").count, 1, "a field ECS does not define")
        XCTAssertEqual(broken(["beaconing", "score"], 0.5).count, 1, "a custom namespace outside the vendor one")
        XCTAssertEqual(broken(["spanwatch", "beaconing", "score"], 0.5), [], "the vendor namespace")
    }
}
