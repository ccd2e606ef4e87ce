import CSensorShims
import Events
import Foundation
import Logging
import PacketCore

#if canImport(Glibc)
import Glibc
#endif

/// The evidence directory, its custody log, retention and the global caps, shared by every worker.
///
/// Workers touch it only when a capture opens or closes (alerts are rare), so a lock here never sits on
/// the packet path. Disk usage is accounted pessimistically: a capture reserves its size cap when it
/// opens and gives back the unused part when it closes, so the cap holds without per-packet locking.
///
/// Files are reached only by bare name relative to the directory's descriptor (opened `O_NOFOLLOW`),
/// never by a path built from the log. A custody log that cannot be used (broken chain, unreadable)
/// turns evidence capture off, logged and announced, instead of stopping the sensor: capture goes on.
public final class EvidenceStore: @unchecked Sendable {
    public struct Counters: Sendable, Equatable {
        public var opened: UInt64 = 0
        public var closed: UInt64 = 0
        public var refusedConcurrency: UInt64 = 0
        public var refusedDiskCap: UInt64 = 0
        /// Captures refused because the custody log is unavailable (evidence capture is off).
        public var refusedCustody: UInt64 = 0
        public var deleted: UInt64 = 0
        public var failed: UInt64 = 0
        /// Custody entries whose `file` is not a bare name: never opened, never deleted.
        public var unsafeNames: UInt64 = 0
        /// Names passed over because a file (or partial file) by that name already existed.
        public var nameCollisions: UInt64 = 0
        /// Torn last lines cut off the custody log at start (each logged as a `log_repaired` entry).
        public var logRepairs: UInt64 = 0
        /// `.partial` files of an earlier run removed at start (each logged as a `partial_removed` entry).
        public var partialsRemoved: UInt64 = 0
    }

    /// A slot granted to one capture: its file and its reserved bytes.
    public struct Reservation: Sendable {
        public var fileName: String
        public var path: String
        public var partialPath: String
        public var reservedBytes: Int
        var partialName: String { fileName + ".partial" }
    }

    public enum Refusal: String, Sendable {
        case concurrencyCap = "concurrency_cap"
        case diskCap = "disk_cap"
        /// Evidence capture is off: the custody log could not be opened or does not verify.
        case custodyUnavailable = "custody_unavailable"
        /// Every candidate name was taken (bounded retries).
        case noFreeName = "no_free_name"
    }

    /// What the custody log recorded for a closed capture.
    public struct ClosedRecord: Sendable {
        public var sequence: Int64
        public var entryHash: String
        public var retentionUntil: Timestamp
    }

    /// A file deleted for retention (for `spanwatch.evidence` deletion events).
    public struct Deletion: Sendable {
        public var fileName: String
        public var sha256: String
        public var retentionUntil: Timestamp
        public var sequence: Int64
        public var entryHash: String
    }

    /// What happened to the custody log at start, reported once as a `spanwatch.health` event.
    public enum Announcement: Sendable {
        /// Evidence capture is off for this run, and why.
        case disabled(reason: String)
        /// A torn last line was cut off; the `log_repaired` entry's sequence and hash (nil when it could not be written).
        case repaired(CustodyLog.Repair, entry: (sequence: Int64, hash: String)?)
    }

    struct LiveFile {
        var name: String
        var bytes: Int
        var sha256: String
        var retentionUntil: Double
    }

    /// Names tried for one capture before it is refused.
    static let nameAttempts = 64

    public let configuration: EvidenceConfiguration
    public let directory: String
    public let recipients: [AgeRecipient]
    public let sensorName: String
    public let hostname: String
    /// nil when evidence capture is off (`custodyProblem` says why).
    let custody: CustodyLog?
    public let custodyProblem: String?
    public let custodyLogPath: String
    let directoryFD: Int32
    let logger: Logger
    let wallClock: @Sendable () -> Double
    let lock = NSLock()
    var live: [LiveFile] = []
    var usedBytes = 0
    var reservedBytes = 0
    var openCaptures = 0
    var nameSequence = 0
    var pendingDeletions: [Deletion] = []
    var announcements: [Announcement] = []
    var _counters = Counters()
    public let userID: UInt32
    public let userName: String

