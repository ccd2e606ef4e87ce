import Events
import Foundation
import Logging

/// Where events go, as written on the command line (`--output SPEC`, repeatable) or in YAML `outputs:`.
///
/// One parser for both, so a spec means the same thing wherever it is written. Network outputs are URLs
/// whose query carries their options (`kafka://k1:9092,k2:9092/events?compression.codec=zstd&key=source_ip`,
/// `syslog+tls://siem:6514?ca=/etc/ssl/ca.pem`), so the same string works as a flag and as a YAML item.
/// Any output takes `datasets=alert,dns,…` in its query: it then receives only those datasets.
public struct OutputSpec: Equatable, Sendable, CustomStringConvertible {
    public var target: OutputTarget
    /// nil: every event.
    public var datasets: DatasetFilter?

    public init(_ target: OutputTarget, datasets: DatasetFilter? = nil) {
        self.target = target
        self.datasets = datasets
    }

    public static let stdout = OutputSpec(.stdout)

    public init(parsing text: String) throws(OutputError) {
        var t = text.trimmedBlanks
        // `datasets=` belongs to every output: taken out of the query before the output's own parser sees it.
        var datasets: DatasetFilter?
        if let q = t.firstIndex(of: "?") {
            var kept: [Substring] = []
            for item in t[t.index(after: q)...].split(separator: "&") {
                guard item.hasPrefix("datasets=") else { kept.append(item); continue }
                do { datasets = try DatasetFilter.parse(String(item.dropFirst(9))) } catch {
                    throw .badSpec(text, reason: "datasets: '\(error.name)' is not a dataset (\(EventDataset.allCases.map(\.rawValue).joined(separator: ", ")))")
                }
            }
            t = String(t[..<q]) + (kept.isEmpty ? "" : "?" + kept.joined(separator: "&"))
        }
        self.init(try OutputTarget(parsing: t, spec: text), datasets: datasets)
    }

    public var description: String {
        target.description + (datasets.map { "?datasets=\($0)" } ?? "")
    }

    /// Opens the sink this spec names (behind the dataset filter when it has one). `logger` receives what
    /// the output's own libraries log (librdkafka); `sensorName` is the Kafka `sensor` header.
    public func makeSink(logger: Logger = Logger(label: "sensor.output"), sensorName: String? = nil) throws -> any EventSink {
        let sink = try target.makeSink(logger: logger, sensorName: sensorName)
        guard let datasets else { return sink }
        return DatasetFilterSink(sink, datasets: datasets)
    }
}

/// The kind of output and its own options.
public enum OutputTarget: Equatable, Sendable, CustomStringConvertible {
    case stdout
    case file(FileOutputOptions)
    case kafka(KafkaOutputOptions)
    case syslog(SyslogOutputOptions)
    /// Zeek JSON logs in hourly files under a directory (`zeek:DIR`).
    case zeek(directory: String)

    init(parsing t: String, spec text: String) throws(OutputError) {
        if t == "stdout" || t == "-" { self = .stdout; return }
        if t.hasPrefix("file:") {
            self = .file(try FileOutputOptions(spec: t, original: text))
            return
        }
        if t.hasPrefix("zeek:") {
            let dir = String(t.dropFirst(5))
            guard !dir.isEmpty else { throw .badSpec(text, reason: "zeek: needs a directory") }
            guard !dir.contains("?") else { throw .badSpec(text, reason: "zeek: takes no options but datasets=") }
            self = .zeek(directory: dir)
            return
        }
        if t.hasPrefix("kafka://") {
            self = .kafka(try KafkaOutputOptions(url: t))
            return
        }
        if t.hasPrefix("syslog+") {
            self = .syslog(try SyslogOutputOptions(url: t))
            return
        }
        if t.hasPrefix("stdout?") || t.hasPrefix("-?") { throw .badSpec(text, reason: "stdout takes no options but datasets=") }
        throw .badSpec(text, reason: "expected stdout, file:PATH, zeek:DIR, kafka://HOST:PORT[,HOST:PORT]/TOPIC or syslog+{udp,tcp,tls}://HOST:PORT")
    }

    public var description: String {
        switch self {
        case .stdout: return "stdout"
        case .file(let f): return f.description
        case .kafka(let k): return k.description
        case .syslog(let s): return s.description
        case .zeek(let d): return "zeek:\(d)"
        }
    }

    func makeSink(logger: Logger, sensorName: String?) throws -> any EventSink {
        switch self {
        case .stdout: return StreamSink.standardOutput()
        case .file(let options): return try StreamSink.file(options)
        case .kafka(let options): return try KafkaSink(options: options, sensorName: sensorName, logger: logger)
        case .syslog(let options): return try SyslogSink(options: options)
        case .zeek(let directory): return try ZeekSink(directory: directory)
        }
    }
}

