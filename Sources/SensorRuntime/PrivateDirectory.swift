#if canImport(Glibc)
import Glibc
#endif

/// Directories that hold evidence, spooled events or state: they name hosts and users and may hold
/// payloads and credentials, so only the sensor (and its group, for the IR team) may read them.
///
/// `prepare` creates a missing directory with the given mode (0750 by default, 0700 for key material)
/// owned by the account the sensor runs as, and refuses an existing one that anyone else can read,
/// write or enter, that is a symlink, or that belongs to a third user. The check runs at start, so a
/// world-readable evidence or spool directory is a start-up error, not a silent leak.
public enum PrivateDirectory {
    public struct Problem: Error, CustomStringConvertible, Equatable {
        public var path: String
        public var reason: String
        public var description: String { "\(path): \(reason)" }
    }

    /// Creates or checks `path`. `owner` is the account the sensor will run as (nil: the current one).
    public static func prepare(_ path: String, mode: mode_t = 0o750, owner: (uid: uid_t, gid: gid_t)? = nil) throws(Problem) {
        var st = stat()
        if lstat(path, &st) != 0 {
            guard errno == ENOENT else { throw Problem(path: path, reason: String(cString: strerror(errno))) }
            try createParents(of: path)
            if mkdir(path, mode) == 0 {
                try adopt(path, mode: mode, owner: owner)
            } else if errno != EEXIST {
                throw Problem(path: path, reason: "cannot create: \(String(cString: strerror(errno)))")
            }
            // Created by someone else in between (EEXIST): checked like any existing directory, never changed.
            guard lstat(path, &st) == 0 else { throw Problem(path: path, reason: String(cString: strerror(errno))) }
        }
        try check(path, st, owner: owner)
    }

    /// Sets the mode (mkdir applied the umask) and owner of the directory just created, through a
    /// descriptor opened without following a symlink: if the name was swapped for a link in between,
    /// nothing is changed and the open fails.
    static func adopt(_ path: String, mode: mode_t, owner: (uid: uid_t, gid: gid_t)?) throws(Problem) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw Problem(path: path, reason: "changed while being created: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        guard fchmod(fd, mode) == 0 else { throw Problem(path: path, reason: "chmod: \(String(cString: strerror(errno)))") }
        if let owner, geteuid() == 0, fchown(fd, owner.uid, owner.gid) != 0 {
            throw Problem(path: path, reason: "chown: \(String(cString: strerror(errno)))")
        }
    }

    /// Checks an existing directory without changing it.
    public static func check(_ path: String, owner: (uid: uid_t, gid: gid_t)? = nil) throws(Problem) {
        var st = stat()
        guard lstat(path, &st) == 0 else { throw Problem(path: path, reason: String(cString: strerror(errno))) }
        try check(path, st, owner: owner)
    }

    static func check(_ path: String, _ st: stat, owner: (uid: uid_t, gid: gid_t)?) throws(Problem) {
        let type = st.st_mode & S_IFMT
        if type == S_IFLNK { throw Problem(path: path, reason: "is a symbolic link; give the real directory") }
        guard type == S_IFDIR else { throw Problem(path: path, reason: "is not a directory") }
        let other = st.st_mode & 0o007
        if other != 0 {
            let mode = String(st.st_mode & 0o7777, radix: 8)
            throw Problem(path: path, reason: "is accessible to every user (mode \(mode)); it holds sensitive data: chmod o-rwx (0750 or 0700)")
        }
        let uid = owner?.uid ?? geteuid()
        if st.st_uid != uid && st.st_uid != 0 {
            throw Problem(path: path, reason: "belongs to uid \(st.st_uid), not to the sensor's user (uid \(uid)) or root")
        }
    }

    /// Creates missing parent directories with 0755 (they hold nothing themselves).
    static func createParents(of path: String) throws(Problem) {
        var prefix = ""
        let parts = path.split(separator: "/", omittingEmptySubsequences: true).dropLast()
        if path.hasPrefix("/") { prefix = "" }
        for p in parts {
            prefix += "/" + p
            if path.hasPrefix("/") == false && prefix.hasPrefix("/") { prefix.removeFirst() }
            var st = stat()
            if stat(prefix, &st) == 0 { continue }
            guard mkdir(prefix, 0o755) == 0 || errno == EEXIST else {
                throw Problem(path: path, reason: "cannot create \(prefix): \(String(cString: strerror(errno)))")
            }
        }
    }
}
