#if canImport(Glibc)
import Glibc
#endif

/// An append-only on-disk FIFO of records that a network sink could not hand over yet.
///
/// Why a file and not memory: an outage of the SIEM's Kafka can last longer than memory allows, and a
/// sensor restarted during one must not lose what it had. Records are appended to a user-space buffer
/// (no system call per event) that `sync` writes and `fdatasync`s in one batch; the consumer reads them back
/// in order with `pread`. When everything has been read the file is truncated; on close the unread tail is
/// compacted into a fresh file (written beside it and renamed), so the next start resumes exactly there.
///
/// The file is created 0600 inside a 0700 directory: events name hosts and users.
/// Not thread-safe: its owner serialises access (the Kafka sink holds it under its mutex).
///
/// Record layout (little-endian): `u32 payloadLength, u16 topicLength, u16 keyLength, topic, key, payload`.
/// A record cut short by a crash is detected on open and cut off.
final class Spool {
    struct Record {
        var topic: String
        var key: [UInt8]
        var payload: [UInt8]
    }

    let directory: String
    let path: String
    let name: String
    /// Unread bytes allowed in the spool; a record beyond it is refused (the caller counts a drop).
    let maxBytes: UInt64
    private var fd: Int32
    /// The spool directory, opened without following a symlink: every file is made through it.
    private var directoryFD: Int32
    /// Bytes in the file (not counting `pending`).
    private var fileSize: UInt64 = 0
    /// Start of the first unread record in the file.
    private var readOffset: UInt64 = 0
    /// Appended, not yet written.
    private var pending: [UInt8] = []
    /// Records in `pending`: lost if the final write fails.
    private(set) var pendingRecords: UInt64 = 0
    private(set) var unreadRecords: UInt64 = 0
    /// Appends since the last `fdatasync`.
    private var unsynced = 0
    private var readBuffer: [UInt8] = []
    static let headerSize = 8
    static let syncEvery = 4096

    /// Opens (or creates) `directory/name`, picking up records an earlier run left behind.
    ///
    /// The directory is created 0700 if missing. An existing one must be a real directory (a symlink is
    /// refused: following it would put events, and a chmod, wherever the link points) owned by the
    /// sensor's user or root; one owned by the sensor's user that others can enter is narrowed to 0700
    /// through its descriptor, so nothing but that directory is ever changed.
    init(directory: String, name: String, maxBytes: UInt64) throws(OutputError) {
        self.directory = directory
        self.name = name
        self.path = directory + "/" + name
        self.maxBytes = maxBytes
        directoryFD = try Spool.openDirectory(directory)
        fd = openat(directoryFD, name, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
        // On the failures below deinit runs too (every property is set): it closes what is still open.
        guard fd >= 0 else {
            let e = errno
            throw .open(spec: path, reason: e == ELOOP ? "spool file is a symbolic link; refusing to follow it" : "cannot open spool: \(String(cString: strerror(e)))")
        }
        _ = fchmod(fd, 0o600)
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            throw .open(spec: path, reason: "spool is in use by another sensor process")
        }
        try recover()
    }

    /// Creates the missing parents of a spool directory 0700 (a per-user `~/.local/state/sensor`: nobody
    /// else has business there). A failure shows when the directory itself cannot be made.
    static func createParents(of directory: String) {
        var prefix = directory.hasPrefix("/") ? "" : "."
        for part in directory.split(separator: "/").dropLast() {
            prefix += "/" + part
            _ = mkdir(prefix, 0o700)
        }
    }

