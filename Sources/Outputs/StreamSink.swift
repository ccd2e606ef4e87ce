import Dispatch
import Events
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Newline-delimited JSON to a file descriptor: standard output, or a file opened for appending.
///
/// Events are gathered in a buffer and written in large `write(2)` calls (one per 256 KiB or per flush),
/// so stdout to a pipe or file costs a system call per thousand events, not per event. The buffer is
/// behind a mutex because live capture workers share one sink; a worker holds it for one memcpy.
///
/// A file is reopened on SIGHUP (after logrotate renamed it) and rotated by size or age when its
/// options say so (`FileOutputOptions`); both happen between two whole buffers, so no event is split.
/// `@unchecked`: everything mutable is behind `state`; `hangup` is set once, while the sink is made.
public final class StreamSink: EventSink, @unchecked Sendable {
    public let name: String
    let ownsDescriptor: Bool
    let file: FileOutputOptions?
    let state: Mutex<State>
    private var hangup: DispatchSourceSignal?
    static let bufferLimit = 256 * 1024

    struct State {
        var fd: Int32
        /// Bytes in the current file and when it was opened (wall clock), for rotation.
        var fileBytes: UInt64 = 0
        var openedAt = Date()
        /// `rotate_size` (`.max`: none): the buffer is written out as the file reaches it, so a file
        /// ends within one event of its bound.
        var rotateBytes: UInt64 = .max
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
    public static func standardOutput() -> StreamSink { StreamSink(name: "stdout", fd: 1, file: nil) }

    /// Appends to `path`, creating it with mode 0640 (events may name hosts and users: not world-readable).
    public static func file(path: String) throws -> StreamSink { try file(FileOutputOptions(path: path)) }

    /// Appends to the options' path, rotating as they say; SIGHUP reopens the path.
    public static func file(_ options: FileOutputOptions) throws -> StreamSink {
        let fd = try openFile(options.path)
        let sink = StreamSink(name: "file:\(options.path)", fd: fd, file: options)
        var st = stat()
        if fstat(fd, &st) == 0 { sink.state.withLock { $0.fileBytes = UInt64(max(0, st.st_size)) } }
        sink.listenForHangup()
        return sink
    }

    static func openFile(_ path: String) throws(OutputError) -> Int32 {
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
        guard fd >= 0 else { throw OutputError.open(spec: "file:\(path)", reason: String(cString: strerror(errno))) }
        return fd
    }

    init(name: String, fd: Int32, file: FileOutputOptions?) {
        self.name = name
        self.file = file
        ownsDescriptor = file != nil
        var s = State(fd: fd)
        s.rotateBytes = file?.rotateBytes ?? .max
        s.buffer.reserveCapacity(StreamSink.bufferLimit + 65536)
        state = Mutex(s)
    }

    deinit { try? close() }

    /// SIGHUP: write what is buffered to the old file, then reopen the path (logrotate's `postrotate`).
    private func listenForHangup() {
        HangupSignal.prepare()
        let src = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
        src.setEventHandler { [weak self] in self?.reopen() }
        src.resume()
        hangup = src
    }

    /// Reopens the file's path (public for tests and for callers with their own signal handling).
    public func reopen() {
        guard let file else { return }
        state.withLock { s in
            guard !s.closed else { return }
            drain(&s)
            replaceFile(&s, path: file.path)
        }
    }

    /// Closes the current descriptor and opens `path` anew; on failure the old descriptor stays.
    private func replaceFile(_ s: inout State, path: String) {
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
        guard fd >= 0 else { s.lastError = errno; return }
        Glibc.close(s.fd)
        s.fd = fd
        var st = stat()
        s.fileBytes = fstat(fd, &st) == 0 ? UInt64(max(0, st.st_size)) : 0
        s.openedAt = Date()
    }

