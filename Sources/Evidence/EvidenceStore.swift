import Events
import Foundation
import PacketCore

#if canImport(Glibc)
import Glibc
#endif

/// The evidence directory, its custody log, retention and the global caps, shared by every worker.
///
/// Workers touch it only when a capture opens or closes (alerts are rare), so a lock here never sits on
/// the packet path. Disk usage is accounted pessimistically: a capture reserves its size cap when it
/// opens and gives back the unused part when it closes, so the cap holds without per-packet locking.
public final class EvidenceStore: @unchecked Sendable {
    public struct Counters: Sendable, Equatable {
        public var opened: UInt64 = 0
        public var closed: UInt64 = 0
        public var refusedConcurrency: UInt64 = 0
        public var refusedDiskCap: UInt64 = 0
        public var deleted: UInt64 = 0
        public var failed: UInt64 = 0
    }

    /// A slot granted to one capture: its file and its reserved bytes.
    public struct Reservation: Sendable {
        public var fileName: String
        public var path: String
        public var partialPath: String
        public var reservedBytes: Int
    }

    public enum Refusal: String, Sendable {
        case concurrencyCap = "concurrency_cap"
        case diskCap = "disk_cap"
    }

    /// What the custody log recorded for a closed capture.
    public struct ClosedRecord: Sendable {
        public var sequence: Int64
        public var entryHash: String
        public var retentionUntil: Timestamp
    }

    /// A file deleted for retention (for `sensor.evidence` deletion events).
    public struct Deletion: Sendable {
        public var fileName: String
        public var sha256: String
        public var retentionUntil: Timestamp
        public var sequence: Int64
    }

    struct LiveFile {
        var name: String
        var bytes: Int
        var sha256: String
        var retentionUntil: Double
    }

    public let configuration: EvidenceConfiguration
    public let directory: String
    public let recipients: [AgeRecipient]
    public let sensorName: String
    public let hostname: String
    let custody: CustodyLog
    let wallClock: @Sendable () -> Double
    let lock = NSLock()
    var live: [LiveFile] = []
    var usedBytes = 0
    var reservedBytes = 0
    var openCaptures = 0
    var nameSequence = 0
    var pendingDeletions: [Deletion] = []
    var _counters = Counters()
    public let userID: UInt32
    public let userName: String

    /// Checks and prepares the directory (created 0700 when missing; an existing one must belong to this
    /// user and grant nothing to others), opens the custody log, inventories the files it records and
    /// applies retention once.
    public init(configuration c: EvidenceConfiguration, sensorName: String, hostname: String,
                wallClock: @escaping @Sendable () -> Double = EvidenceStore.systemWallClock) throws(EvidenceError) {
        guard c.enabled else { throw EvidenceError("evidence capture needs an authorization reference") }
        let problems = c.validate()
        guard problems.isEmpty else { throw EvidenceError(problems.joined(separator: "; ")) }
        configuration = c
        directory = c.directory!
        var rs: [AgeRecipient] = []
        for r in c.recipients {
            do { rs.append(try AgeRecipient(r)) } catch { throw EvidenceError(error.description) }
        }
        recipients = rs
        self.sensorName = sensorName
        self.hostname = hostname
        self.wallClock = wallClock
        userID = getuid()
        if let pw = getpwuid(userID) { userName = String(cString: pw.pointee.pw_name) } else { userName = String(userID) }
        try Self.prepareDirectory(directory)
        custody = try CustodyLog(path: c.custodyLogPath!)
        var deleted = Set<String>()
        for e in custody.existingEntries where (e["action"] as? String) == CustodyAction.deleted {
            if let f = e["file"] as? String { deleted.insert(f) }
        }
        for e in custody.existingEntries where (e["action"] as? String) == CustodyAction.closed {
            guard let f = e["file"] as? String, !deleted.contains(f) else { continue }
            let bytes = (e["file_bytes"] as? NSNumber)?.intValue ?? 0
            let until = (e["retention_until_epoch"] as? NSNumber)?.doubleValue ?? .infinity
            live.append(LiveFile(name: f, bytes: bytes, sha256: e["sha256"] as? String ?? "", retentionUntil: until))
            usedBytes += bytes
        }
        _ = try enforceRetention()
    }