    /// Creates or opens the spool directory without following a symlink in its last component.
    static func openDirectory(_ directory: String) throws(OutputError) -> Int32 {
        var created = false
        if mkdir(directory, 0o700) != 0 && errno == ENOENT { createParents(of: directory) }
        if mkdir(directory, 0o700) == 0 { created = true } else if errno != EEXIST {
            throw .open(spec: directory, reason: "cannot create spool directory: \(String(cString: strerror(errno)))")
        }
        let dfd = open(directory, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard dfd >= 0 else {
            let e = errno
            var st = stat()
            if lstat(directory, &st) == 0 && st.st_mode & S_IFMT == S_IFLNK {
                throw .open(spec: directory, reason: "spool directory is a symbolic link; give the real directory")
            }
            throw .open(spec: directory, reason: e == ENOTDIR ? "spool path is not a directory" : "cannot open spool directory: \(String(cString: strerror(e)))")
        }
        var st = stat()
        guard fstat(dfd, &st) == 0 else {
            Glibc.close(dfd)
            throw .open(spec: directory, reason: "cannot stat spool directory: \(String(cString: strerror(errno)))")
        }
        let uid = geteuid()
        guard st.st_uid == uid || st.st_uid == 0 else {
            Glibc.close(dfd)
            throw .open(spec: directory, reason: "spool directory belongs to uid \(st.st_uid), not to the sensor's user (uid \(uid)) or root")
        }
        // mkdir applied the umask to a new directory; an existing one of ours that others can enter is narrowed.
        if (created || st.st_uid == uid) && st.st_mode & 0o077 != 0 { _ = fchmod(dfd, 0o700) }
        return dfd
    }

    deinit {
        if fd >= 0 { Glibc.close(fd) }
        if directoryFD >= 0 { Glibc.close(directoryFD) }
    }

    /// Bytes waiting to be read (file and buffer).
    var unreadBytes: UInt64 { fileSize - readOffset + UInt64(pending.count) }
    var isEmpty: Bool { unreadRecords == 0 }

    /// Counts the records an earlier run left and cuts off a torn last record.
    private func recover() throws(OutputError) {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw .open(spec: path, reason: String(cString: strerror(errno))) }
        let size = UInt64(st.st_size)
        var offset: UInt64 = 0
        var header = [UInt8](repeating: 0, count: Spool.headerSize)
        while offset + UInt64(Spool.headerSize) <= size {
            let n = header.withUnsafeMutableBytes { pread(fd, $0.baseAddress, Spool.headerSize, off_t(offset)) }
            guard n == Spool.headerSize else { break }
            let len = Spool.recordLength(header)
            guard offset + UInt64(len) <= size else { break }
            offset += UInt64(len)
            unreadRecords += 1
        }
        if offset < size { _ = ftruncate(fd, off_t(offset)) }
        fileSize = offset
    }

    static func recordLength(_ h: [UInt8]) -> Int {
        let payload = Int(h[0]) | Int(h[1]) << 8 | Int(h[2]) << 16 | Int(h[3]) << 24
        let topic = Int(h[4]) | Int(h[5]) << 8
        let key = Int(h[6]) | Int(h[7]) << 8
        return headerSize + topic + key + payload
    }

    /// Appends one record; false when the bound is reached (nothing written).
    func append(topic: UnsafeRawBufferPointer, key: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer) -> Bool {
        let length = Spool.headerSize + topic.count + key.count + payload.count
        guard topic.count <= 0xffff, key.count <= 0xffff, payload.count <= 0x7fff_ffff,
              unreadBytes + UInt64(length) <= maxBytes else { return false }
        let p = UInt32(payload.count), t = UInt16(topic.count), k = UInt16(key.count)
        pending.append(UInt8(truncatingIfNeeded: p)); pending.append(UInt8(truncatingIfNeeded: p >> 8))
        pending.append(UInt8(truncatingIfNeeded: p >> 16)); pending.append(UInt8(truncatingIfNeeded: p >> 24))
        pending.append(UInt8(truncatingIfNeeded: t)); pending.append(UInt8(truncatingIfNeeded: t >> 8))
        pending.append(UInt8(truncatingIfNeeded: k)); pending.append(UInt8(truncatingIfNeeded: k >> 8))
        pending.append(contentsOf: topic)
        pending.append(contentsOf: key)
        pending.append(contentsOf: payload)
        unreadRecords += 1
        pendingRecords += 1
        unsynced += 1
        if pending.count >= 1 << 20 || unsynced >= Spool.syncEvery { _ = sync() }
        return true
    }

    /// Writes buffered records and makes them durable. Returns 0 or errno.
    @discardableResult
    func sync() -> Int32 {
        if !pending.isEmpty {
            let rc = pending.withUnsafeBytes { b -> Int32 in
                var off = 0
                while off < b.count {
                    let n = pwrite(fd, b.baseAddress! + off, b.count - off, off_t(fileSize) + off_t(off))
                    if n < 0 { if errno == EINTR { continue }; return errno }
                    off += n
                }
                return 0
            }
            if rc != 0 {
                // A part written to a full disk is cut off: the buffer is written whole later, or counted lost.
                _ = ftruncate(fd, off_t(fileSize))
                return rc
            }
            fileSize += UInt64(pending.count)
            pending.removeAll(keepingCapacity: true)
            pendingRecords = 0
        }
        if unsynced > 0 {
            unsynced = 0
            if fdatasync(fd) != 0 { return errno }
        }
        return 0
    }

