import Events
import PacketCore
#if canImport(Glibc)
import Glibc
#endif

/// The Zeek logs the `zeek:` output writes.
enum ZeekLog: Int, CaseIterable {
    case conn, dns, http, ssl, notice

    var name: String {
        switch self {
        case .conn: return "conn"
        case .dns: return "dns"
        case .http: return "http"
        case .ssl: return "ssl"
        case .notice: return "notice"
        }
    }
}

/// Hourly files in zeekctl's archive layout: `DIR/2024-05-01/conn.12:00:00-13:00:00.log`, the layout RITA,
/// SOF-ELK and Security Onion read. The hour is the event's packet time (when Zeek would have written the
/// line: a connection's end), so a replay files lines where live capture would have. Each log keeps one
/// open file and a write buffer; a line for another hour closes it and opens (appending) that hour's file.
struct ZeekLogFiles {
    struct Open {
        var hour: Int64 = .min
        var fd: Int32 = -1
        var buffer: [UInt8] = []
        var lines: UInt64 = 0
    }

    let directory: String
    var logs: [Open] = Array(repeating: Open(), count: ZeekLog.allCases.count)
    /// errno of the last failure (0: none), for the log.
    var lastError: Int32 = 0
    static let bufferLimit = 128 * 1024

    init(directory: String) {
        self.directory = directory
        for i in logs.indices { logs[i].buffer.reserveCapacity(Self.bufferLimit + 8192) }
    }

    /// Appends one line (without newline) to `log`'s file for `hour`; returns the lines lost by a failed
    /// write or open (0 when all is well).
    mutating func append(_ line: UnsafeRawBufferPointer, to log: ZeekLog, hour: Int64) -> UInt64 {
        var lost: UInt64 = 0
        if logs[log.rawValue].hour != hour {
            lost &+= drain(log)
            if logs[log.rawValue].fd >= 0 { Glibc.close(logs[log.rawValue].fd); logs[log.rawValue].fd = -1 }
            logs[log.rawValue].hour = hour
            logs[log.rawValue].fd = open(log, hour: hour)
        }
        guard logs[log.rawValue].fd >= 0 else { return lost &+ 1 }
        logs[log.rawValue].buffer.append(contentsOf: line)
        logs[log.rawValue].buffer.append(10)
        logs[log.rawValue].lines &+= 1
        if logs[log.rawValue].buffer.count >= Self.bufferLimit { lost &+= drain(log) }
        return lost
    }

    /// Writes `log`'s buffer; returns the lines lost when the write failed.
    mutating func drain(_ log: ZeekLog) -> UInt64 {
        let i = log.rawValue
        guard !logs[i].buffer.isEmpty else { return 0 }
        let lines = logs[i].lines
        logs[i].lines = 0
        let fd = logs[i].fd
        let rc = logs[i].buffer.withUnsafeBytes { csensorWriteAll(fd, $0) }
        logs[i].buffer.removeAll(keepingCapacity: true)
        if rc != 0 { lastError = rc; return lines }
        return 0
    }

    mutating func drainAll() -> UInt64 {
        var lost: UInt64 = 0
        for l in ZeekLog.allCases { lost &+= drain(l) }
        return lost
    }

    mutating func closeAll() -> UInt64 {
        let lost = drainAll()
        for i in logs.indices where logs[i].fd >= 0 {
            if fsync(logs[i].fd) != 0 && errno != EINVAL { lastError = errno }
            Glibc.close(logs[i].fd)
            logs[i].fd = -1
            logs[i].hour = .min
        }
        return lost
    }

    /// Opens (creating the day's directory) `DIR/YYYY-MM-DD/NAME.HH:00:00-HH:00:00.log` for appending.
    mutating func open(_ log: ZeekLog, hour: Int64) -> Int32 {
        let (day, file) = Self.relativePath(log, hour: hour)
        let dayPath = "\(directory)/\(day)"
        if mkdir(dayPath, 0o750) != 0 && errno != EEXIST { lastError = errno; return -1 }
        let fd = Glibc.open("\(dayPath)/\(file)", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
        if fd < 0 { lastError = errno }
        return fd
    }

    /// The day directory and file name for `log` in the hour starting `hour` × 3600 s after the epoch.
    static func relativePath(_ log: ZeekLog, hour: Int64) -> (day: String, file: String) {
        var days = hour / 24
        var h = hour % 24
        if h < 0 { h += 24; days -= 1 }
        var stamp: [UInt8] = []
        RFC3339Day.append(days: days, to: &stamp)
        func two(_ v: Int64) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return (String(decoding: stamp, as: UTF8.self), "\(log.name).\(two(h)):00:00-\(two((h + 1) % 24)):00:00.log")
    }
}

/// `YYYY-MM-DD` of a day number, through the RFC 3339 writer.
enum RFC3339Day {
    static func append(days: Int64, to out: inout [UInt8]) {
        var full: [UInt8] = []
        full.reserveCapacity(27)
        RFC3339.append(epochSeconds: days &* 86_400, to: &full)
        out.append(contentsOf: full.prefix(10))
    }
}
