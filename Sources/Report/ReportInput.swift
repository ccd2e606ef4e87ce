import Crypto
import Events
import Foundation

/// A file the report names, with its size and SHA-256 (captures, event files, rules).
public struct DigestedFile: Sendable {
    public var path: String
    public var size: Int64
    public var sha256: String

    /// Reads the file in 1 MiB blocks.
    public init(path: String) throws {
        guard let h = FileHandle(forReadingAtPath: path) else { throw ReportError("cannot read \(path)") }
        defer { try? h.close() }
        var hasher = SHA256()
        var size: Int64 = 0
        while let block = try h.read(upToCount: 1 << 20), !block.isEmpty {
            hasher.update(data: block)
            size += Int64(block.count)
        }
        self.path = path
        self.size = size
        sha256 = hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }
}

public struct ReportError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ d: String) { description = d }
}

/// Where the report's events came from, shown in its summary.
public struct ReportProvenance: Sendable {
    public var captures: [DigestedFile] = []
    public var eventFiles: [DigestedFile] = []
    public var rulesDirectory: String?
    public var rulesFiles: [DigestedFile] = []
    /// The sensor that wrote the report (events carry their own `observer.version`).
    public var reportVersion: String
    public init(reportVersion: String) { self.reportVersion = reportVersion }
}

/// Keeps a replay's events in memory for the report: one copy of each JSON object, newline-separated,
/// parsed after the run (so parsing stays off the packet path). Events arrive on the pipeline thread(s).
public final class EventCollector: EventSink, @unchecked Sendable {
    public let name = "report"
    private let lock = NSLock()
    private var buffer: [UInt8] = []
    private var stats = SinkStatistics()

    public init() {}

    public func write(_ json: UnsafeRawBufferPointer, metadata: EventMetadata) {
        lock.lock()
        buffer.append(contentsOf: json)
        buffer.append(0x0A)
        stats.accepted &+= 1
        stats.delivered &+= 1
        lock.unlock()
    }

    public func flush() throws {}
    public func close() throws {}
    public var statistics: SinkStatistics { lock.lock(); defer { lock.unlock() }; return stats }

    /// The collected events as NDJSON.
    public func withEvents<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        lock.lock(); defer { lock.unlock() }
        return try buffer.withUnsafeBytes(body)
    }
}
