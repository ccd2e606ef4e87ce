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
        var stats = SinkStatistics()
        var closed = false
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
            guard !s.closed else { s.stats.dropped &+= 1; return }
            s.stats.accepted &+= 1
            s.buffer.append(contentsOf: json)
            s.buffer.append(10)
            s.buffered &+= 1
            if s.buffer.count >= StreamSink.bufferLimit { drain(&s) }
        }
    }

    func drain(_ s: inout State) {
        guard !s.buffer.isEmpty else { return }
        let events = s.buffered
        s.buffered = 0
        let rc = s.buffer.withUnsafeBytes { b in csensorWriteAll(fd, b) }
        if rc == 0 {
            s.stats.delivered &+= events
        } else {
            s.stats.failed &+= events
            s.lastError = rc
        }
        s.buffer.removeAll(keepingCapacity: true)
    }

    public func flush() throws {
        let err: Int32 = state.withLock { s in
            drain(&s)
            let e = s.lastError
            s.lastError = 0
            return e
        }
        if err != 0 && err != EPIPE { throw OutputError.write(spec: name, reason: String(cString: strerror(err))) }
    }

    public func close() throws {
        let err: Int32 = state.withLock { s in
            guard !s.closed else { return 0 }
            drain(&s)
            s.closed = true
            if ownsDescriptor {
                if fsync(fd) != 0 && errno != EINVAL { s.lastError = errno }
                Glibc.close(fd)
            }
            return s.lastError
        }
        if err != 0 && err != EPIPE { throw OutputError.write(spec: name, reason: String(cString: strerror(err))) }
    }

    public var statistics: SinkStatistics { state.withLock { $0.stats } }
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
