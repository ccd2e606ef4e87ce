import Yams

#if canImport(Glibc)
import Glibc
#endif

/// One problem found in a config or rules file, located by line and column.
public struct ConfigIssue: Error, CustomStringConvertible, Sendable, Equatable {
    public var file: String
    public var line: Int
    public var column: Int
    public var message: String

    public init(file: String, line: Int, column: Int, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.message = message
    }

    public var description: String { "\(file):\(line):\(column): \(message)" }
}

/// Several issues at once: a config is checked completely, not up to its first mistake.
public struct ConfigIssues: Error, CustomStringConvertible, Sendable {
    public var issues: [ConfigIssue]
    /// Issues in file order, so they read top to bottom like the file.
    public init(_ issues: [ConfigIssue]) {
        self.issues = issues.sorted { ($0.file, $0.line, $0.column) < ($1.file, $1.line, $1.column) }
    }
    public var description: String { issues.map(\.description).joined(separator: "\n") }
}

/// A YAML value with its position, for configs and rules that report mistakes by line number.
///
/// The sensor's config and every file under `Rules/` go through this one reader, so they report
/// errors the same way (`file:line:column: message`).
public struct ConfigValue {
    public let node: Node
    public let file: String
    /// Dotted path from the document root, for messages (`flows.timeouts.tcp`).
    public let path: String

    public var line: Int { node.mark?.line ?? 0 }
    public var column: Int { node.mark?.column ?? 0 }

    public var isMapping: Bool { node.mapping != nil }
    public var isSequence: Bool { node.sequence != nil }
    public var isNull: Bool { node.scalar.map { $0.tag == Tag(.null) || $0.string == "" || $0.string == "~" || $0.string == "null" } ?? false }

    /// The scalar text, if this is a scalar.
    public var scalarText: String? { node.scalar?.string }

    /// Mapping entries in file order.
    public var entries: [(key: String, value: ConfigValue)]? {
        guard let m = node.mapping else { return nil }
        return m.map { (k, v) in
            let key = k.scalar?.string ?? "\(k)"
            return (key, ConfigValue(node: v, file: file, path: path.isEmpty ? key : "\(path).\(key)"))
        }
    }

    /// Sequence items in order.
    public var items: [ConfigValue]? {
        guard let s = node.sequence else { return nil }
        return s.enumerated().map { ConfigValue(node: $1, file: file, path: "\(path)[\($0)]") }
    }

    public func issue(_ message: String) -> ConfigIssue {
        ConfigIssue(file: file, line: line, column: column, message: path.isEmpty ? message : "\(path): \(message)")
    }
}

public enum YAMLDocument {
    /// Parses YAML text. Syntax errors carry the line and column libyaml reports.
    public static func parse(_ text: String, file: String) throws(ConfigIssue) -> ConfigValue? {
        do {
            guard let root = try Yams.compose(yaml: text) else { return nil }
            return ConfigValue(node: root, file: file, path: "")
        } catch let error as YamlError {
            switch error {
            case let .scanner(context, problem, mark, _), let .parser(context, problem, mark, _), let .composer(context, problem, mark, _):
                let ctx = context.map { "\($0.text) " } ?? ""
                throw ConfigIssue(file: file, line: mark.line, column: mark.column, message: "YAML syntax: \(ctx)\(problem)")
            default:
                throw ConfigIssue(file: file, line: 0, column: 0, message: "YAML: \(error)")
            }
        } catch {
            throw ConfigIssue(file: file, line: 0, column: 0, message: "YAML: \(error)")
        }
    }

    /// Reads and parses a file. `optional`: a file that does not exist gives nil (the caller's defaults);
    /// a file that exists but cannot be read is an error all the same.
    public static func load(path: String, optional: Bool = false) throws(ConfigIssue) -> ConfigValue? {
        guard let text = try readTextFile(path, optional: optional) else { return nil }
        return try parse(text, file: path)
    }

