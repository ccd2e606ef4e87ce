import Events
import PacketCore
import Synchronization

/// `--output zeek:DIR`: the sensor's events as Zeek JSON logs (`conn`, `dns`, `http`, `ssl`, `notice`),
/// with Zeek's field names and types, rotated hourly, so RITA and SOF-ELK's Zeek ingest read them as they
/// read Zeek's own. docs/SIEM.md documents the mapping field by field.
///
/// Design: a sink sees each event as JSON bytes. The events have no structured form to share (the emitter
/// writes bytes straight into a reused buffer, which is what keeps flow events cheap), so this sink reads
/// the dozen fields it needs with `EventFieldScanner`: one validating pass over the bytes, no tree, no
/// allocation; string and number tokens are copied into the Zeek line as they are (already valid JSON).
/// Events of other datasets (stats, health, evidence) are skipped on the metadata without being read.
/// Live workers share the sink, so it works under one mutex, held for the scan and the copy (~1–2 µs).
public final class ZeekSink: EventSink {
    public let name: String
    let state: Mutex<State>

    struct State {
        var scanner = EventFieldScanner(paths: Field.allCases.map(\.path))
        var line = JSONWriter(capacity: 2048)
        var files: ZeekLogFiles
        var stats = SinkStatistics()
        var closed = false
        /// Events whose bytes did not scan as one JSON object (never expected; counted, not written).
        var unreadable: UInt64 = 0
    }

    public init(directory: String) throws(OutputError) {
        name = "zeek:\(directory)"
        var st = stat()
        guard stat(directory, &st) == 0, st.st_mode & S_IFMT == S_IFDIR else {
            throw .open(spec: "zeek:\(directory)", reason: "not a directory")
        }
        state = Mutex(State(files: ZeekLogFiles(directory: directory)))
    }

    public func write(_ json: UnsafeRawBufferPointer, metadata: EventMetadata) {
        let logs: (ZeekLog?, Bool)
        switch metadata.datasetString {
        case "spanwatch.flow": logs = (.conn, true)
        case "spanwatch.dns": logs = (.dns, false)
        case "spanwatch.alert": logs = (.notice, false)
        default: return
        }
        let hour = Self.hour(metadata.timestamp)
        state.withLock { s in
            let alert: UInt64 = metadata.kind == .alert ? 1 : 0
            s.stats.accepted &+= 1
            guard !s.closed else { s.stats.dropped &+= 1; s.stats.droppedAlerts &+= alert; return }
            guard s.scanner.scan(json) else {
                s.unreadable &+= 1; s.stats.dropped &+= 1; s.stats.droppedAlerts &+= alert
                return
            }
            var fields = Fields(json: json, scanner: s.scanner)
            var lost: UInt64 = 0
            func emit(_ log: ZeekLog, _ body: (inout JSONWriter, inout Fields) -> Bool) {
                s.line.reset()
                s.line.beginObject()
                guard body(&s.line, &fields) else { return }
                s.line.endObject()
                lost &+= s.line.withUnsafeBytes { s.files.append($0, to: log, hour: hour) }
            }
            switch logs.0 {
            case .conn:
                emit(.conn, ZeekMapping.conn)
                if logs.1 {
                    emit(.http, ZeekMapping.http)
                    emit(.ssl, ZeekMapping.ssl)
                }
            case .dns: emit(.dns, ZeekMapping.dns)
            case .notice: emit(.notice, ZeekMapping.notice)
            default: break
            }
            if lost > 0 {
                s.stats.failed &+= 1; s.stats.dropped &+= 1; s.stats.droppedAlerts &+= alert
            } else {
                s.stats.delivered &+= 1
            }
        }
    }

    static func hour(_ t: Timestamp) -> Int64 {
        let s = t.nanoseconds / 1_000_000_000
        return (s >= 0 ? s : s - 3599) / 3600
    }

    public func flush() throws {
        state.withLock { s in
            let lost = s.files.drainAll()
            if lost > 0 { s.stats.failed &+= lost; s.stats.dropped &+= lost }
        }
    }

    public func close() throws {
        let err: Int32 = state.withLock { s in
            guard !s.closed else { return 0 }
            s.closed = true
            let lost = s.files.closeAll()
            if lost > 0 { s.stats.failed &+= lost; s.stats.dropped &+= lost }
            return s.files.lastError
        }
        if err != 0 { throw OutputError.write(spec: name, reason: String(cString: strerror(err))) }
    }

    public var statistics: SinkStatistics { state.withLock { $0.stats } }

    public var failureReason: String? {
        state.withLock { s in s.files.lastError == 0 ? nil : String(cString: strerror(s.files.lastError)) }
    }
}

#if canImport(Glibc)
import Glibc
#endif
