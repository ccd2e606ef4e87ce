import PacketCore

/// ECS `event.kind` values the sensor emits.
public enum EventKind: UInt8, Sendable {
    case event, alert, metric, state

    public var name: StaticString {
        switch self {
        case .event: return "event"
        case .alert: return "alert"
        case .metric: return "metric"
        case .state: return "state"
        }
    }
}

/// What a sink may route on without parsing the JSON: Kafka picks a topic and key, syslog a PRI and MSGID.
public struct EventMetadata: Sendable {
    /// `event.dataset`, e.g. `spanwatch.flow`.
    public var dataset: StaticString
    public var kind: EventKind
    /// `event.severity`: 0 for ordinary events, 1 low … 4 critical for alerts (see docs/SCHEMA.md).
    public var severity: Int
    public var timestamp: Timestamp
    /// `source.ip` of the event, when it has one (partition affinity by host).
    public var sourceIP: IPAddress?
    /// Where the `network.community_id` value sits inside the JSON bytes, when present (partition affinity by flow).
    public var communityIDRange: Range<Int>?

    public init(dataset: StaticString, kind: EventKind, severity: Int = 0, timestamp: Timestamp,
                sourceIP: IPAddress? = nil, communityIDRange: Range<Int>? = nil) {
        self.dataset = dataset
        self.kind = kind
        self.severity = severity
        self.timestamp = timestamp
        self.sourceIP = sourceIP
        self.communityIDRange = communityIDRange
    }

    public var datasetString: String { dataset.description }
}

/// Delivery counters every sink keeps; published as metrics and in the final summary.
///
/// `failed` counts delivery attempts that failed (Kafka re-spools those; stdout, file and syslog cannot
/// retry them); `dropped` counts events lost for good, whatever the cause (write error, full queue or
/// spool, closed sink), so an output lost events exactly when `dropped > 0`.
public struct SinkStatistics: Sendable, Equatable {
    public var accepted: UInt64 = 0
    public var delivered: UInt64 = 0
    public var failed: UInt64 = 0
    public var spooled: UInt64 = 0
    public var dropped: UInt64 = 0
    /// Of `dropped`, the alerts (a full Kafka spool drops every other event before an alert).
    public var droppedAlerts: UInt64 = 0
    public var spoolBytes: UInt64 = 0
    public init() {}
}

/// The seam between the pipeline and the outside world (stdout, file, Kafka, syslog, …).
///
/// Shaped after swift-log's `LogHandler`: the pipeline holds sinks through this protocol, injected at
/// start, never through a global. `write` receives one complete JSON object (no trailing newline) in a
/// buffer that is reused right after the call: a sink copies what it keeps. `write` must not block the
/// packet path for long; a sink that talks to the network queues (and spools) internally.
public protocol EventSink: AnyObject, Sendable {
    /// A short name for logs and metrics (`stdout`, `file:/path`, `kafka://…`).
    var name: String { get }
    func write(_ json: UnsafeRawBufferPointer, metadata: EventMetadata)
    /// Pushes buffered events out (called at batch ends and before exit).
    func flush() throws
    /// The final flush before the end-of-run statistics: returns once what was written is delivered (or
    /// spooled), bounded by the sink's own deadline, so `spanwatch.stats` shows the delivery it reports.
    func flushDelivery() throws
    /// Flushes and releases resources; no writes follow.
    func close() throws
    var statistics: SinkStatistics { get }
    /// Why the output last failed (errno text, the collector's or the cluster's error), for the log.
    var failureReason: String? { get }
}

extension EventSink {
    public var failureReason: String? { nil }
    public func flushDelivery() throws { try flush() }
}

/// A JSON value for the variable parts of alerts and rare events (detector details), where a few
/// allocations per event do not matter. Keys keep their order.
public indirect enum JSONValue: Sendable, Equatable {
    case string(String)
    case int(Int64)
    case double(Double)
    case bool(Bool)
    case ip(IPAddress)
    case array([JSONValue])
    case object([(String, JSONValue)])

    public static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case let (.string(x), .string(y)): return x == y
        case let (.int(x), .int(y)): return x == y
        case let (.double(x), .double(y)): return x == y
        case let (.bool(x), .bool(y)): return x == y
        case let (.ip(x), .ip(y)): return x == y
        case let (.array(x), .array(y)): return x == y
        case let (.object(x), .object(y)): return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: return false
        }
    }

    public static func int(_ v: Int) -> JSONValue { .int(Int64(v)) }
    public static func int(_ v: UInt64) -> JSONValue { .int(Int64(clamping: v)) }
}

extension JSONWriter {
    /// Writes a dynamic value (after a key, or as an array element when `asElement`).
    public mutating func value(_ v: JSONValue) {
        switch v {
        case .string(let s): string(s)
        case .int(let i): integer(i)
        case .double(let d): double(d)
        case .bool(let b): boolean(b)
        case .ip(let a): append(34); a.append(to: &self); append(34)
        case .array(let items):
            open(91)
            for item in items { separator(); value(item) }
            endArray()
        case .object(let pairs):
            open(123)
            for (k, item) in pairs { key(k); value(item) }
            endObject()
        }
    }

    /// `"key": value` with a dynamic value.
    public mutating func field(_ key: StaticString, _ v: JSONValue) { writeKey(key); value(v) }
    /// `"key": value` with a dynamic key and value.
    public mutating func field(dynamicKey key: String, _ v: JSONValue) { self.key(key); value(v) }
}

/// The sinks' `write`, made without reference counting (`UnretainedCalls`): a sink loaded from
/// `[any EventSink]` is retained and released around each call, and a sink referenced weakly anywhere
/// (a file sink's SIGHUP handler) takes the runtime's slow side-table path for both.
struct SinkWriteCalls: ~Copyable {
    let calls: UnretainedCalls<SinkWriteBox>

    init(_ sinks: [any EventSink]) { calls = UnretainedCalls(sinks.map { Self.box($0) }) }

    /// Opens the existential once, at set-up, so the box calls the concrete sink.
    private static func box<S: EventSink>(_ s: S) -> SinkWriteBox { TypedSinkWriteBox(s) }

    func write(_ json: UnsafeRawBufferPointer, metadata: EventMetadata) {
        calls.forEach { $0.write(json, metadata: metadata) }
    }
}

/// The virtual-call base of `SinkWriteCalls`; only `TypedSinkWriteBox` derives from it.
class SinkWriteBox {
    func write(_ json: UnsafeRawBufferPointer, metadata: EventMetadata) { preconditionFailure("abstract") }
}

final class TypedSinkWriteBox<S: EventSink>: SinkWriteBox {
    let sink: S
    init(_ sink: S) { self.sink = sink }
    override func write(_ json: UnsafeRawBufferPointer, metadata: EventMetadata) { sink.write(json, metadata: metadata) }
}
