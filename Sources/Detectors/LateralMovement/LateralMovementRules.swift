import ConfigKit
import PacketCore

/// Thresholds, windows and allowlists of the lateral-movement detector (`Rules/lateral-movement.yaml`).
///
/// Every value has a default, so a missing file means "defaults"; a present file is checked completely
/// and its mistakes are reported with file, line and column (ConfigKit).
public struct LateralMovementRules: RulesDocument {
    public var enabled = true
    /// Only internal-to-internal traffic (both ends in the home networks) is considered.
    public var internalOnly = true

    // Allowlists.
    public var adminHosts: [IPNetwork] = []
    public var domainControllers: [IPNetwork] = []
    public var backupServers: [IPNetwork] = []
    /// Learn domain controllers from Kerberos replies (a KDC is a DC).
    public var learnDomainControllers = true

    // Correlation.
    /// An admin-share write followed by remote execution on the same target within this many seconds
    /// is one high-severity alert.
    public var toolTransferWindow: Double = 600
    /// Admin-share alerts wait this long for a remote execution that would fold them into the combined alert.
    public var adminShareAlertDelay: Double = 60
    /// The same rule for the same source (and target) fires at most once per this many seconds.
    public var suppression: Double = 3600

    // Fan-out.
    public var fanOutPorts: Set<UInt16> = [445, 139, 135, 3389, 5985, 5986, 22]
    public var fanOutWindow: Double = 300
    public var fanOutDistinctHosts = 10
    /// Worm-like spread measured as a rate of new destinations (never reached before by the source within
    /// `fanOutSustainedWindow`): this many within one minute …
    public var fanOutNewPerMinute = 5
    /// … or, over `fanOutSustainedWindow`, an average of at least this many per minute (and never fewer
    /// than `fanOutNewPerMinute` in all).
    public var fanOutSustainedRate: Double = 0.5
    public var fanOutSustainedWindow: Double = 1800

    // First-seen edges.
    public var edgeServices: [UInt16: String] = [3389: "rdp", 5985: "winrm", 5986: "winrm", 22: "ssh"]
    /// No first-seen alerts until this long after the first packet (edges seen meanwhile are the baseline).
    /// 0 suits incident replay (no baseline exists); live sensors typically use a day or more.
    public var learningPeriod: Double = 0
    /// With no baseline (`learningPeriod` 0) every edge is new, so an edge of a service not listed here
    /// is reported only once its source opened new edges of that service to `edgeTargetsWithoutBaseline`
    /// distinct targets within `fanOutWindow` (a pivot across hosts, not one admin session).
    public var edgeServicesWithoutBaseline: Set<String> = ["winrm"]
    public var edgeTargetsWithoutBaseline = 3

    // Authentication failures.
    public var authWindow: Double = 600
    public var sprayDistinctUsers = 5
    public var bruteForceFailures = 10

    // Interactive-login brute force (SSH, RDP: the authentication is encrypted, so sessions are counted).
    public var loginServices: [UInt16: String] = [22: "ssh", 3389: "rdp"]
    public var loginWindow: Double = 300
    /// Short sessions from one source to one server within the window (brute force) …
    public var loginSessions = 15
    /// … or at least `loginSessions` short sessions spread over this many servers (spraying).
    public var loginDistinctServers = 5
    /// A session is "short" when it carried data both ways, lasted at most this long and moved at most
    /// `loginMaxSessionBytes` of payload (a failed login, not a working session).
    public var loginMaxSessionSeconds: Double = 30
    public var loginMaxSessionBytes = 32_768

    // Zerologon.
    /// Netlogon secure-channel setup calls (ReqChallenge, Authenticate*) from one source to one server
    /// within `netlogonWindow` that make a Zerologon burst (a client makes one or two per boot).
    public var netlogonBurstCalls = 20
    public var netlogonWindow: Double = 120

    // Share enumeration.
    public var shareEnumerationEnabled = true

    // Bounds.
    public var maxHosts = 65_536
    public var maxPairs = 65_536
    public var maxEdges = 262_144

    public init() {}

    public static let fileName = "lateral-movement.yaml"

