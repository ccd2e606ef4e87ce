#if canImport(Glibc)
import Glibc
#endif

/// The one way the sensor reads its own input files: the config, every rules file, indicator files.
///
/// Only a regular file is read (a FIFO, `/dev/zero` or a socket would hang start-up or never end), with a
/// size bound checked before and while reading. A file that does not exist (ENOENT) is the only
/// condition a caller may treat as "use the defaults"; anything else — permission denied, a directory in
/// its place, too large — is an error naming the file.
public enum BoundedFile {
    /// The largest config or rules file read: far above any real one, small enough to hold in memory.
    public static let defaultLimit = 16 << 20

    public enum Failure: Error, Equatable, CustomStringConvertible {
        /// ENOENT: the file (or a directory on its path) does not exist.
        case missing
        case notRegular(kind: String)
        case tooLarge(limit: Int)
        case system(errno: Int32)

        public var description: String {
            switch self {
            case .missing: return "cannot read: \(String(cString: strerror(ENOENT)))"
            case .notRegular(let kind): return "is \(kind), not a regular file"
            case .tooLarge(let limit): return "is larger than \(limit / (1 << 20)) MiB, the limit for this file"
            case .system(let e): return "cannot read: \(String(cString: strerror(e)))"
            }
        }
    }

    /// The bytes of the regular file at `path` (symlinks followed), at most `limit` of them.
    public static func read(_ path: String, limit: Int = defaultLimit) throws(Failure) -> [UInt8] {
        // O_NONBLOCK: opening a FIFO for reading must not wait for a writer; the type check follows.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard fd >= 0 else { throw errno == ENOENT ? Failure.missing : Failure.system(errno: errno) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw .system(errno: errno) }
        switch st.st_mode & S_IFMT {
        case S_IFREG: break
        case S_IFDIR: throw .notRegular(kind: "a directory")
        case S_IFIFO: throw .notRegular(kind: "a FIFO")
        case S_IFCHR, S_IFBLK: throw .notRegular(kind: "a device")
        case S_IFSOCK: throw .notRegular(kind: "a socket")
        default: throw .notRegular(kind: "a special file")
        }
        guard st.st_size <= limit else { throw .tooLarge(limit: limit) }
        // The size can change while reading (a file being rewritten): the bound holds on what is read.
        var bytes = [UInt8](repeating: 0, count: min(Int(st.st_size), limit) + 1)
        var count = 0
        while true {
            if count == bytes.count {
                guard bytes.count <= limit else { throw .tooLarge(limit: limit) }
                bytes.append(contentsOf: repeatElement(0, count: min(bytes.count, limit + 1 - bytes.count)))
            }
            let n = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + count, $0.count - count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw .system(errno: errno)
            }
            if n == 0 { break }
            count += n
        }
        guard count <= limit else { throw .tooLarge(limit: limit) }
        bytes.removeSubrange(count...)
        return bytes
    }
}
