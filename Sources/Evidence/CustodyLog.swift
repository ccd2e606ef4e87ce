import Crypto
import Events
import Foundation
import PacketCore

#if canImport(Glibc)
import Glibc
#endif

/// The append-only chain-of-custody log (`custody.jsonl`): one JSON object per line, hash-chained.
///
/// Every entry carries `prev_sha256` (the previous entry's `entry_sha256`; 64 zeros for the first) and
/// ends with `"entry_sha256":"…"`, the SHA-256 of the entry's own bytes without that last member. So
/// editing any line breaks that line's own hash, and removing, inserting or reordering lines breaks the
/// next line's `prev_sha256`: `sensor custody verify` names the first entry where the chain breaks.
/// The file is opened `O_APPEND`, mode 0600; each entry is one `write` followed by `fsync`, so an entry
/// the sensor reported exists on disk, and an entry that failed (disk full) is cut off again.
public final class CustodyLog {
    public static let genesis = String(repeating: "0", count: 64)
    /// A torn tail up to this size is kept (base64) in the `log_repaired` entry.
    static let keptLimit = 16 << 10
    static let hashKey = Array(",\"entry_sha256\":\"".utf8)

    /// A torn last line removed at open (a write cut off by a crash or a full disk): what the
    /// `log_repaired` entry records.
    public struct Repair: Sendable {
        public var removedBytes: Int
        public var removedSHA256: String
        /// The bytes themselves when they are no longer than `keptLimit` (a torn entry is; a huge tail is not
        /// copied into the log): the repair entry keeps them, so nothing of the torn entry is lost.
        public var removed: Data?
        /// What the verifier found wrong with the line.
        public var problem: String
    }

    public let path: String
    let fd: Int32
    public private(set) var lastHash: String
    public private(set) var lastSequence: Int64
    /// Bytes of complete entries: where a failed append truncates back to.
    private(set) var length: off_t
    /// A failed append whose bytes could not be cut off again: appending after them would put a torn
    /// line inside the chain, which reads as tampering. The next start repairs it.
    private(set) var torn = false
    /// Entries already in the log when it was opened (parsed), for the store's file inventory.
    public private(set) var existingEntries: [[String: Any]] = []
    /// Set when the last line was torn and has been cut off; the store logs the repair as an entry.
    public private(set) var repair: Repair?

