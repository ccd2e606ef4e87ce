import Foundation

/// One parsed event (an ECS JSON object) with dotted-path reads. Every read is Optional and checks
/// its type: events from a file may be anyone's.
struct EventObject {
    let fields: [String: Any]

    init(_ fields: [String: Any]) { self.fields = fields }

    /// Parses one NDJSON line; nil when it is not a JSON object.
    init?(line: UnsafeRawBufferPointer) {
        guard !line.isEmpty else { return nil }
        let data = Data(bytes: line.baseAddress!, count: line.count)
        guard let o = try? JSONSerialization.jsonObject(with: data, options: []) as? [String: Any] else { return nil }
        fields = o
    }

    func value(_ path: String) -> Any? {
        var current: Any = fields
        for part in path.split(separator: ".", omittingEmptySubsequences: false) {
            guard let o = current as? [String: Any], let next = o[String(part)] else { return nil }
            current = next
        }
        return current
    }

    func string(_ path: String) -> String? { value(path) as? String }

    func int(_ path: String) -> Int64? {
        if let s = value(path) as? String { return Int64(s) }
        guard let d = Self.number(value(path)), d >= -9.2e18, d <= 9.2e18 else { return nil }
        return Int64(d)
    }

    func double(_ path: String) -> Double? { Self.number(value(path)) }

    func bool(_ path: String) -> Bool? {
        guard let v = value(path), Self.isBoolean(v) else { return nil }
        return (v as? NSNumber)?.boolValue
    }

    /// JSON `true`/`false`: Foundation returns them as NSNumber too (and `1 as? Bool` succeeds), so the
    /// number's encoding tells them apart (`c`, a char, only for booleans).
    static func isBoolean(_ v: Any) -> Bool {
        guard let n = v as? NSNumber else { return false }
        return String(cString: n.objCType) == "c"
    }

    /// A JSON number (not a boolean) as a finite Double.
    static func number(_ v: Any?) -> Double? {
        guard let v, !isBoolean(v), !(v is String), let n = v as? NSNumber else { return nil }
        let d = n.doubleValue
        return d.isFinite ? d : nil
    }

    /// A keyword or keyword array as an array.
    func strings(_ path: String) -> [String] {
        switch value(path) {
        case let a as [Any]: return a.compactMap { $0 as? String }
        case let s as String: return [s]
        default: return []
        }
    }

    func object(_ path: String) -> EventObject? { (value(path) as? [String: Any]).map(EventObject.init) }

    func time(_ path: String) -> Int64? { string(path).flatMap(EventTime.parse) }

    var dataset: String { string("event.dataset") ?? "" }
    var kind: String { string("event.kind") ?? "" }
    var timestamp: Int64? { time("@timestamp") }

    /// Numeric leaves as `path: value`, in key order (for counters whose set varies by version).
    func numericLeaves(prefix: String = "") -> [(String, Int64)] {
        var out: [(String, Int64)] = []
        func walk(_ v: Any, _ p: String) {
            if let o = v as? [String: Any] {
                for k in o.keys.sorted() { walk(o[k]!, p.isEmpty ? k : p + "." + k) }
            } else if let d = Self.number(v), abs(d) < 9e18 {
                out.append((p, Int64(d)))
            }
        }
        walk(fields, prefix)
        return out
    }
}