    /// Checks and prepares the directory (created 0700 when missing; an existing one must belong to this
    /// user and grant nothing to others), opens the custody log (repairing a torn last line), inventories
    /// the files it records and applies retention once. Throws for configuration and directory problems
    /// only; a custody log that cannot be used leaves the store with evidence capture off.
    public init(configuration c: EvidenceConfiguration, sensorName: String, hostname: String,
                wallClock: @escaping @Sendable () -> Double = EvidenceStore.systemWallClock,
                logger: Logger = Logger(label: "spanwatch.evidence")) throws(EvidenceError) {
        guard c.enabled else { throw EvidenceError("evidence capture needs an authorization reference") }
        let problems = c.validate()
        guard problems.isEmpty else { throw EvidenceError(problems.joined(separator: "; ")) }
        configuration = c
        directory = c.directory!
        do { recipients = try c.resolvedRecipients() } catch { throw EvidenceError(error.description) }
        self.sensorName = sensorName
        self.hostname = hostname
        self.wallClock = wallClock
        self.logger = logger
        userID = getuid()
        if let pw = getpwuid(userID) { userName = String(cString: pw.pointee.pw_name) } else { userName = String(userID) }
        try Self.prepareDirectory(directory)
        let dirfd = open(directory, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard dirfd >= 0 else { throw EvidenceError("evidence directory \(directory): \(String(cString: strerror(errno)))") }
        directoryFD = dirfd
        custodyLogPath = c.custodyLogPath!
        var log: CustodyLog?
        var problem: String?
        do { log = try CustodyLog(path: custodyLogPath) } catch { problem = error.description }
        custody = log
        custodyProblem = problem
        guard let custody = log else {
            logger.error("evidence capture is OFF for this run: the custody log cannot be used; packet capture and detection go on. Check it with `sensor custody verify`.",
                         metadata: ["custody_log": "\(custodyLogPath)", "error": "\(problem ?? "")"])
            announcements.append(.disabled(reason: problem ?? ""))
            return
        }
        if let repair = custody.repair { logRepair(repair, custody) }
        inventory(custody.existingEntries)
        removeStalePartials(custody)
        do { try enforceRetention() } catch {
            logger.error("evidence retention failed at start", metadata: ["error": "\(error)"])
        }
    }

    deinit { close(directoryFD) }

    /// Removes the `.partial` files an earlier run left when it stopped mid-capture. Holding the custody
    /// log's lock means no other process is writing here, so each is an incomplete capture with no custody
    /// entry: ciphertext nobody can vouch for, and disk the caps do not see. Each removal is logged in the chain.
    func removeStalePartials(_ custody: CustodyLog) {
        let scan = dup(directoryFD)
        guard scan >= 0, let dir = fdopendir(scan) else {
            if scan >= 0 { close(scan) }
            return
        }
        defer { closedir(dir) }
        var stale: [(name: String, bytes: Int)] = []
        while let e = readdir(dir) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard name.hasSuffix(".partial"), EvidenceFileName.isBare(name) else { continue }
            var st = stat()
            guard fstatat(directoryFD, name, &st, AT_SYMLINK_NOFOLLOW) == 0, st.st_mode & S_IFMT == S_IFREG else { continue }
            stale.append((name, Int(st.st_size)))
        }
        for (name, bytes) in stale.sorted(by: { $0.name < $1.name }) {
            do {
                // Logged before the unlink, as retention does: a removal that cannot be logged is not made.
                try custody.append { w in
                    w.field("time", Timestamp(seconds: wallClock()))
                    w.field("action", CustodyAction.partialRemoved)
                    w.field("file", name)
                    w.field("file_bytes", bytes)
                    w.field("reason", "incomplete capture of an earlier run")
                    writeWho(&w)
                }
            } catch {
                logger.error("a partial evidence file of an earlier run is left in place: its removal cannot be logged",
                             metadata: ["file": "\(name)", "error": "\(error)"])
                continue
            }
            unlinkat(directoryFD, name, 0)
            _counters.partialsRemoved &+= 1
            logger.warning("removed a partial evidence file an earlier run left (it stopped mid-capture)",
                           metadata: ["file": "\(name)", "bytes": "\(bytes)"])
        }
    }

