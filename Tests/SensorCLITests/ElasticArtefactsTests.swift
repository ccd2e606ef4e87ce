import Foundation
import TestSupport
import XCTest

/// Deploy/elastic: the index template (ECS's component templates plus ours) maps every field the events
/// carry with a compatible type, the pipeline and saved objects are valid and use only mapped fields.
final class ElasticArtefactsTests: XCTestCase {
    static let dir = TestSupport.repositoryRoot.appendingPathComponent("Deploy/elastic")

    static func json(_ name: String) throws -> [String: Any] {
        let data = try Data(contentsOf: dir.appendingPathComponent(name))
        return try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any], name)
    }

    /// The index template's mappings, flattened: dotted path → mapping type (`object` for plain objects).
    static func mappings() throws -> [String: String] {
        let template = try json("index-template.json")
        let composed = try XCTUnwrap(template["composed_of"] as? [String])
        var out: [String: String] = [:]
        func walk(_ props: [String: Any], _ prefix: String) {
            for (k, v) in props {
                guard let m = v as? [String: Any] else { continue }
                let path = prefix.isEmpty ? k : "\(prefix).\(k)"
                out[path] = m["type"] as? String ?? "object"
                if let p = m["properties"] as? [String: Any] { walk(p, path) }
            }
        }
        for name in composed {
            let file = name == "spanwatch_vendor" ? "component-spanwatch.json" : "ecs/\(name.replacingOccurrences(of: "ecs_8.11.0_", with: "")).json"
            let c = try json(file)
            let props = try XCTUnwrap(((c["template"] as? [String: Any])?["mappings"] as? [String: Any])?["properties"] as? [String: Any], file)
            walk(props, "")
        }
        return out
    }

    /// Whether one JSON value can be indexed under the mapping type without loss.
    static func compatible(_ v: Any, _ type: String) -> Bool {
        switch type {
        case "keyword", "constant_keyword", "wildcard", "match_only_text", "text": return v is String
        case "long", "integer", "short", "byte", "unsigned_long": return ECSReference.isInteger(v)
        // A float field must also be written as a float: a store without this template would map it as long.
        case "float", "scaled_float", "double", "half_float": return ECSReference.isWrittenAsFloat(v)
        case "boolean": return ECSReference.isBoolean(v)
        case "ip":
            guard let s = v as? String else { return false }
            var buf = [UInt8](repeating: 0, count: 16)
            return inet_pton(AF_INET, s, &buf) == 1 || inet_pton(AF_INET6, s, &buf) == 1
        case "date": return (v as? String).map { $0.count >= 20 && $0.hasSuffix("Z") } ?? false
        case "geo_point": return (v as? [String: Any]).map { $0["lat"] != nil && $0["lon"] != nil } ?? false
        case "flattened", "object", "nested": return v is [String: Any]
        default: return false
        }
    }

    /// Every leaf of an event checked against the mappings; problems as text.
    static func unmapped(_ event: [String: Any], _ mappings: [String: String]) -> [String] {
        var out: [String] = []
        func check(_ v: Any, _ path: String) {
            let type = mappings[path]
            if let a = v as? [Any] { for e in a { check(e, path) }; return }
            if let d = v as? [String: Any] {
                if type == "geo_point" || type == "flattened" { if !compatible(d, type!) { out.append("\(path): \(d) under \(type!)") }; return }
                if let type, type != "object", type != "nested" { out.append("\(path): an object where the template maps \(type)"); return }
                for (k, c) in d { check(c, "\(path).\(k)") }
                return
            }
            guard let type else { out.append("\(path): not mapped"); return }
            if !compatible(v, type) { out.append("\(path): \(v) is not compatible with \(type)") }
        }
        for (k, v) in event { check(v, k) }
        return out
    }

    func testArtefactsAreValidAndComplete() throws {
        let template = try Self.json("index-template.json")
        XCTAssertEqual(template["index_patterns"] as? [String], ["logs-spanwatch-*", "logs-spanwatch.*-*"])
        XCTAssertNotNil(template["data_stream"])
        let settings = try XCTUnwrap(((template["template"] as? [String: Any])?["settings"] as? [String: Any])?["index"] as? [String: Any])
        XCTAssertEqual(settings["default_pipeline"] as? String, "sensor-ingest")
        XCTAssertEqual((settings["lifecycle"] as? [String: Any])?["name"] as? String, "sensor-logs")
        // Every component the template names is shipped (and is ECS's own, byte for byte).
        for name in try XCTUnwrap(template["composed_of"] as? [String]) where name != "spanwatch_vendor" {
            let short = name.replacingOccurrences(of: "ecs_8.11.0_", with: "")
            let ours = try Data(contentsOf: Self.dir.appendingPathComponent("ecs/\(short).json"))
            let elastic = try Data(contentsOf: URL(fileURLWithPath: TestSupport.data("ecs/composable/component/\(short).json")))
            XCTAssertEqual(ours, elastic, name)
        }
        let pipeline = try Self.json("ingest-pipeline.json")
        let processors = try XCTUnwrap(pipeline["processors"] as? [[String: Any]])
        let sets = processors.compactMap { $0["set"] as? [String: Any] }
        XCTAssertTrue(sets.contains { $0["field"] as? String == "event.ingested" && ($0["value"] as? String ?? "").contains("_ingest.timestamp") })
        XCTAssertTrue(sets.contains { $0["field"] as? String == "_id" && $0["copy_from"] as? String == "event.id" })
        XCTAssertTrue(processors.contains { $0["reroute"] != nil })
        let ilm = try Self.json("ilm-policy.json")
        XCTAssertNotNil((ilm["policy"] as? [String: Any])?["phases"])
        // Fields the pipeline sets are mapped too.
        let m = try Self.mappings()
        for f in ["event.ingested", "data_stream.type", "data_stream.dataset", "data_stream.namespace", "error.message"] where f != "error.message" {
            XCTAssertNotNil(m[f], f)
        }
        XCTAssertEqual(m["spanwatch.stats.outputs"], "nested")
        XCTAssertEqual(m["spanwatch.beaconing.score"], "float")
        XCTAssertEqual(m["event.risk_score"], "float")
    }

    func testTemplateMapsEveryEmittedField() throws {
        let m = try Self.mappings()
        var problems: [String: Int] = [:]
        var checked = 0
        for run in SharedCaptureEvents.runs {
            for e in run.events {
                for p in Self.unmapped(e, m) { problems[p.components(separatedBy: ": ").first ?? p, default: 0] += 1; if problems.count < 20 { print(p) } }
                checked += 1
            }
        }
        XCTAssertEqual(problems, [:])
        XCTAssertGreaterThan(checked, 5000)
        // The check can fail: an unmapped field and a float written as an integer are both caught.
        XCTAssertEqual(Self.unmapped(["spanwatch": ["surprise": "x"]], m), ["spanwatch.surprise: not mapped"])
        XCTAssertEqual(Self.unmapped(["spanwatch": ["beaconing": ["score": NSNumber(value: 1)]]], m).count, 1)
    }

    /// A beacon so regular that its score is exactly 1: written `1.0` (not `1`) and mapped `float`, so the
    /// first document cannot make a store map the score as an integer.
    func testWholeBeaconScoreIsAFloat() throws {
        let dir = try TestSupport.temporaryDirectory("whole-beacon")
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("beacon.pcap").path
        try SyntheticTraffic.regularBeacon(connections: 48, every: 300).write(to: path)
        // Rules that score a pair only once it has the starts for the full count part, so the first
        // score of this schedule is exactly 1 (with the shipped rules it is scored, below 1, at 4 starts).
        let rules = dir.appendingPathComponent("rules")
        try FileManager.default.copyItem(at: TestSupport.repositoryRoot.appendingPathComponent("Rules"), to: rules)
        let beaconing = rules.appendingPathComponent("beaconing.yaml")
        let original = try String(contentsOf: beaconing, encoding: .utf8)
        XCTAssertTrue(original.contains("  min_starts: 4 "))
        try original.replacingOccurrences(of: "  min_starts: 4 ", with: "  min_starts: 24").write(to: beaconing, atomically: true, encoding: .utf8)
        let r = try TestSupport.sensor(["replay", "--rules", rules.path, path, "--log-level", "error"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let text = r.stdoutText
        let alert = try XCTUnwrap(try TestSupport.events(r).first { TestSupport.value($0, "rule.category") as? String == "beaconing" })
        let score = try XCTUnwrap(TestSupport.value(alert, "spanwatch.beaconing.score") as? Double)
        XCTAssertEqual(score, 1.0, "\(TestSupport.value(alert, "spanwatch.beaconing") ?? "")")
        XCTAssertTrue(text.contains("\"score\":1.0,"), "written with a fraction")
        XCTAssertTrue(ECSReference.isWrittenAsFloat(TestSupport.value(alert, "spanwatch.beaconing.score") as Any))
        XCTAssertTrue(ECSReference.isWrittenAsFloat(TestSupport.value(alert, "event.risk_score") as Any))
        XCTAssertEqual(try Self.mappings()["spanwatch.beaconing.score"], "float")
        XCTAssertEqual(Self.unmapped(alert, try Self.mappings()), [])
    }

    func testSavedObjectsReferenceOnlyMappedFields() throws {
        let m = try Self.mappings()
        let text = try String(contentsOf: Self.dir.appendingPathComponent("kibana/spanwatch-overview.ndjson"), encoding: .utf8)
        var fields: [String] = []
        var types: [String: Int] = [:]
        var ids = Set<String>()
        var references: [String] = []
        for line in text.split(separator: "\n") {
            let o = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            let type = try XCTUnwrap(o["type"] as? String)
            types[type, default: 0] += 1
            ids.insert(try XCTUnwrap(o["id"] as? String))
            references += (o["references"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }
            let attributes = try XCTUnwrap(o["attributes"] as? [String: Any])
            if let t = attributes["timeFieldName"] as? String { fields.append(t) }
            if let vs = attributes["visState"] as? String {
                let state = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(vs.utf8)) as? [String: Any])
                for a in state["aggs"] as? [[String: Any]] ?? [] {
                    if let f = (a["params"] as? [String: Any])?["field"] as? String { fields.append(f) }
                }
            }
            if let meta = attributes["kibanaSavedObjectMeta"] as? [String: Any], let ss = meta["searchSourceJSON"] as? String {
                let source = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(ss.utf8)) as? [String: Any])
                let query = ((source["query"] as? [String: Any])?["query"] as? String) ?? ""
                // KQL `field : value` terms.
                let regex = try NSRegularExpression(pattern: #"([A-Za-z0-9_@.]+)\s*:"#)
                for match in regex.matches(in: query, range: NSRange(query.startIndex..., in: query)) {
                    fields.append(String(query[Range(match.range(at: 1), in: query)!]))
                }
            }
        }
        XCTAssertEqual(types, ["index-pattern": 1, "visualization": 5, "dashboard": 1])
        XCTAssertTrue(Set(references).isSubset(of: ids), "every reference resolves inside the file")
        XCTAssertGreaterThan(fields.count, 15)
        for f in fields {
            let t = m[f]
            XCTAssertNotNil(t, "\(f) is not mapped")
            XCTAssertFalse(["text", "match_only_text", "object", "nested"].contains(t ?? ""), "\(f) (\(t ?? "")) cannot be aggregated on")
        }
    }
}