    /// Opens (creating with mode 0600) and reads the existing chain. A torn last line (no newline, or a
    /// last line that does not verify while every line before it does) is what a crash or a full disk
    /// leaves: it is cut off and reported in `repair`. A break anywhere else is refused: appending to a
    /// broken chain would hide where it broke.
    public init(path: String) throws(EvidenceError) {
        self.path = path
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw EvidenceError("cannot open custody log \(path): \(String(cString: strerror(errno)))") }
        self.fd = fd
        var st = stat()
        if fstat(fd, &st) == 0, st.st_mode & 0o077 != 0 {
            close(fd)
            throw EvidenceError("custody log \(path) is readable or writable by others (mode \(String(st.st_mode & 0o777, radix: 8))); it must be 0600")
        }
        // One writer per log: a second sensor process appending to the same chain would fork it (both
        // extend the same head). The lock is held for the life of the descriptor, released by the kernel.
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let e = errno
            close(fd)
            throw EvidenceError(e == EWOULDBLOCK
                ? "custody log \(path) is in use by another sensor process (one writer per evidence directory)"
                : "custody log \(path): cannot lock it: \(String(cString: strerror(e)))")
        }
        lastHash = Self.genesis
        lastSequence = 0
        length = 0
        let report = CustodyVerifier.verifyChain(path: path)
        if let problem = report.firstProblem {
            guard let tail = report.tornTail else {
                close(fd)
                throw EvidenceError("custody log \(path) does not verify, refusing to append: \(problem)")
            }
            guard ftruncate(fd, off_t(tail.offset)) == 0, fsync(fd) == 0 else {
                let e = errno
                close(fd)
                throw EvidenceError("custody log \(path): cannot cut off its torn last line: \(String(cString: strerror(e)))")
            }
            repair = Repair(removedBytes: tail.bytes.count, removedSHA256: Hex.string(SHA256.hash(data: tail.bytes)),
                            removed: tail.bytes.count <= Self.keptLimit ? Data(tail.bytes) : nil, problem: problem)
        }
        length = fstat(fd, &st) == 0 ? st.st_size : 0
        existingEntries = report.entries
        if let last = report.entries.last {
            lastHash = last["entry_sha256"] as? String ?? Self.genesis
            lastSequence = (last["seq"] as? NSNumber)?.int64Value ?? 0
        }
    }

    deinit { close(fd) }

    /// Appends one entry: `seq` and `prev_sha256` first, then `body`'s members, then `entry_sha256`.
    /// Returns the entry's sequence number and hash. The line is built whole and written with one
    /// `write`; a failed or short write (or fsync) truncates the file back, and the head stays where it was.
    @discardableResult
    public func append(_ body: (inout JSONWriter) -> Void) throws(EvidenceError) -> (sequence: Int64, hash: String) {
        guard !torn else {
            throw EvidenceError("custody log \(path): an earlier failed entry could not be cut off; nothing more is appended until the next start repairs it")
        }
        var w = JSONWriter(capacity: 2048)
        w.beginObject()
        w.field("seq", lastSequence + 1)
        w.field("prev_sha256", lastHash)
        body(&w)
        w.endObject()
        var bytes = w.bytes
        let digest = Hex.string(SHA256.hash(data: bytes))
        bytes.removeLast() // the closing brace
        bytes.append(contentsOf: Self.hashKey)
        bytes.append(contentsOf: digest.utf8)
        bytes.append(contentsOf: Array("\"}\n".utf8))
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress!, $0.count) }
        let writeError = errno
        guard n == bytes.count else {
            rollBack()
            let why = n < 0 ? String(cString: strerror(writeError)) : "short write (\(n) of \(bytes.count) bytes)"
            throw EvidenceError("custody log \(path): write failed: \(why)")
        }
        guard fsync(fd) == 0 else {
            let e = errno
            rollBack()
            throw EvidenceError("custody log \(path): fsync failed: \(String(cString: strerror(e)))")
        }
        length += off_t(bytes.count)
        lastSequence += 1
        lastHash = digest
        return (lastSequence, digest)
    }

    /// Cuts off whatever part of a failed entry reached the file.
    func rollBack() {
        if ftruncate(fd, length) != 0 || fsync(fd) != 0 { torn = true }
    }
}

/// Checks a custody log and the evidence files it names (`sensor custody verify`).
public enum CustodyVerifier {
    public struct Report {
        public var entries: [[String: Any]] = []
        public var filesChecked = 0
        public var filesDeleted = 0
        /// The first broken link, naming the line and entry.
        public var firstProblem: String?
        /// Set when the only problem is the last line (what a cut-off write leaves): where it starts and its bytes.
        public var tornTail: (offset: Int, bytes: [UInt8])?
        public var ok: Bool { firstProblem == nil }
    }

    /// An entry that a copy kept elsewhere (the SIEM's `custody.seq` and `custody.entry_sha256`) says the log holds.
    public struct Anchor: Sendable, Equatable {
        public var sequence: Int64
        public var entryHash: String
        public init(sequence: Int64, entryHash: String) {
            self.sequence = sequence
            self.entryHash = entryHash
        }

        /// `SEQ:SHA256`.
        public init?(_ text: String) {
            let parts = text.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2, let seq = Int64(parts[0]), seq > 0, parts[1].count == 64,
                  parts[1].allSatisfy({ $0.isHexDigit }) else { return nil }
            self.init(sequence: seq, entryHash: parts[1].lowercased())
        }
    }