    /// The `log_repaired` entry for a torn last line cut off at open.
    func logRepair(_ repair: CustodyLog.Repair, _ custody: CustodyLog) {
        _counters.logRepairs &+= 1
        let now = wallClock()
        var entry: (sequence: Int64, hash: String)?
        do {
            entry = try custody.append { w in
                w.field("time", Timestamp(seconds: now))
                w.field("action", CustodyAction.repaired)
                w.field("removed_bytes", repair.removedBytes)
                w.field("removed_sha256", repair.removedSHA256)
                if let kept = repair.removed { w.field("removed_base64", kept.base64EncodedString()) }
                w.field("problem", repair.problem)
                writeWho(&w)
            }
        } catch {
            logger.error("custody log repaired but the repair could not be logged in it",
                         metadata: ["error": "\(error)", "removed_bytes": "\(repair.removedBytes)", "removed_sha256": "\(repair.removedSHA256)"])
        }
        logger.warning("custody log: a torn last line was cut off (a write interrupted by a crash or a full disk)",
                       metadata: ["custody_log": "\(custodyLogPath)", "removed_bytes": "\(repair.removedBytes)",
                                  "removed_sha256": "\(repair.removedSHA256)", "seq": "\(entry?.sequence ?? 0)"])
        announcements.append(.repaired(repair, entry: entry))
    }