/// The pieces of `scheme://AUTHORITY/PATH?QUERY` that the network outputs use.
struct OutputURL {
    var scheme: String
    var authority: String
    var path: String
    /// Query items in order, percent-decoded (a SASL password may contain `&` or `=`).
    var query: [(String, String)]

    init(_ text: String) throws(OutputError) {
        guard let schemeEnd = text.range(of: "://") else { throw .badSpec(text, reason: "expected SCHEME://…") }
        scheme = String(text[..<schemeEnd.lowerBound])
        var rest = text[schemeEnd.upperBound...]
        var queryText: Substring = ""
        if let q = rest.firstIndex(of: "?") {
            queryText = rest[rest.index(after: q)...]
            rest = rest[..<q]
        }
        if let slash = rest.firstIndex(of: "/") {
            authority = String(rest[..<slash])
            path = String(rest[rest.index(after: slash)...])
        } else {
            authority = String(rest)
            path = ""
        }
        query = []
        for item in queryText.split(separator: "&") where !item.isEmpty {
            guard let eq = item.firstIndex(of: "=") else { throw .badSpec(text, reason: "query item '\(item)' needs a value (name=value)") }
            guard let k = OutputURL.percentDecoded(item[..<eq]), let v = OutputURL.percentDecoded(item[item.index(after: eq)...]) else {
                throw .badSpec(text, reason: "bad percent-encoding in '\(item)'")
            }
            query.append((k, v))
        }
    }

    static func percentDecoded(_ s: Substring) -> String? {
        guard s.contains("%") else { return String(s) }
        var out: [UInt8] = []
        var it = Array(s.utf8)[...]
        while let c = it.popFirst() {
            if c != 37 { out.append(c); continue }
            guard it.count >= 2, let h = hex(it.removeFirst()), let l = hex(it.removeFirst()) else { return nil }
            out.append(h << 4 | l)
        }
        return String(validating: out, as: UTF8.self)
    }

    static func hex(_ c: UInt8) -> UInt8? {
        switch c {
        case 48...57: return c - 48
        case 65...70: return c - 55
        case 97...102: return c - 87
        default: return nil
        }
    }

    /// Splits `host:port` or `[v6]:port`.
    static func hostPort(_ s: Substring, spec: String) throws(OutputError) -> (host: String, port: Int) {
        var host: Substring, portText: Substring
        if s.hasPrefix("[") {
            guard let close = s.firstIndex(of: "]") else { throw .badSpec(spec, reason: "unclosed '[' in '\(s)'") }
            host = s[s.index(after: s.startIndex)..<close]
            let after = s[s.index(after: close)...]
            guard after.hasPrefix(":") else { throw .badSpec(spec, reason: "'\(s)' needs a port") }
            portText = after.dropFirst()
        } else {
            guard let colon = s.lastIndex(of: ":") else { throw .badSpec(spec, reason: "'\(s)' needs a port (HOST:PORT)") }
            host = s[..<colon]
            portText = s[s.index(after: colon)...]
        }
        guard !host.isEmpty else { throw .badSpec(spec, reason: "'\(s)' needs a host") }
        guard let port = Int(portText), (1...65535).contains(port) else { throw .badSpec(spec, reason: "'\(portText)' is not a port") }
        return (String(host), port)
    }

    /// The longest duration an output option takes (one day).
    static let maxSeconds = 86_400.0

    static func seconds(_ v: String, name: String, spec: String) throws(OutputError) -> Double {
        var t = Substring(v)
        var scale = 1.0
        if t.hasSuffix("ms") { t = t.dropLast(2); scale = 0.001 } else if t.hasSuffix("s") { t = t.dropLast() }
        guard let d = Double(t), d >= 0, d.isFinite else { throw .badSpec(spec, reason: "\(name) '\(v)' is not a duration (e.g. 10s, 500ms)") }
        // Bounded so every use (milliseconds as Int, deadlines on a clock) is representable.
        guard d * scale <= maxSeconds else { throw .badSpec(spec, reason: "\(name) '\(v)' is longer than \(Int(maxSeconds)) s") }
        return d * scale
    }

    static func bytes(_ v: String, name: String, spec: String) throws(OutputError) -> UInt64 {
        var t = Substring(v.uppercased())
        var scale: UInt64 = 1
        for (suffix, s) in [("KIB", 1 << 10), ("MIB", 1 << 20), ("GIB", 1 << 30), ("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30)] where t.hasSuffix(suffix) {
            t = t.dropLast(suffix.count); scale = UInt64(s); break
        }
        guard let n = UInt64(t), n.multipliedReportingOverflow(by: scale).overflow == false else {
            throw .badSpec(spec, reason: "\(name) '\(v)' is not a size (e.g. 512MiB)")
        }
        return n * scale
    }
}

extension String {
    /// The string without leading and trailing blanks and tabs.
    var trimmedBlanks: String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return String(s)
    }
}