    /// The chain only (each entry's own hash and its link to the one before).
    public static func verifyChain(path: String) -> Report {
        var report = Report()
        guard let data = FileManager.default.contents(atPath: path) else {
            if !FileManager.default.fileExists(atPath: path) { return report }
            report.firstProblem = "cannot read \(path)"
            return report
        }
        let bytes = [UInt8](data)
        var prev = CustodyLog.genesis
        var prevSeq: Int64 = 0
        var start = 0
        var lineNumber = 0
        while start < bytes.count {
            lineNumber += 1
            let newline = bytes[start...].firstIndex(of: UInt8(ascii: "\n"))
            let problem: String?
            if newline == nil {
                problem = "line \(lineNumber): the last line is incomplete (no newline): a write was cut off or the file was edited"
            } else {
                problem = check(bytes[start..<newline!], lineNumber: lineNumber, prev: prev, prevSeq: prevSeq) { obj, hash, seq in
                    prev = hash
                    prevSeq = seq
                    report.entries.append(obj)
                }
            }
            if let problem {
                report.firstProblem = problem
                // Only the last line: nothing but (at most) its own newline follows it.
                if newline == nil || newline! + 1 == bytes.count { report.tornTail = (start, Array(bytes[start...])) }
                return report
            }
            start = newline! + 1
        }
        return report
    }

    /// One line: its own hash, its link and its sequence number; nil when it verifies (then `accept` had it).
    static func check(_ l: ArraySlice<UInt8>, lineNumber: Int, prev: String, prevSeq: Int64,
                      accept: ([String: Any], String, Int64) -> Void) -> String? {
        if l.isEmpty { return "line \(lineNumber): empty line inside the log" }
        let key = CustodyLog.hashKey
        // The line must end with ,"entry_sha256":"<64 hex>"}
        let tail = key.count + 64 + 2
        let s = l.startIndex, e = l.endIndex
        guard l.count > tail, l[(e - tail)..<(e - 66)].elementsEqual(key),
              l[e - 2] == UInt8(ascii: "\""), l[e - 1] == UInt8(ascii: "}") else {
            return "line \(lineNumber): entry has no trailing entry_sha256 (edited or not a custody entry)"
        }
        let recorded = String(decoding: l[(e - 66)..<(e - 2)], as: UTF8.self)
        let body = Array(l[s..<(e - tail)]) + [UInt8(ascii: "}")]
        let computed = Hex.string(SHA256.hash(data: body))
        guard let obj = try? JSONSerialization.jsonObject(with: Data(l)) as? [String: Any] else {
            return "line \(lineNumber): not a JSON object"
        }
        let seq = (obj["seq"] as? NSNumber)?.int64Value ?? -1
        let name = "line \(lineNumber) (seq \(seq)\(obj["file"].map { ", file \($0)" } ?? ""))"
        guard computed == recorded else {
            return "\(name): entry_sha256 does not match the entry's content (the entry was edited)"
        }
        guard (obj["prev_sha256"] as? String) == prev else {
            return "\(name): prev_sha256 does not match the entry before it (an entry was removed, inserted or reordered, or the previous one was re-hashed)"
        }
        guard seq == prevSeq + 1 else { return "\(name): sequence number \(seq) follows \(prevSeq)" }
        accept(obj, recorded, seq)
        return nil
    }

