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
/// The file is opened `O_APPEND`, mode 0600, and fsync'd after every entry, so an entry the sensor
/// reported exists on disk.
public final class CustodyLog {
    public static let genesis = String(repeating: "0", count: 64)
    static let hashKey = Array(",\"entry_sha256\":\"".utf8)

    public let path: String
    let fd: Int32
    public private(set) var lastHash: String
    public private(set) var lastSequence: Int64
    /// Entries already in the log when it was opened (parsed), for the store's file inventory.
    public private(set) var existingEntries: [[String: Any]] = []

    /// Opens (creating with mode 0600) and reads the existing chain's tail. A log whose lines do not
    /// verify is refused: appending to a broken chain would hide where it broke.
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
        lastHash = Self.genesis
        lastSequence = 0
        let report = CustodyVerifier.verifyChain(path: path)
        if let problem = report.firstProblem {
            close(fd)
            throw EvidenceError("custody log \(path) does not verify, refusing to append: \(problem)")
        }
        existingEntries = report.entries
        if let last = report.entries.last {
            lastHash = last["entry_sha256"] as? String ?? Self.genesis
            lastSequence = (last["seq"] as? NSNumber)?.int64Value ?? 0
        }
    }

    deinit { close(fd) }

    /// Appends one entry: `seq` and `prev_sha256` first, then `body`'s members, then `entry_sha256`.
    /// Returns the entry's sequence number and hash.
    @discardableResult
    public func append(_ body: (inout JSONWriter) -> Void) throws(EvidenceError) -> (sequence: Int64, hash: String) {
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
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 {
                if errno == EINTR { continue }
                throw EvidenceError("custody log \(path): write failed: \(String(cString: strerror(errno)))")
            }
            offset += n
        }
        guard fsync(fd) == 0 else { throw EvidenceError("custody log \(path): fsync failed: \(String(cString: strerror(errno)))") }
        lastSequence += 1
        lastHash = digest
        return (lastSequence, digest)
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
        public var ok: Bool { firstProblem == nil }
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
        if !bytes.isEmpty && bytes.last != UInt8(ascii: "\n") {
            report.firstProblem = "the last line is incomplete (no newline): a write was cut off or the file was edited"
        }
        var prev = CustodyLog.genesis
        var prevSeq: Int64 = 0
        let lines = bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        var lineNumber = 0
        for line in lines {
            lineNumber += 1
            if line.isEmpty {
                if lineNumber < lines.count {
                    report.firstProblem = "line \(lineNumber): empty line inside the log"
                    return report
                }
                continue
            }
            let l = Array(line)
            let key = CustodyLog.hashKey
            // The line must end with ,"entry_sha256":"<64 hex>"}
            let tail = key.count + 64 + 2
            guard l.count > tail, Array(l[(l.count - tail)..<(l.count - 66)]) == key,
                  l[l.count - 2] == UInt8(ascii: "\""), l[l.count - 1] == UInt8(ascii: "}") else {
                report.firstProblem = "line \(lineNumber): entry has no trailing entry_sha256 (edited or not a custody entry)"
                return report
            }
            let recorded = String(decoding: l[(l.count - 66)..<(l.count - 2)], as: UTF8.self)
            let body = Array(l[..<(l.count - tail)]) + [UInt8(ascii: "}")]
            let computed = Hex.string(SHA256.hash(data: body))
            guard let obj = try? JSONSerialization.jsonObject(with: Data(l)) as? [String: Any] else {
                report.firstProblem = "line \(lineNumber): not a JSON object"
                return report
            }
            let seq = (obj["seq"] as? NSNumber)?.int64Value ?? -1
            let name = "line \(lineNumber) (seq \(seq)\(obj["file"].map { ", file \($0)" } ?? ""))"
            guard computed == recorded else {
                report.firstProblem = "\(name): entry_sha256 does not match the entry's content (the entry was edited)"
                return report
            }
            guard (obj["prev_sha256"] as? String) == prev else {
                report.firstProblem = "\(name): prev_sha256 does not match the entry before it (an entry was removed, inserted or reordered, or the previous one was re-hashed)"
                return report
            }
            guard seq == prevSeq + 1 else {
                report.firstProblem = "\(name): sequence number \(seq) follows \(prevSeq)"
                return report
            }
            prev = recorded
            prevSeq = seq
            report.entries.append(obj)
        }
        return report
    }

    /// The chain, then every evidence file that the log says still exists: present, same size, same SHA-256.
    /// Files are looked up in `evidenceDirectory`, else next to the log.
    public static func verify(path: String, evidenceDirectory: String? = nil) -> Report {
        var report = verifyChain(path: path)
        if report.firstProblem != nil { return report }
        let dir = evidenceDirectory ?? (path as NSString).deletingLastPathComponent
        var deleted = Set<String>()
        for e in report.entries where (e["action"] as? String) == CustodyAction.deleted {
            if let f = e["file"] as? String { deleted.insert(f) }
        }
        for (i, e) in report.entries.enumerated() where (e["action"] as? String) == CustodyAction.closed {
            guard let file = e["file"] as? String, let expected = e["sha256"] as? String else {
                report.firstProblem = "line \(i + 1): evidence entry without file or sha256"
                return report
            }
            let name = "line \(i + 1) (seq \(e["seq"] ?? "?"), file \(file))"
            if deleted.contains(file) { report.filesDeleted += 1; continue }
            let full = (dir as NSString).appendingPathComponent(file)
            guard let actual = sha256(ofFile: full) else {
                report.firstProblem = "\(name): evidence file is missing or unreadable at \(full), and no deletion is logged"
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

    /// Streams a file through SHA-256 (evidence files can be large).
    public static func sha256(ofFile path: String) -> String? {
        guard let f = fopen(path, "rb") else { return nil }
        defer { fclose(f) }
        var h = SHA256()
        var buf = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = fread(&buf, 1, buf.count, f)
            if n > 0 { buf.withUnsafeBytes { h.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[0..<n])) } }
            if n < buf.count {
                if ferror(f) != 0 { return nil }
                break
            }
        }
        return Hex.string(h.finalize())
    }
}

/// `action` values in the custody log.
public enum CustodyAction {
    public static let closed = "evidence_closed"
    public static let deleted = "evidence_deleted"
}

public struct EvidenceError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ d: String) { description = d }
}