    public static let systemWallClock: @Sendable () -> Double = {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// Creates the directory 0700, or checks an existing one: owned by us, no access for others, not a symlink.
    static func prepareDirectory(_ dir: String) throws(EvidenceError) {
        var st = stat()
        if lstat(dir, &st) != 0 {
            guard errno == ENOENT else { throw EvidenceError("evidence directory \(dir): \(String(cString: strerror(errno)))") }
            guard mkdir(dir, 0o700) == 0 else { throw EvidenceError("cannot create evidence directory \(dir): \(String(cString: strerror(errno)))") }
            _ = chmod(dir, 0o700) // umask may have narrowed it further; never widen beyond 0700
            return
        }
        guard st.st_mode & S_IFMT == S_IFDIR else { throw EvidenceError("evidence directory \(dir) is not a directory (symlinks are refused)") }
        guard st.st_uid == geteuid() else { throw EvidenceError("evidence directory \(dir) belongs to uid \(st.st_uid), not to the sensor user (uid \(geteuid()))") }
        let mode = st.st_mode & 0o777
        guard mode & 0o007 == 0 else {
            throw EvidenceError("evidence directory \(dir) is accessible to others (mode \(String(mode, radix: 8))); use 0700 or 0750")
        }
        guard mode & 0o020 == 0 else {
            throw EvidenceError("evidence directory \(dir) is group-writable (mode \(String(mode, radix: 8))); use 0700 or 0750")
        }
    }

    public var counters: Counters { lock.lock(); defer { lock.unlock() }; return _counters }
    public var diskUsage: Int { lock.lock(); defer { lock.unlock() }; return usedBytes + reservedBytes }

    public func count(refusal: Refusal) {
        lock.lock(); defer { lock.unlock() }
        switch refusal {
        case .concurrencyCap: _counters.refusedConcurrency &+= 1
        case .diskCap: _counters.refusedDiskCap &+= 1
        }
    }

    /// A slot for a new capture, or why not. `stem` names the file (alert time and id).
    public func reserve(bytes: Int, stem: String) -> Result<Reservation, RefusalError> {
        lock.lock(); defer { lock.unlock() }
        guard openCaptures < configuration.maxConcurrentCaptures else {
            _counters.refusedConcurrency &+= 1
            return .failure(RefusalError(reason: .concurrencyCap))
        }
        // At least a header's worth must fit; a capture whose cap exceeds what is left gets what is left.
        let available = configuration.maxDiskBytes - usedBytes - reservedBytes
        guard available >= 64 << 10 else {
            _counters.refusedDiskCap &+= 1
            return .failure(RefusalError(reason: .diskCap))
        }
        nameSequence += 1
        let name = "\(stem)-\(nameSequence).pcapng.age"
        let grant = min(bytes, available)
        openCaptures += 1
        reservedBytes += grant
        _counters.opened &+= 1
        let path = (directory as NSString).appendingPathComponent(name)
        return .success(Reservation(fileName: name, path: path, partialPath: path + ".partial", reservedBytes: grant))
    }

    public struct RefusalError: Error, Sendable { public var reason: Refusal }

    /// Opens the (encrypted) output for a reservation: mode 0600, never an existing file, never via a symlink.
    public func createFile(_ r: Reservation) throws(EvidenceError) -> FileCiphertextSink {
        let fd = open(r.partialPath, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw EvidenceError("cannot create \(r.partialPath): \(String(cString: strerror(errno)))") }
        _ = fchmod(fd, 0o600)
        return FileCiphertextSink(fd: fd, path: r.partialPath)
    }

    /// Gives a slot back after a failure (the partial file is removed; it holds ciphertext only).
    public func abandon(_ r: Reservation) {
        release(r)
        lock.lock(); defer { lock.unlock() }
        _counters.failed &+= 1
    }

    /// Gives a slot back without keeping its file (a capture that found no packets in scope).
    public func release(_ r: Reservation) {
        unlink(r.partialPath)
        lock.lock(); defer { lock.unlock() }
        openCaptures -= 1
        reservedBytes -= r.reservedBytes
    }

    /// Moves the finished file into place and appends its custody entry. `entry` writes the capture's
    /// own members (file, hashes, packets, scope, alerts); the store adds who, why and until when.
    public func commit(_ r: Reservation, fileBytes: Int, sha256: String,
                       entry: (inout JSONWriter) -> Void) throws(EvidenceError) -> ClosedRecord {
        lock.lock(); defer { lock.unlock() }
        openCaptures -= 1
        reservedBytes -= r.reservedBytes
        guard rename(r.partialPath, r.path) == 0 else {
            _counters.failed &+= 1
            throw EvidenceError("cannot move \(r.partialPath) into place: \(String(cString: strerror(errno)))")
        }
        syncDirectory()
        let now = wallClock()
        let until = now + configuration.retentionSeconds
        let c = configuration
        let record = try custody.append { w in
            w.field("time", Timestamp(seconds: now))
            w.field("action", CustodyAction.closed)
            entry(&w)
            w.beginObject("sensor"); w.field("name", sensorName); w.field("host", hostname); w.endObject()
            w.beginObject("user"); w.field("id", Int(userID)); w.field("name", userName); w.endObject()
            w.field("authorization", c.authorization ?? "")
            w.field("purpose", c.purpose ?? "")
            w.field("operator", c.operatorName ?? "")
            w.beginArray("recipients"); for rc in recipients { w.element(rc.text) }; w.endArray()
            w.field("retention_until", Timestamp(seconds: until))
            w.field("retention_until_epoch", Int64(until.rounded(.up)))
        }
        live.append(LiveFile(name: r.fileName, bytes: fileBytes, sha256: sha256, retentionUntil: until.rounded(.up)))
        usedBytes += fileBytes
        _counters.closed &+= 1
        return ClosedRecord(sequence: record.sequence, entryHash: record.hash, retentionUntil: Timestamp(seconds: until))
    }

    /// Deletes every file whose retention has passed and logs each deletion. Returns what was deleted.
    @discardableResult
    public func enforceRetention() throws(EvidenceError) -> [Deletion] {
        lock.lock(); defer { lock.unlock() }
        let now = wallClock()
        var out: [Deletion] = []
        var keep: [LiveFile] = []
        for f in live {
            guard f.retentionUntil <= now else { keep.append(f); continue }
            let path = (directory as NSString).appendingPathComponent(f.name)
            let rc = unlink(path)
            if rc != 0 && errno != ENOENT {
                keep.append(f)
                _counters.failed &+= 1
                continue
            }
            let existed = rc == 0
            let rec = try custody.append { w in
                w.field("time", Timestamp(seconds: now))
                w.field("action", CustodyAction.deleted)
                w.field("file", f.name)
                w.field("sha256", f.sha256)
                w.field("reason", "retention")
                w.field("retention_until", Timestamp(seconds: f.retentionUntil))
                if !existed { w.field("note", "file was already gone") }
                w.beginObject("sensor"); w.field("name", sensorName); w.field("host", hostname); w.endObject()
                w.beginObject("user"); w.field("id", Int(userID)); w.field("name", userName); w.endObject()
            }
            usedBytes -= f.bytes
            _counters.deleted &+= 1
            let d = Deletion(fileName: f.name, sha256: f.sha256, retentionUntil: Timestamp(seconds: f.retentionUntil), sequence: rec.sequence)
            out.append(d)
            pendingDeletions.append(d)
        }
        live = keep
        return out
    }

    /// Deletions not yet reported as events (the first worker to ask reports them).
    public func takeDeletions() -> [Deletion] {
        lock.lock(); defer { lock.unlock() }
        let d = pendingDeletions
        pendingDeletions = []
        return d
    }

    public var custodyLogPath: String { custody.path }

    func syncDirectory() {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 { _ = fsync(fd); close(fd) }
    }
}

/// Writes ciphertext to an evidence file descriptor and fsyncs it at close.
public final class FileCiphertextSink: CiphertextSink {
    let fd: Int32
    public let path: String
    public private(set) var bytesWritten = 0
    var closed = false

    init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
    }

    deinit { if !closed { Glibc.close(fd) } }

    public func writeCiphertext(_ bytes: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < bytes.count {
            let n = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                throw EvidenceError("\(path): write failed: \(String(cString: strerror(errno)))")
            }
            offset += n
        }
        bytesWritten += bytes.count
    }

    /// fsync, then close: the hash recorded in the custody log is of bytes that are on disk.
    public func close() throws {
        guard !closed else { return }
        closed = true
        let syncOK = fsync(fd) == 0
        let err = errno
        Glibc.close(fd)
        if !syncOK { throw EvidenceError("\(path): fsync failed: \(String(cString: strerror(err)))") }
    }
}