    /// Renames the file to PATH.<UTC time> and opens a new one, when its size or age says so.
    private func rotateIfDue(_ s: inout State) {
        guard let file, file.rotateBytes != nil || file.rotateSeconds != nil else { return }
        let bySize = file.rotateBytes.map { s.fileBytes >= $0 } ?? false
        let byAge = file.rotateSeconds.map { Date().timeIntervalSince(s.openedAt) >= $0 } ?? false
        guard (bySize || byAge) && s.fileBytes > 0 else { return }
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        var target = "\(file.path).\(f.string(from: Date()))"
        // Two rotations within a second (a small rotate_size): numbered, never overwritten.
        var n = 1
        while access(target, F_OK) == 0 { target = "\(file.path).\(f.string(from: Date())).\(n)"; n += 1 }
        guard rename(file.path, target) == 0 else { s.lastError = errno; return }
        replaceFile(&s, path: file.path)
        if file.keep > 0 { StreamSink.prune(file) }
    }

    /// Deletes the oldest rotated files beyond `keep` (their names sort by time).
    static func prune(_ file: FileOutputOptions) {
        let url = URL(fileURLWithPath: file.path)
        let dir = url.deletingLastPathComponent().path, base = url.lastPathComponent + "."
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return }
        // PATH.<time>[.<n>]: ordered by time, then by the counter of rotations within one second.
        func key(_ name: String) -> (String, Int) {
            let rest = name.dropFirst(base.count).split(separator: ".")
            return (String(rest.first ?? ""), rest.count > 1 ? Int(rest[1]) ?? 0 : 0)
        }
        let rotated = names.filter { $0.hasPrefix(base) && $0.dropFirst(base.count).first?.isNumber == true }.sorted { key($0) < key($1) }
        for old in rotated.dropLast(file.keep) { unlink(dir + "/" + old) }
    }

    public func write(_ json: UnsafeRawBufferPointer, metadata: EventMetadata) {
        state.withLock { s in
            let alert: UInt64 = metadata.kind == .alert ? 1 : 0
            s.stats.accepted &+= 1
            guard !s.closed else { s.stats.dropped &+= 1; s.stats.droppedAlerts &+= alert; return }
            s.buffer.append(contentsOf: json)
            s.buffer.append(10)
            s.buffered &+= 1
            s.bufferedAlerts &+= alert
            if s.buffer.count >= StreamSink.bufferLimit || s.fileBytes &+ UInt64(s.buffer.count) >= s.rotateBytes { drain(&s) }
        }
    }

    func drain(_ s: inout State) {
        guard !s.buffer.isEmpty else { return }
        let events = s.buffered, alerts = s.bufferedAlerts
        s.buffered = 0
        s.bufferedAlerts = 0
        let rc = s.buffer.withUnsafeBytes { b in csensorWriteAll(s.fd, b) }
        if rc == 0 {
            s.stats.delivered &+= events
            s.fileBytes &+= UInt64(s.buffer.count)
        } else {
            // A failed write(2) may have written part of the batch; none of it is counted as delivered.
            s.stats.failed &+= events
            s.stats.dropped &+= events
            s.stats.droppedAlerts &+= alerts
            s.lastError = rc
        }
        s.buffer.removeAll(keepingCapacity: true)
        rotateIfDue(&s)
    }

    /// Writes what is buffered. A failed write does not throw: its events are counted as dropped, and
    /// the output monitor logs the failure as it starts (the packet path must not stop on a full disk).
    public func flush() throws {
        state.withLock { s in
            drain(&s)
            // Time rotation also on a quiet output (drain returns early when nothing is buffered).
            if s.buffer.isEmpty { rotateIfDue(&s) }
        }
    }

    /// Writes what is buffered and closes the file; throws when the file did not take everything.
    public func close() throws {
        hangup?.cancel()
        let err: Int32 = state.withLock { s in
            guard !s.closed else { return 0 }
            drain(&s)
            s.closed = true
            var closeError: Int32 = 0
            if ownsDescriptor {
                if fsync(s.fd) != 0 && errno != EINVAL { closeError = errno; s.lastError = errno }
                Glibc.close(s.fd)
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
