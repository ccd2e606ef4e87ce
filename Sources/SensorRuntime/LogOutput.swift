import Foundation
import Logging

/// How the sensor's own log lines look on standard error (`--log-format`, `logging.format`).
public enum LogFormat: String, CaseIterable, Sendable {
    /// `2026-12-07T05:25:24.123Z info replay finished packets=12 bytes=3456`
    case text
    /// One JSON object per line (`@timestamp`, `log.level`, `log.logger`, `message`, then the metadata).
    case json
}

/// The log handler every command bootstraps: text or JSON lines on standard error, with a `<N>` syslog
/// priority prefix when standard error is the journal's stream (systemd sets `JOURNAL_STREAM` to its
/// device and inode), so `journalctl -p warning` selects by level; the journal stamps the time itself.
/// Decimal figures in metadata are rounded to three places (a CPU time is not worth nine digits).
public struct SensorLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    let label: String
    let format: LogFormat
    let journald: Bool

    public init(label: String, format: LogFormat, journald: Bool = SensorLogHandler.stderrIsJournal()) {
        self.label = label
        self.format = format
        self.journald = journald
    }

    /// Installs the handler for every logger made after it (once per process; later calls do nothing).
    public static func bootstrap(format: LogFormat) {
        bootstrapLock.lock()
        defer { bootstrapLock.unlock() }
        guard !bootstrapped else { return }
        bootstrapped = true
        LoggingSystem.bootstrap { SensorLogHandler(label: $0, format: format) }
    }
    static let bootstrapLock = NSLock()
    /// Guarded by `bootstrapLock`.
    nonisolated(unsafe) static var bootstrapped = false

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        let line = render(level: event.level, message: "\(event.message)", metadata: merged, date: Date())
        var out = line
        out.append("\n")
        fputs(out, stderr)
    }

    /// One log line, without its newline.
    func render(level: Logger.Level, message: String, metadata: Logger.Metadata, date: Date) -> String {
        let prefix = journald ? "<\(Self.syslogPriority(level))>" : ""
        let pairs = metadata.sorted { $0.key < $1.key }.map { ($0.key, Self.rounded("\($0.value)")) }
        switch format {
        case .text:
            var s = prefix
            if !journald { s += Self.timestamp(date) + " " }
            s += "\(level) \(message)"
            for (k, v) in pairs { s += " \(k)=\(v.contains(" ") || v.isEmpty ? Self.quoted(v) : v)" }
            return s
        case .json:
            var s = prefix + "{\"@timestamp\":\"\(Self.timestamp(date))\",\"log.level\":\"\(level)\",\"log.logger\":\(Self.quoted(label)),\"message\":\(Self.quoted(message))"
            for (k, v) in pairs { s += ",\(Self.quoted(k)):\(Self.quoted(v))" }
            return s + "}"
        }
    }

    /// RFC 5424 severities: what journald reads from a `<N>` prefix.
    static func syslogPriority(_ l: Logger.Level) -> Int {
        switch l {
        case .trace, .debug: return 7
        case .info: return 6
        case .notice: return 5
        case .warning: return 4
        case .error: return 3
        case .critical: return 2
        }
    }

    /// Whether standard error is the journal's stream: `JOURNAL_STREAM=DEV:INODE` names it (a child
    /// whose stderr was redirected keeps the variable but not the stream).
    public static func stderrIsJournal(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> Bool {
        guard let v = environment["JOURNAL_STREAM"] else { return false }
        let parts = v.split(separator: ":")
        guard parts.count == 2, let dev = UInt64(parts[0]), let ino = UInt64(parts[1]) else { return false }
        var st = stat()
        guard fstat(2, &st) == 0 else { return false }
        return UInt64(st.st_dev) == dev && UInt64(st.st_ino) == ino
    }

    /// A decimal with more than three fractional digits, rounded to three (`0.123456789` → `0.123`).
    static func rounded(_ v: String) -> String {
        guard let dot = v.firstIndex(of: "."), v.distance(from: dot, to: v.endIndex) > 4,
              v.allSatisfy({ $0.isNumber || $0 == "." || $0 == "-" }), let d = Double(v), d.isFinite else { return v }
        return String(format: "%.3f", d)
    }

    static func timestamp(_ d: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: d)
    }

    static func quoted(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where u.value < 0x20: out += String(format: "\\u%04x", u.value)
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }
}