    /// Reads a whole regular file as UTF-8 (invalid bytes replaced) through `BoundedFile`.
    /// `optional`: nil when the file does not exist (ENOENT only). Every other failure is an issue
    /// naming the file.
    public static func readTextFile(_ path: String, optional: Bool = false, limit: Int = BoundedFile.defaultLimit) throws(ConfigIssue) -> String? {
        do {
            return String(decoding: try BoundedFile.read(path, limit: limit), as: UTF8.self)
        } catch .missing where optional {
            return nil
        } catch {
            throw ConfigIssue(file: path, line: 0, column: 0, message: error.description)
        }
    }
}

/// Typed reads from `ConfigValue`s that collect issues instead of stopping at the first.
public struct ConfigReader {
    public private(set) var issues: [ConfigIssue] = []

    public init() {}

    public mutating func report(_ issue: ConfigIssue) { issues.append(issue) }
    public mutating func report(_ v: ConfigValue, _ message: String) { issues.append(v.issue(message)) }

    /// The entries of a mapping, reporting keys outside `allowed` (typos must not pass silently).
    public mutating func table(_ v: ConfigValue, allowed: Set<String>) -> [String: ConfigValue] {
        if v.isNull { return [:] }
        guard let entries = v.entries else {
            report(v, "expected a mapping")
            return [:]
        }
        var out: [String: ConfigValue] = [:]
        for (k, value) in entries {
            if !allowed.contains(k) {
                report(value, "unknown key '\(k)' (allowed: \(allowed.sorted().joined(separator: ", ")))")
                continue
            }
            if out[k] != nil { report(value, "duplicate key '\(k)'") }
            out[k] = value
        }
        return out
    }

    public mutating func string(_ v: ConfigValue?) -> String? {
        guard let v else { return nil }
        guard let s = v.scalarText, !v.isMapping, !v.isSequence else { report(v, "expected a string"); return nil }
        return s
    }

    public mutating func int(_ v: ConfigValue?, in range: ClosedRange<Int> = Int.min...Int.max) -> Int? {
        guard let v else { return nil }
        guard let s = v.scalarText, let i = Int(s) else { report(v, "expected an integer"); return nil }
        guard range.contains(i) else { report(v, "must be between \(range.lowerBound) and \(range.upperBound), got \(i)"); return nil }
        return i
    }

    public mutating func double(_ v: ConfigValue?, in range: ClosedRange<Double> = -Double.greatestFiniteMagnitude...Double.greatestFiniteMagnitude) -> Double? {
        guard let v else { return nil }
        guard let s = v.scalarText, let d = Double(s), d.isFinite else { report(v, "expected a number"); return nil }
        guard range.contains(d) else { report(v, "must be between \(range.lowerBound) and \(range.upperBound), got \(d)"); return nil }
        return d
    }

    public mutating func bool(_ v: ConfigValue?) -> Bool? {
        guard let v else { return nil }
        switch v.scalarText?.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: report(v, "expected true or false"); return nil
        }
    }

    /// A list of strings; a single scalar counts as a one-item list.
    public mutating func stringList(_ v: ConfigValue?) -> [String]? {
        guard let v else { return nil }
        if v.isNull { return [] }
        if let items = v.items { return items.compactMap { string($0) } }
        if let s = string(v) { return [s] }
        return nil
    }

    /// Seconds (a number, optionally with an `s`, `m`, `h` or `d` suffix).
    public mutating func seconds(_ v: ConfigValue?, in range: ClosedRange<Double> = 0...Double.greatestFiniteMagnitude) -> Double? {
        guard let v else { return nil }
        guard var s = v.scalarText, !s.isEmpty else { report(v, "expected a duration such as 30, 30s, 5m, 1h"); return nil }
        var mult = 1.0
        switch s.last {
        case "s": s.removeLast()
        case "m": s.removeLast(); mult = 60
        case "h": s.removeLast(); mult = 3600
        case "d": s.removeLast(); mult = 86400
        default: break
        }
        guard let d = Double(s), d.isFinite else { report(v, "expected a duration such as 30, 30s, 5m, 1h"); return nil }
        let total = d * mult
        guard range.contains(total) else { report(v, "must be between \(range.lowerBound) and \(range.upperBound) seconds, got \(total)"); return nil }
        return total
    }
}
