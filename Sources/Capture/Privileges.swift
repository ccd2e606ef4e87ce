import CSensorShims

#if canImport(Glibc)
import Glibc
#endif

/// A Unix account the sensor switches to after opening its capture handles.
public struct Account: Sendable, Equatable, CustomStringConvertible {
    public var user: String
    public var uid: uid_t
    public var gid: gid_t
    public var group: String

    /// Looks up `user` (and `group`, else the user's primary group) in the system's account databases.
    public static func lookup(user: String, group: String? = nil) throws(PrivilegeError) -> Account {
        guard let pw = getpwnam(user) else { throw .unknownUser(user) }
        let uid = pw.pointee.pw_uid
        var gid = pw.pointee.pw_gid
        var groupName = group
        if let group {
            guard let gr = getgrnam(group) else { throw .unknownGroup(group) }
            gid = gr.pointee.gr_gid
        } else if let gr = getgrgid(gid) {
            groupName = String(cString: gr.pointee.gr_name)
        }
        return Account(user: user, uid: uid, gid: gid, group: groupName ?? String(gid))
    }

    public var description: String { "\(user)(\(uid)):\(group)(\(gid))" }
}

public enum PrivilegeError: Error, CustomStringConvertible, Equatable {
    case unknownUser(String)
    case unknownGroup(String)
    case refuseRoot
    case cannotSwitch(from: uid_t, to: Account)
    case failed(step: String, errno: Int32)
    case capabilitiesRemain([String])

    public var description: String {
        switch self {
        case .unknownUser(let u): return "unknown user '\(u)'"
        case .unknownGroup(let g): return "unknown group '\(g)'"
        case .refuseRoot:
            return "refusing to run as root: give --user NAME (the sensor switches to it after opening the interface), or --allow-root"
        case let .cannotSwitch(uid, a):
            return "running as uid \(uid), which cannot switch to \(a): start as root, or as that user with CAP_NET_RAW"
        case let .failed(step, e): return "\(step) failed: \(String(cString: strerror(e)))"
        case .capabilitiesRemain(let threads): return "capabilities remain after dropping them: \(threads.joined(separator: ", "))"
        }
    }
}

/// What the process holds after `LeastPrivilege.drop`, for the start-up log line.
public struct PrivilegeReport: Sendable, Equatable {
    public var uid: uid_t
    public var gid: gid_t
    public var effectiveCapabilities: UInt64
    public var permittedCapabilities: UInt64
    public var noNewPrivileges: Bool
}

/// Least privilege, after `tcpdump -Z` and dumpcap: capture handles are opened with CAP_NET_RAW (and
/// CAP_NET_ADMIN), then the process becomes an ordinary user with no capability at all, so a parser bug
/// reachable from the network cannot be turned into root.
///
/// Two ways in, both ending in the same state:
/// - started as root (`sudo sensor run --user sensor`): drop the bounding set, `setgroups`/`setgid`/`setuid`
///   (the kernel clears every capability on the uid change; glibc applies it to every thread);
/// - started as the service user with ambient CAP_NET_RAW/CAP_NET_ADMIN (systemd `AmbientCapabilities=`):
///   clear the capability sets.
/// Then `PR_SET_NO_NEW_PRIVS`. Capability sets and no_new_privs are per thread on Linux, so this runs
/// before the sensor starts its other threads; `verifyAllThreads` reads every thread's `CapEff` from
/// /proc to prove it, and the sensor refuses to go on if any thread still holds a capability.
public enum LeastPrivilege {
    /// Checks the plan before anything is opened: running as root needs a target account or `allowRoot`.
    public static func check(target: Account?, allowRoot: Bool) throws(PrivilegeError) {
        let euid = geteuid()
        if let target, target.uid == 0, !allowRoot { throw .refuseRoot }
        if let target {
            if euid != 0 && (target.uid != getuid() || target.uid != euid) { throw .cannotSwitch(from: euid, to: target) }
        } else if euid == 0 && !allowRoot {
            throw .refuseRoot
        }
    }

    /// Drops to `target` (if given) and clears every capability. Call after the capture handles are open
    /// and before any other thread is started.
    public static func drop(to target: Account?, allowRoot: Bool) throws(PrivilegeError) -> PrivilegeReport {
        try check(target: target, allowRoot: allowRoot)
        if geteuid() == 0 {
            // Needs CAP_SETPCAP, which only the root path has; systemd's CapabilityBoundingSet= covers the other.
            let e = csensor_drop_bounding_set()
            if e != 0 && e != EPERM { throw .failed(step: "dropping the capability bounding set", errno: e) }
            if let target {
                let e = csensor_switch_user(target.uid, target.gid)
                if e != 0 { throw .failed(step: "switching to \(target)", errno: e) }
            }
        }
        var e = csensor_clear_capabilities()
        if e != 0 { throw .failed(step: "clearing capabilities", errno: e) }
        e = csensor_set_no_new_privs()
        if e != 0 { throw .failed(step: "PR_SET_NO_NEW_PRIVS", errno: e) }
        if let target, target.uid != 0, geteuid() == 0 || getuid() == 0 { throw .failed(step: "leaving uid 0", errno: EPERM) }
        let remaining = verifyAllThreads()
        if !remaining.isEmpty { throw .capabilitiesRemain(remaining) }
        var eff: UInt64 = 0, perm: UInt64 = 0
        _ = csensor_current_capabilities(&eff, &perm)
        return PrivilegeReport(uid: geteuid(), gid: getegid(), effectiveCapabilities: eff, permittedCapabilities: perm,
                               noNewPrivileges: prctlNoNewPrivs())
    }

    /// Threads of this process whose effective or permitted capability set is not empty (`tid: CapEff`).
    public static func verifyAllThreads() -> [String] {
        var out: [String] = []
        guard let dir = opendir("/proc/self/task") else { return ["/proc/self/task unreadable"] }
        defer { closedir(dir) }
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
            guard name.first?.isNumber == true else { continue }
            for field in ["CapEff", "CapPrm"] {
                if let v = statusField("/proc/self/task/\(name)/status", field), v.trimmingZeros != "" {
                    out.append("thread \(name) \(field)=\(v)")
                }
            }
        }
        return out
    }

    /// A field of a /proc status file (`Uid`, `CapEff`, …), trimmed.
    public static func statusField(_ path: String, _ field: String) -> String? {
        guard let f = fopen(path, "r") else { return nil }
        defer { fclose(f) }
        var line = [CChar](repeating: 0, count: 512)
        let prefix = field + ":"
        while fgets(&line, Int32(line.count), f) != nil {
            let s = String(cString: line)
            if s.hasPrefix(prefix) {
                return String(s.dropFirst(prefix.count)).trimmed(of: " \t\n")
            }
        }
        return nil
    }

    static func prctlNoNewPrivs() -> Bool {
        statusField("/proc/self/status", "NoNewPrivs") == "1"
    }
}

extension String {
    /// The hex digits without leading zeros ("" for an all-zero mask).
    var trimmingZeros: String { String(drop { $0 == "0" }) }

    func trimmed(of set: String) -> String {
        var s = Substring(self)
        while let c = s.first, set.contains(c) { s = s.dropFirst() }
        while let c = s.last, set.contains(c) { s = s.dropLast() }
        return String(s)
    }
}