    /// Hands unread records to `body` in order; a record `body` refuses (returns false) stays first.
    /// Reads at most `limit` records. Returns how many were consumed.
    @discardableResult
    func consume(limit: Int, _ body: (Record) -> Bool) -> Int {
        guard unreadRecords > 0 else { return 0 }
        if !pending.isEmpty && sync() != 0 { return 0 }
        var consumed = 0
        var header = [UInt8](repeating: 0, count: Spool.headerSize)
        while consumed < limit, readOffset < fileSize {
            let n = header.withUnsafeMutableBytes { pread(fd, $0.baseAddress, Spool.headerSize, off_t(readOffset)) }
            guard n == Spool.headerSize else { break }
            let len = Spool.recordLength(header)
            if readBuffer.count < len { readBuffer = [UInt8](repeating: 0, count: len) }
            let got = readBuffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, len, off_t(readOffset)) }
            guard got == len else { break }
            let t = Int(header[4]) | Int(header[5]) << 8, k = Int(header[6]) | Int(header[7]) << 8
            let h = Spool.headerSize
            let record = Record(topic: String(decoding: readBuffer[h..<h + t], as: UTF8.self),
                                key: Array(readBuffer[h + t..<h + t + k]),
                                payload: Array(readBuffer[h + t + k..<len]))
            guard body(record) else { break }
            readOffset += UInt64(len)
            unreadRecords -= 1
            consumed += 1
        }
        if readOffset == fileSize && pending.isEmpty {
            // Everything read: start the file over so it never grows across outages.
            _ = ftruncate(fd, 0)
            fileSize = 0
            readOffset = 0
            unreadRecords = 0
        }
        return consumed
    }

    /// Discards the oldest unread records until at least `bytes` of the bound are free again (or nothing
    /// is left): a full spool makes room for a record that matters more. Returns how many went.
    func discardOldest(freeing bytes: UInt64) -> UInt64 {
        guard unreadRecords > 0 else { return 0 }
        if !pending.isEmpty && sync() != 0 { return 0 }
        var freed: UInt64 = 0, discarded: UInt64 = 0
        var header = [UInt8](repeating: 0, count: Spool.headerSize)
        while freed < bytes, readOffset < fileSize {
            let n = header.withUnsafeMutableBytes { pread(fd, $0.baseAddress, Spool.headerSize, off_t(readOffset)) }
            guard n == Spool.headerSize else { break }
            let len = UInt64(Spool.recordLength(header))
            readOffset += len
            freed += len
            unreadRecords -= 1
            discarded += 1
        }
        if readOffset >= fileSize && pending.isEmpty {
            _ = ftruncate(fd, 0)
            fileSize = 0
            readOffset = 0
            unreadRecords = 0
        }
        return discarded
    }

    /// Writes what is buffered and keeps only unread records in the file, for the next start.
    func close() throws(OutputError) {
        guard fd >= 0 else { return }
        defer {
            Glibc.close(fd); fd = -1
            Glibc.close(directoryFD); directoryFD = -1
        }
        let rc = sync()
        if rc != 0 { throw .write(spec: path, reason: "spool: \(String(cString: strerror(rc)))") }
        guard readOffset > 0 else { return }
        let tmp = name + ".tmp"
        let out = openat(directoryFD, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard out >= 0 else { throw .write(spec: directory + "/" + tmp, reason: String(cString: strerror(errno))) }
        var offset = readOffset
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        while offset < fileSize {
            let n = chunk.withUnsafeMutableBytes { pread(fd, $0.baseAddress, min($0.count, Int(fileSize - offset)), off_t(offset)) }
            guard n > 0 else { Glibc.close(out); throw .write(spec: path, reason: "spool read failed while compacting") }
            let rc = chunk.withUnsafeBytes { csensorWriteAll(out, UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            guard rc == 0 else { Glibc.close(out); throw .write(spec: directory + "/" + tmp, reason: String(cString: strerror(rc))) }
            offset += UInt64(n)
        }
        _ = fsync(out)
        Glibc.close(out)
        guard renameat(directoryFD, tmp, directoryFD, name) == 0 else { throw .write(spec: path, reason: String(cString: strerror(errno))) }
        _ = fsync(directoryFD)
    }
}