    /// The files the log records as closed and not deleted; names continue after the highest it used.
    func inventory(_ entries: [[String: Any]]) {
        var deleted = Set<String>()
        for e in entries {
            guard let f = e["file"] else { continue }
            guard let name = f as? String, EvidenceFileName.isBare(name) else {
                _counters.unsafeNames &+= 1
                logger.error("custody log entry names a path, not a file in the evidence directory: it is never opened or deleted",
                             metadata: ["seq": "\(e["seq"] ?? "?")", "file": "\(f)"])
                continue
            }
            if let n = EvidenceFileName.sequence(of: name) { nameSequence = max(nameSequence, n) }
            if (e["action"] as? String) == CustodyAction.deleted { deleted.insert(name) }
        }
        for e in entries where (e["action"] as? String) == CustodyAction.closed {
            guard let f = e["file"] as? String, EvidenceFileName.isBare(f), !deleted.contains(f) else { continue }
            let bytes = (e["file_bytes"] as? NSNumber)?.intValue ?? 0
            let until = (e["retention_until_epoch"] as? NSNumber)?.doubleValue ?? .infinity
            live.append(LiveFile(name: f, bytes: bytes, sha256: e["sha256"] as? String ?? "", retentionUntil: until))
            usedBytes += bytes
        }
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

    /// Whether captures can be kept (the custody log is usable).
    public var isCapturing: Bool { custody != nil }
    public var counters: Counters { lock.lock(); defer { lock.unlock() }; return _counters }
    public var diskUsage: Int { lock.lock(); defer { lock.unlock() }; return usedBytes + reservedBytes }
    /// Slots held by open captures.
    public var openSlots: Int { lock.lock(); defer { lock.unlock() }; return openCaptures }

    /// The chain's head (sequence and `entry_sha256` of the last entry): the anchor a SIEM keeps off the box.
    public var custodyHead: (sequence: Int64, hash: String)? {
        lock.lock(); defer { lock.unlock() }
        return custody.map { ($0.lastSequence, $0.lastHash) }
    }

    /// A slot for a new capture, or why not. `stem` names the file (alert time and id); the number after
    /// it continues from the log's highest and skips any name (or partial name) already on disk.
    public func reserve(bytes: Int, stem: String) -> Result<Reservation, RefusalError> {
        lock.lock(); defer { lock.unlock() }
        guard custody != nil else {
            _counters.refusedCustody &+= 1
            return .failure(RefusalError(reason: .custodyUnavailable))
        }
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
        guard let name = freeName(stem: stem) else {
            _counters.failed &+= 1
            return .failure(RefusalError(reason: .noFreeName))
        }
        let grant = min(bytes, available)
        openCaptures += 1
        reservedBytes += grant
        _counters.opened &+= 1
        let path = (directory as NSString).appendingPathComponent(name)
        return .success(Reservation(fileName: name, path: path, partialPath: path + ".partial", reservedBytes: grant))
    }

    func freeName(stem: String) -> String? {
        for _ in 0..<Self.nameAttempts {
            nameSequence += 1
            let name = "\(stem)-\(nameSequence).pcapng.age"
            if !exists(name) && !exists(name + ".partial") { return name }
            _counters.nameCollisions &+= 1
        }
        return nil
    }

    /// Anything by that name in the directory (an error other than ENOENT counts as taken).
    func exists(_ name: String) -> Bool {
        var st = stat()
        return fstatat(directoryFD, name, &st, AT_SYMLINK_NOFOLLOW) == 0 || errno != ENOENT
    }

    public struct RefusalError: Error, Sendable { public var reason: Refusal }

    /// Opens the (encrypted) output for a reservation: mode 0600, never an existing file, never via a symlink.
    public func createFile(_ r: Reservation) throws(EvidenceError) -> FileCiphertextSink {
        let fd = openat(directoryFD, r.partialName, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw EvidenceError("cannot create \(r.partialPath): \(String(cString: strerror(errno)))") }
        _ = fchmod(fd, 0o600)
        return FileCiphertextSink(fd: fd, path: r.partialPath)
    }

    /// A worker's part file for a shared capture (read and write, 0600), unlinked at once: it has no name
    /// while the capture runs, and a crash leaves nothing (or, in between, a `.partial` the next start removes).
    func createPartFile(name: String) throws(EvidenceError) -> Int32 {
        guard EvidenceFileName.isBare(name) else { throw EvidenceError("evidence part name \(name) is not a bare name") }
        let fd = openat(directoryFD, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw EvidenceError("cannot create evidence part \(name): \(String(cString: strerror(errno)))") }
        _ = fchmod(fd, 0o600)
        unlinkat(directoryFD, name, 0)
        return fd
    }

    /// Gives a slot back after a failure before `commit` (the partial file is removed; it holds ciphertext only).
    public func abandon(_ r: Reservation) {
        release(r)
        lock.lock(); defer { lock.unlock() }
        _counters.failed &+= 1
    }

    /// Gives a slot back without keeping its file (a capture that found no packets in scope).
    public func release(_ r: Reservation) {
        lock.lock(); defer { lock.unlock() }
        unlinkat(directoryFD, r.partialName, 0)
        openCaptures -= 1
        reservedBytes -= r.reservedBytes
    }

    /// Logs the finished file's custody entry, then moves the file into place under a name that did not
    /// exist (never over one). `entry` writes the capture's own members (file, hashes, packets, scope,
    /// alerts); the store adds who, why and until when.
    ///
    /// The slot is given back here on every path. On failure the partial file is removed and nothing
    /// is left in the log: no evidence file exists without a complete custody entry.
    public func commit(_ r: Reservation, fileBytes: Int, sha256: String,
                       entry: (inout JSONWriter) -> Void) throws(EvidenceError) -> ClosedRecord {
        lock.lock(); defer { lock.unlock() }
        openCaptures -= 1
        reservedBytes -= r.reservedBytes
        do {
            return try place(r, fileBytes: fileBytes, sha256: sha256, entry: entry)
        } catch {
            unlinkat(directoryFD, r.partialName, 0)
            _counters.failed &+= 1
            throw error
        }
    }

    func place(_ r: Reservation, fileBytes: Int, sha256: String, entry: (inout JSONWriter) -> Void) throws(EvidenceError) -> ClosedRecord {
        guard let custody else { throw EvidenceError("custody log unavailable: \(custodyProblem ?? "")") }
        // The entry describes the file on disk: it must be there, regular, and as long as what was written.
        var st = stat()
        guard fstatat(directoryFD, r.partialName, &st, AT_SYMLINK_NOFOLLOW) == 0 else {
            throw EvidenceError("\(r.partialPath): \(String(cString: strerror(errno)))")
        }
        guard st.st_mode & S_IFMT == S_IFREG, st.st_size == off_t(fileBytes) else {
            throw EvidenceError("\(r.partialPath) is not the file written (\(st.st_size) bytes on disk, \(fileBytes) written)")
        }
        let now = wallClock()
        let until = now + configuration.retentionSeconds
        let c = configuration
        let record = try custody.append { w in
            w.field("time", Timestamp(seconds: now))
            w.field("action", CustodyAction.closed)
            entry(&w)
            writeWho(&w)
            w.field("authorization", c.authorization ?? "")
            w.field("purpose", c.purpose ?? "")
            w.field("operator", c.operatorName ?? "")
            w.beginArray("recipients"); for rc in recipients { w.element(rc.text) }; w.endArray()
            w.field("retention_until", Timestamp(seconds: until))
            w.field("retention_until_epoch", Int64(until.rounded(.up)))
        }
        let rc = csensor_rename_noreplace(directoryFD, r.partialName, directoryFD, r.fileName)
        guard rc == 0 else {
            // Logged but not placed (a name taken since `reserve`, or an I/O error): the chain says so,
            // so it stays consistent with the directory.
            let why = String(cString: strerror(rc))
            _ = try? custody.append { w in
                w.field("time", Timestamp(seconds: now))
                w.field("action", CustodyAction.deleted)
                w.field("file", r.fileName)
                w.field("sha256", sha256)
                w.field("reason", "not_placed")
                w.field("note", "could not be moved into place: \(why)")
                writeWho(&w)
            }
            throw EvidenceError("cannot move \(r.partialPath) into place: \(why)")
        }
        _ = fsync(directoryFD)
        live.append(LiveFile(name: r.fileName, bytes: fileBytes, sha256: sha256, retentionUntil: until.rounded(.up)))
        usedBytes += fileBytes
        _counters.closed &+= 1
        return ClosedRecord(sequence: record.sequence, entryHash: record.hash, retentionUntil: Timestamp(seconds: until))
    }

    func writeWho(_ w: inout JSONWriter) {
        w.beginObject("sensor"); w.field("name", sensorName); w.field("host", hostname); w.endObject()
        w.beginObject("user"); w.field("id", Int(userID)); w.field("name", userName); w.endObject()
    }

    /// Deletes every file whose retention has passed, each after its deletion is logged (a deletion that
    /// cannot be logged is not made). Returns what was deleted; throws the first logging failure, after
    /// trying every file.
    @discardableResult
    public func enforceRetention() throws(EvidenceError) -> [Deletion] {
        lock.lock(); defer { lock.unlock() }
        guard let custody else { return [] }
        let now = wallClock()
        var out: [Deletion] = []
        var keep: [LiveFile] = []
        var firstError: EvidenceError?
        for f in live {
            guard f.retentionUntil <= now else { keep.append(f); continue }
            // Inventory admits bare names only; checked again because this is the one place that deletes.
            guard EvidenceFileName.isBare(f.name) else { _counters.unsafeNames &+= 1; continue }
            let existed = exists(f.name)
            let rec: (sequence: Int64, hash: String)
            do {
                rec = try custody.append { w in
                    w.field("time", Timestamp(seconds: now))
                    w.field("action", CustodyAction.deleted)
                    w.field("file", f.name)
                    w.field("sha256", f.sha256)
                    w.field("reason", "retention")
                    w.field("retention_until", Timestamp(seconds: f.retentionUntil))
                    if !existed { w.field("note", "file was already gone") }
                    writeWho(&w)
                }
            } catch {
                keep.append(f)
                _counters.failed &+= 1
                if firstError == nil { firstError = error }
                continue
            }
            if existed, unlinkat(directoryFD, f.name, 0) != 0, errno != ENOENT {
                _counters.failed &+= 1
                logger.error("evidence file logged as deleted could not be deleted", metadata: [
                    "file": "\(f.name)", "error": "\(String(cString: strerror(errno)))", "seq": "\(rec.sequence)"])
            }
            usedBytes -= f.bytes
            _counters.deleted &+= 1
            let d = Deletion(fileName: f.name, sha256: f.sha256, retentionUntil: Timestamp(seconds: f.retentionUntil),
                             sequence: rec.sequence, entryHash: rec.hash)
            out.append(d)
            pendingDeletions.append(d)
        }
        live = keep
        if let firstError { throw firstError }
        return out
    }

    /// Deletions not yet reported as events (the first worker to ask reports them).
    public func takeDeletions() -> [Deletion] {
        lock.lock(); defer { lock.unlock() }
        let d = pendingDeletions
        pendingDeletions = []
        return d
    }

    /// What happened to the custody log at start, not yet reported (the first worker to ask reports it).
    public func takeAnnouncements() -> [Announcement] {
        lock.lock(); defer { lock.unlock() }
        let a = announcements
        announcements = []
        return a
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
