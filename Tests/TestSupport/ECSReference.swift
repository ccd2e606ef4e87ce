import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// ECS itself, read from Elastic's `ecs_flat.yml` (../shared/data/ecs, ECS 8.11.0), and a strict check of
/// events against it: every field that is not under the one vendor namespace must be an ECS field with
/// ECS's type, an array exactly where ECS normalises to arrays, and one of ECS's allowed values where it
/// lists them (`event.kind`, `event.category`, `event.type`, `event.outcome`).
public struct ECSReference {
    public struct Field {
        public var type = ""
        public var isArray = false
        public var allowed: Set<String> = []
    }

    /// The vendor namespace every non-ECS field lives under.
    public static let vendorNamespace = "spanwatch"

    public var fields: [String: Field] = [:]
    /// Every proper prefix of an ECS field name (`source`, `source.geo`, …).
    var prefixes: Set<String> = []

    public static func load() throws -> ECSReference {
        let text = try String(contentsOfFile: TestSupport.data("ecs/ecs_flat.yml"), encoding: .utf8)
        var ref = ECSReference()
        var current: String?
        var block = ""  // the two-space key whose list is being read (`normalize`, `allowed_values`)
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = String(raw)
            if let first = line.first, first != " " {
                guard line.hasSuffix(":") else { continue }
                var name = String(line.dropLast())
                if name.hasPrefix("'") { name = String(name.dropFirst().dropLast()) }
                current = name
                ref.fields[name] = Field()
                block = ""
                continue
            }
            guard let c = current else { continue }
            if line.hasPrefix("  ") && !line.hasPrefix("   ") {
                let body = line.dropFirst(2)
                if body.hasPrefix("- ") {
                    if block == "normalize", body == "- array" { ref.fields[c]!.isArray = true }
                    if block == "allowed_values", body.hasPrefix("- name: ") { ref.fields[c]!.allowed.insert(String(body.dropFirst(8))) }
                    continue
                }
                if body.hasPrefix("type: ") { ref.fields[c]!.type = String(body.dropFirst(6)) }
                block = body.hasSuffix(":") ? String(body.dropLast()) : ""
                continue
            }
            if block == "allowed_values", line.hasPrefix("    name: ") {
                ref.fields[c]!.allowed.insert(String(line.dropFirst(10)))
            }
        }
        for name in ref.fields.keys {
            var parts = name.split(separator: ".").map(String.init)
            while parts.count > 1 { parts.removeLast(); ref.prefixes.insert(parts.joined(separator: ".")) }
        }
        return ref
    }

    // MARK: JSON value kinds (JSONSerialization keeps how a number was written)

    public static func isBoolean(_ v: Any) -> Bool { String(describing: type(of: v)).contains("Boolean") }
    /// A number written without fraction or exponent.
    public static func isInteger(_ v: Any) -> Bool {
        guard let n = v as? NSNumber, !isBoolean(v) else { return false }
        let t = String(cString: n.objCType)
        return t != "d" && t != "f"
    }
    /// A number written with a fraction or exponent (`55.0`, `0.88`).
    public static func isWrittenAsFloat(_ v: Any) -> Bool {
        guard let n = v as? NSNumber, !isBoolean(v) else { return false }
        let t = String(cString: n.objCType)
        return t == "d" || t == "f"
    }

    static func isIP(_ v: Any) -> Bool {
        guard let s = v as? String else { return false }
        var buf = [UInt8](repeating: 0, count: 16)
        return inet_pton(AF_INET, s, &buf) == 1 || inet_pton(AF_INET6, s, &buf) == 1
    }

    /// Whether one (non-array) value has the ECS type.
    static func conforms(_ v: Any, to type: String) -> Bool {
        switch type {
        case "keyword", "constant_keyword", "wildcard", "match_only_text", "text": return v is String
        case "long", "integer", "short", "byte": return isInteger(v)
        case "float", "scaled_float", "double", "half_float": return isWrittenAsFloat(v)
        case "boolean": return isBoolean(v)
        case "ip": return isIP(v)
        case "date":
            guard let s = v as? String else { return false }
            return s.count >= 20 && s.hasSuffix("Z") && s.dropFirst(10).first == "T"
        case "geo_point":
            guard let d = v as? [String: Any], let lat = d["lat"], let lon = d["lon"] else { return false }
            return (isWrittenAsFloat(lat) || isInteger(lat)) && (isWrittenAsFloat(lon) || isInteger(lon)) && d.count == 2
        case "flattened", "object", "nested": return v is [String: Any]
        default: return false
        }
    }

    /// Every ECS problem of one event; empty when it conforms.
    public func problems(_ event: [String: Any]) -> [String] {
        var out: [String] = []
        for (k, v) in event { check(v, path: k, into: &out) }
        return out
    }

    func check(_ v: Any, path: String, into out: inout [String]) {
        if path == Self.vendorNamespace || path.hasPrefix(Self.vendorNamespace + ".") { return }
        if let f = fields[path] {
            if let a = v as? [Any] {
                if !f.isArray { out.append("\(path): an array, but ECS does not normalise it to one") }
                for e in a { checkLeaf(e, path: path, f, into: &out) }
            } else {
                if f.isArray { out.append("\(path): ECS normalises it to an array") }
                checkLeaf(v, path: path, f, into: &out)
            }
            return
        }
        guard prefixes.contains(path) else {
            out.append("\(path): not an ECS field and not under the vendor namespace `\(Self.vendorNamespace)`")
            return
        }
        guard let d = v as? [String: Any] else {
            out.append("\(path): ECS has fields under it, so it must be an object, not \(v)")
            return
        }
        for (k, child) in d { check(child, path: "\(path).\(k)", into: &out) }
    }

    func checkLeaf(_ v: Any, path: String, _ f: Field, into out: inout [String]) {
        switch f.type {
        case "object", "nested":
            // Objects ECS defines members for (dns.answers, threat.enrichments): members are checked as ECS fields.
            guard let d = v as? [String: Any] else { out.append("\(path): not an object: \(v)"); return }
            for (k, child) in d { check(child, path: "\(path).\(k)", into: &out) }
            return
        default: break
        }
        if !Self.conforms(v, to: f.type) { out.append("\(path): not an ECS \(f.type): \(v)") }
        if !f.allowed.isEmpty, let s = v as? String, !f.allowed.contains(s) {
            out.append("\(path): \(s) is not one of ECS's allowed values \(f.allowed.sorted())")
        }
    }
}