    public static func parse(_ root: ConfigValue) throws(ConfigIssues) -> LateralMovementRules {
        var r = LateralMovementRules()
        var c = ConfigReader()
        let top = c.table(root, allowed: ["enabled", "internal_only", "allowlists", "correlation", "fan_out", "first_seen_edges",
                                          "authentication", "share_enumeration", "limits", "login_brute_force", "zerologon"])
        if let b = c.bool(top["enabled"]) { r.enabled = b }
        if let b = c.bool(top["internal_only"]) { r.internalOnly = b }
        func networks(_ v: ConfigValue?) -> [IPNetwork]? {
            guard let v else { return nil }
            var out: [IPNetwork] = []
            for item in v.isNull ? [] : (v.items ?? [v]) {
                guard let s = c.string(item) else { continue }
                if let n = IPNetwork(s) {
                    out.append(n)
                } else if let a = IPAddress(s) {
                    out.append(IPNetwork(address: a, prefixLength: a.isIPv6 ? 128 : 32))
                } else {
                    c.report(item, "'\(s)' is not an address or network (expected e.g. 10.0.0.5 or 10.0.0.0/24)")
                }
            }
            return out
        }
        if let v = top["allowlists"] {
            let t = c.table(v, allowed: ["admin_hosts", "domain_controllers", "backup_servers", "learn_domain_controllers"])
            if let n = networks(t["admin_hosts"]) { r.adminHosts = n }
            if let n = networks(t["domain_controllers"]) { r.domainControllers = n }
            if let n = networks(t["backup_servers"]) { r.backupServers = n }
            if let b = c.bool(t["learn_domain_controllers"]) { r.learnDomainControllers = b }
        }
        if let v = top["correlation"] {
            let t = c.table(v, allowed: ["tool_transfer_window", "admin_share_alert_delay", "suppression"])
            if let s = c.seconds(t["tool_transfer_window"], in: 1...86400) { r.toolTransferWindow = s }
            if let s = c.seconds(t["admin_share_alert_delay"], in: 0...3600) { r.adminShareAlertDelay = s }
            if let s = c.seconds(t["suppression"], in: 0...604_800) { r.suppression = s }
        }
        func ports(_ v: ConfigValue?) -> [UInt16]? {
            guard let v, let items = v.items else { if let v { c.report(v, "expected a list of ports") }; return nil }
            return items.compactMap { c.int($0, in: 1...65535).map(UInt16.init) }
        }
        if let v = top["fan_out"] {
            let t = c.table(v, allowed: ["ports", "window", "distinct_hosts", "new_per_minute", "sustained_rate", "sustained_window"])
            if let p = ports(t["ports"]) { r.fanOutPorts = Set(p) }
            if let s = c.seconds(t["window"], in: 1...86400) { r.fanOutWindow = s }
            if let n = c.int(t["distinct_hosts"], in: 2...100_000) { r.fanOutDistinctHosts = n }
            if let n = c.int(t["new_per_minute"], in: 2...100_000) { r.fanOutNewPerMinute = n }
            if let x = c.double(t["sustained_rate"], in: 0.01...10_000) { r.fanOutSustainedRate = x }
            if let s = c.seconds(t["sustained_window"], in: 60...86400) { r.fanOutSustainedWindow = s }
        }
        if let v = top["first_seen_edges"] {
            let t = c.table(v, allowed: ["services", "learning_period", "without_baseline"])
            if let sv = t["services"] {
                let st = c.table(sv, allowed: ["rdp", "winrm", "ssh"])
                var map: [UInt16: String] = [:]
                for (name, value) in st { for p in ports(value) ?? [] { map[p] = name } }
                r.edgeServices = map
            }
            if let s = c.seconds(t["learning_period"], in: 0...31_536_000) { r.learningPeriod = s }
            if let wb = t["without_baseline"] {
                let wt = c.table(wb, allowed: ["services", "targets"])
                if let list = wt["services"] {
                    var names = Set<String>()
                    for item in list.isNull ? [] : (list.items ?? [list]) {
                        guard let n = c.string(item) else { continue }
                        if ["rdp", "winrm", "ssh"].contains(n) { names.insert(n) } else { c.report(item, "'\(n)' is not a service (rdp, winrm, ssh)") }
                    }
                    r.edgeServicesWithoutBaseline = names
                }
                if let n = c.int(wt["targets"], in: 1...100_000) { r.edgeTargetsWithoutBaseline = n }
            }
        }
        if let v = top["authentication"] {
            let t = c.table(v, allowed: ["window", "spray_distinct_users", "brute_force_failures"])
            if let s = c.seconds(t["window"], in: 1...86400) { r.authWindow = s }
            if let n = c.int(t["spray_distinct_users"], in: 2...100_000) { r.sprayDistinctUsers = n }
            if let n = c.int(t["brute_force_failures"], in: 2...100_000) { r.bruteForceFailures = n }
        }
        if let v = top["login_brute_force"] {
            let t = c.table(v, allowed: ["services", "window", "sessions", "distinct_servers", "max_session_seconds", "max_session_bytes"])
            if let sv = t["services"] {
                let st = c.table(sv, allowed: ["ssh", "rdp"])
                var map: [UInt16: String] = [:]
                for (name, value) in st { for p in ports(value) ?? [] { map[p] = name } }
                r.loginServices = map
            }
            if let s = c.seconds(t["window"], in: 1...86400) { r.loginWindow = s }
            if let n = c.int(t["sessions"], in: 2...100_000) { r.loginSessions = n }
            if let n = c.int(t["distinct_servers"], in: 2...100_000) { r.loginDistinctServers = n }
            if let s = c.seconds(t["max_session_seconds"], in: 1...86400) { r.loginMaxSessionSeconds = s }
            if let n = c.int(t["max_session_bytes"], in: 1...1_000_000_000) { r.loginMaxSessionBytes = n }
        }
        if let v = top["zerologon"] {
            let t = c.table(v, allowed: ["burst_calls", "window"])
            if let n = c.int(t["burst_calls"], in: 2...10_000) { r.netlogonBurstCalls = n }
            if let s = c.seconds(t["window"], in: 1...86400) { r.netlogonWindow = s }
        }
        if let v = top["share_enumeration"] {
            let t = c.table(v, allowed: ["enabled"])
            if let b = c.bool(t["enabled"]) { r.shareEnumerationEnabled = b }
        }
        if let v = top["limits"] {
            let t = c.table(v, allowed: ["max_hosts", "max_pairs", "max_edges"])
            if let n = c.int(t["max_hosts"], in: 16...10_000_000) { r.maxHosts = n }
            if let n = c.int(t["max_pairs"], in: 16...10_000_000) { r.maxPairs = n }
            if let n = c.int(t["max_edges"], in: 16...100_000_000) { r.maxEdges = n }
        }
        if !c.issues.isEmpty { throw ConfigIssues(c.issues) }
        return r
    }
}