    /// The chain, the anchors (each must still be in the log, with the same hash), then every evidence
    /// file that the log says still exists: present, a regular file, same SHA-256. Files are opened by
    /// bare name relative to `evidenceDirectory` (else the log's directory), never through a path.
    public static func verify(path: String, evidenceDirectory: String? = nil, anchors: [Anchor] = []) -> Report {
        var report = verifyChain(path: path)
        if report.firstProblem != nil { return report }
        for a in anchors {
            guard a.sequence <= Int64(report.entries.count) else {
                report.firstProblem = "anchor seq \(a.sequence): the log ends at seq \(report.entries.count) (its end was cut off, or it was replaced)"
                return report
            }
            let recorded = report.entries[Int(a.sequence) - 1]["entry_sha256"] as? String ?? ""
            guard recorded == a.entryHash else {
                report.firstProblem = "anchor seq \(a.sequence): the log's entry_sha256 is \(recorded), the anchor says \(a.entryHash) (the log was rewritten at or before that entry)"
                return report
            }
        }
        let dir = evidenceDirectory ?? (path as NSString).deletingLastPathComponent
        let dirfd = open(dir.isEmpty ? "." : dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard dirfd >= 0 else {
            report.firstProblem = "cannot open the evidence directory \(dir): \(String(cString: strerror(errno))) (symlinks are refused)"
            return report
        }
        defer { close(dirfd) }
        var deleted = Set<String>()
        for (i, e) in report.entries.enumerated() {
            guard let file = e["file"] else { continue }
            guard let f = file as? String, EvidenceFileName.isBare(f) else {
                report.firstProblem = "line \(i + 1) (seq \(e["seq"] ?? "?"), file \(file)): not a bare file name in the evidence directory; refused, nothing outside it is read"
                return report
            }
            if (e["action"] as? String) == CustodyAction.deleted { deleted.insert(f) }
        }
        for (i, e) in report.entries.enumerated() where (e["action"] as? String) == CustodyAction.closed {
            guard let file = e["file"] as? String, let expected = e["sha256"] as? String else {
                report.firstProblem = "line \(i + 1): evidence entry without file or sha256"
                return report
            }
            let name = "line \(i + 1) (seq \(e["seq"] ?? "?"), file \(file))"
            if deleted.contains(file) { report.filesDeleted += 1; continue }
            guard let actual = sha256(of: file, in: dirfd) else {
                report.firstProblem = "\(name): evidence file is missing, unreadable or not a regular file in \(dir), and no deletion is logged"
                return report
            }
            guard actual == expected else {
                report.firstProblem = "\(name): SHA-256 of the evidence file is \(actual), the custody log recorded \(expected) (the file was altered)"
                return report
            }
            report.filesChecked += 1
        }
        return report
    }

    /// SHA-256 of the regular file `name` in the directory `dirfd` (no symlink followed, no FIFO waited on).
    static func sha256(of name: String, in dirfd: Int32) -> String? {
        let fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        return sha256(fd: fd)
    }

    /// Streams a file through SHA-256 (evidence files can be large).
    public static func sha256(ofFile path: String) -> String? {
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        return sha256(fd: fd)
    }

    /// Regular files only.
    static func sha256(fd: Int32) -> String? {
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { return nil }
        var h = SHA256()
        var buf = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                return nil
            }
            if n == 0 { break }
            buf.withUnsafeBytes { h.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
        }
        return Hex.string(h.finalize())
    }
}

/// Names the custody log gives evidence files. A value read back from the log is hostile until checked:
/// only a bare name (no `/`, not `.` or `..`, no NUL, not empty) is ever opened or deleted, and only
/// relative to the evidence directory's descriptor.
public enum EvidenceFileName {
    public static func isBare(_ name: String) -> Bool {
        !name.isEmpty && name != "." && name != ".." && !name.utf8.contains(UInt8(ascii: "/")) && !name.utf8.contains(0)
            && name.utf8.count <= 255
    }

    /// The capture number in `STEM-N.pcapng.age` (names continue from the log's highest across runs).
    static func sequence(of name: String) -> Int? {
        let suffix = ".pcapng.age"
        guard name.hasSuffix(suffix) else { return nil }
        let stem = name.dropLast(suffix.count)
        guard let dash = stem.lastIndex(of: "-") else { return nil }
        return Int(stem[stem.index(after: dash)...])
    }
}

/// `action` values in the custody log.
public enum CustodyAction {
    public static let closed = "evidence_closed"
    public static let deleted = "evidence_deleted"
    /// A torn last line was cut off at start (`removed_bytes`, `removed_sha256`, `removed_base64`, `problem`).
    public static let repaired = "log_repaired"
    /// A `.partial` file an earlier run left (it stopped mid-capture): removed at start (`file`, `file_bytes`).
    public static let partialRemoved = "partial_removed"
}

public struct EvidenceError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ d: String) { description = d }
}
