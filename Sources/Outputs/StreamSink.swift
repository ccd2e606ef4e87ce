import Events
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Newline-delimited JSON to a file descriptor: standard output, or a file opened for appending.
///
/// Events are gathered in a buffer and written in large `write(2)` calls (one per 256 KiB or per flush),
/// so stdout to a pipe or file costs a system call per thousand events, not per event. The buffer is
/// behind a mutex because live capture workers share one sink; a worker holds it for one memcpy.
public final class StreamSink: EventSink {
    public let name: String
    let fd: Int32
    let ownsDescriptor: Bool
    let state: Mutex<State>
    static let bufferLimit = 256 * 1024

    struct State {
        var buffer: [UInt8] = []
        var buffered: UInt64 = 0
        /// Alerts among the buffered events (counted apart when a failed write loses them).
        var bufferedAlerts: UInt64 = 0
        var stats = SinkStatistics()
        var closed = false
        /// The errno of the last failed write (0: none yet); kept for the log, never reset.
        var lastError: Int32 = 0
    }

    /// Standard output.
    public static func standardOutput() -> StreamSink { StreamSink(name: "stdout", fd: 1, ownsDescriptor: false) }

    /// Appends to `path`, creating it with mode 0640 (events may name hosts and users: not world-readable).
    public static func file(path: String) throws -> StreamSink {
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
        guard fd >= 0 else { throw OutputError.open(spec: "file:\(path)", reason: String(cString: strerror(errno))) }
        return StreamSink(name: "file:\(path)", fd: fd, ownsDescriptor: true)
    }

    init(name: String, fd: Int32, ownsDescriptor: Bool) {
        self.name = name
        self.fd = fd
        self.ownsDescriptor = ownsDescriptor
        var s = State()
        s.buffer.reserveCapacity(StreamSink.bufferLimit + 65536)
        state = Mutex(s)
    }

    deinit { try? close() }

    public func write(_ json: UnsafeRawBufferPointer, metadata: EventMetadata) {
        state.withLock { s in
            let alert: UInt64 = metadata.kind == .alert ? 1 : 0
            s.stats.accepted &+= 1
            guard !s.closed else { s.stats.dropped &+= 1; s.stats.droppedAlerts &+= alert; return }
            s.buffer.append(contentsOf: json)
            s.buffer.append(10)
            s.buffered &+= 1
            s.bufferedAlerts &+= alert
            if s.buffer.count >= StreamSink.bufferLimit { drain(&s) }
        }
    }

    func drain(_ s: inout State) {
        guard !s.buffer.isEmpty else { return }
        let events = s.buffered, alerts = s.bufferedAlerts
        s.buffered = 0
        s.bufferedAlerts = 0
        let rc = s.buffer.withUnsafeBytes { b in csensorWriteAll(fd, b) }
        if rc == 0 {
            s.stats.delivered &+= events
        } else {
            // A failed write(2) may have written part of the batch; none of it is counted as delivered.
            s.stats.failed &+= events
            s.stats.dropped &+= events
            s.stats.droppedAlerts &+= alerts
            s.lastError = rc
        }
        s.buffer.removeAll(keepingCapacity: true)
    }

    /// Writes what is buffered. A failed write does not throw: its events are counted as dropped, and
    /// the output monitor logs the failure as it starts (the packet path must not stop on a full disk).
    public func flush() throws {
        state.withLock { s in drain(&s) }
    }

    /// Writes what is buffered and closes the file; throws when the file did not take everything.
    public func close() throws {
        let err: Int32 = state.withLock { s in
            guard !s.closed else { return 0 }
            drain(&s)
            s.closed = true
            var closeError: Int32 = 0
            if ownsDescriptor {
                if fsync(fd) != 0 && errno != EINVAL { closeError = errno; s.lastError = errno }
                Glibc.close(fd)
            }
            // A reader that went away (EPIPE: `sensor replay … | head`): its events count as dropped,
            // but there is no error to report beyond that.
            if closeError == 0 && s.lastError != EPIPE { closeError = s.lastError }
            return closeError
        }
        if err != 0 { throw OutputError.write(spec: name, reason: String(cString: strerror(err))) }
    }

    public var statistics: SinkStatistics { state.withLock { $0.stats } }

    public var failureReason: String? {
        state.withLock { s in s.lastError == 0 ? nil : String(cString: strerror(s.lastError)) }
    }
}

/// Writes all bytes, retrying short writes and EINTR. Returns 0 or errno.
func csensorWriteAll(_ fd: Int32, _ b: UnsafeRawBufferPointer) -> Int32 {
    var off = 0
    while off < b.count {
        let n = Glibc.write(fd, b.baseAddress! + off, b.count - off)
        if n < 0 {
            if errno == EINTR { continue }
            return errno
        }
        off += n
    }
    return 0
}

public enum OutputError: Error, CustomStringConvertible, Equatable {
    case badSpec(String, reason: String)
    case open(spec: String, reason: String)
    case write(spec: String, reason: String)

    public var description: String {
        switch self {
        case let .badSpec(s, r): return "bad output '\(s)': \(r)"
        case let .open(s, r): return "cannot open output \(s): \(r)"
        case let .write(s, r): return "output \(s) failed: \(r)"
        }
    }
}
