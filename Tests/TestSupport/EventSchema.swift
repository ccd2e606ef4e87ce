import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The event schema as documented in docs/SCHEMA.md, read from its tables, so the documentation and the
/// events cannot drift apart without a test failing.
public struct EventSchema {
    public struct Field {
        public var path: String
        public var type: String
        public var required: Bool
    }
    public struct Section {
        public var fields: [Field] = []
        public var closed: [String] = []
    }
    public var sections: [String: Section] = [:]

    public static func load() throws -> EventSchema {
        let text = try String(contentsOf: TestSupport.repositoryRoot.appendingPathComponent("docs/SCHEMA.md"), encoding: .utf8)
        var schema = EventSchema()
        var current: String?
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("## ") {
                let title = line.dropFirst(3).trimmingCharacters(in: .whitespaces)
                if title.hasPrefix("Common") { current = "common" }
                else if title.hasPrefix("spanwatch.") { current = String(title.split(separator: " ")[0]) }
                else { current = nil }
                if let c = current, schema.sections[c] == nil { schema.sections[c] = Section() }
                continue
            }
            guard let c = current else { continue }
            if line.hasPrefix("Closed namespaces:") {
                let names = line.split(separator: "`").enumerated().filter { $0.offset % 2 == 1 }.map { String($0.element) }
                schema.sections[c]!.closed.append(contentsOf: names)
                continue
            }
            guard line.hasPrefix("| `") else { continue }
            let cells = line.split(separator: "|", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            guard cells.count >= 4 else { continue }
            let path = cells[1].trimmingCharacters(in: CharacterSet(charactersIn: "`"))
            schema.sections[c]!.fields.append(Field(path: path, type: cells[2], required: cells[3] == "yes"))
        }
        return schema
    }

    /// Every leaf path of an event (objects flattened with dots; arrays are leaves).
    public static func leaves(_ value: Any, prefix: String = "") -> [(String, Any)] {
        guard let d = value as? [String: Any] else { return [(prefix, value)] }
        return d.flatMap { k, v in leaves(v, prefix: prefix.isEmpty ? k : "\(prefix).\(k)") }
    }

    /// Problems with one event; empty when it conforms.
    public func problems(_ event: [String: Any]) -> [String] {
        guard let dataset = TestSupport.value(event, "event.dataset") as? String else { return ["no event.dataset"] }
        guard let specific = sections[dataset] else { return ["dataset \(dataset) is not documented in docs/SCHEMA.md"] }
        let common = sections["common"] ?? Section()
        var fields: [String: Field] = [:]
        for f in common.fields + specific.fields { fields[f.path] = f }
        var out: [String] = []
        for f in fields.values {
            let v = TestSupport.value(event, f.path)
            if v == nil {
                if f.required { out.append("\(dataset): missing required \(f.path)") }
                continue
            }
            if !Self.conforms(v!, to: f.type) { out.append("\(dataset): \(f.path) is not a \(f.type): \(v!)") }
        }
        let closed = common.closed + specific.closed
        for (path, _) in Self.leaves(event) where closed.contains(where: { path == $0 || path.hasPrefix($0 + ".") }) {
            if fields[path] == nil { out.append("\(dataset): \(path) is in a closed namespace but not documented") }
        }
        return out
    }

    static func conforms(_ v: Any, to type: String) -> Bool {
        let isBool = (v as AnyObject) === (true as AnyObject) || (v as AnyObject) === (false as AnyObject) || v is Bool && !(v is Int)
        switch type {
        case "keyword": return v is String
        case "keyword[]": return (v as? [Any])?.allSatisfy { $0 is String } ?? false
        case "long": return v is Int && !isBool && !(v is Double && (v as! Double) != (v as! Double).rounded())
        case "long[]":
            return (v as? [Any])?.allSatisfy { e in
                e is Int && (e as AnyObject) !== (true as AnyObject) && (e as AnyObject) !== (false as AnyObject)
            } ?? false
        case "ip[]": return (v as? [Any])?.allSatisfy { conforms($0, to: "ip") } ?? false
        case "float": return v is Double || v is Int
        case "boolean": return v is Bool
        case "object": return v is [String: Any]
        case "object[]": return (v as? [Any])?.allSatisfy { $0 is [String: Any] } ?? false
        case "date":
            guard let s = v as? String else { return false }
            return s.count == 27 && s.hasSuffix("Z") && s.dropFirst(10).first == "T"
        case "ip":
            guard let s = v as? String else { return false }
            var buf = [UInt8](repeating: 0, count: 16)
            return inet_pton(AF_INET, s, &buf) == 1 || inet_pton(AF_INET6, s, &buf) == 1
        default: return false
        }
    }
}
