import ConfigKit
import PacketCore

/// Tuning of the non-standard-port C2 detector, from `Rules/c2.yaml` (every key optional; the defaults
/// below are the shipped file's values).
public struct C2PortRules: RulesDocument {
    public static let fileName = "c2.yaml"
    public var enabled = true
    /// `network.direction` values judged (originator → responder). Inbound is a server's business, not C2.
    public var directions: Set<NetworkDirection> = [.outbound, .internal, .external]
    /// Score (0–100) at which an alert is raised.
    public var threshold = 40.0
    /// Base score per finding.
    public var baseOtherProtocolsPort = 55.0
    public var baseUnusualPort = 15.0
    public var baseUnknownOnStandardPort = 30.0
    public var baseUnknownOnUnusualPort = 10.0
    /// Weights added on top, each scaled 0…1.
    public var weightDuration = 15.0
    public var weightBytes = 15.0
    public var weightRepetition = 15.0
    public var weightRarePort = 10.0
    public var weightSuspiciousPort = 20.0
    /// Evidence beyond the port: a home host talking to the outside, a client that named no server
    /// (HTTP Host an IP literal or absent, TLS without SNI), a channel that mostly or only sends.
    public var weightOutbound = 5.0
    public var weightNoServerName = 15.0
    public var weightAsymmetry = 10.0
    /// Asymmetric: at least this share of the pair's payload came from the client …
    public var asymmetryRatio = 0.8
    /// … and at least this many client payload bytes. Also the least a TCP session whose server never
    /// sent payload must carry to be judged at all.
    public var asymmetryMinBytes: UInt64 = 4096
    /// Learned baseline of services (server, port, transport, protocol): one seen during the learning
    /// period (counted from the first session judged), or used by at least `establishedClients`
    /// distinct clients (0: prevalence not used), is an established service and not judged.
    public var learningPeriod = 0.0
    public var establishedClients = 5
    /// Services remembered (stalest eighth evicted beyond it, counted).
    public var maxServices = 65_536
    /// The duration and bytes weights count from these floors (log-scaled up to the `…Full` values).
    public var durationFloor = 60.0
    public var durationFull = 3600.0
    public var bytesFloor = 10_000.0
    public var bytesFull = 10_000_000.0
    public var repetitionFull = 10.0
    /// A port seen with fewer distinct servers than this counts as rare.
    public var rarePortServers = 3
    /// Payload bytes each direction must carry: failed connections and scans are not C2.
    public var minPayloadBytes: UInt64 = 1
    /// One alert per (source, destination, port) within this many seconds.
    public var suppressSeconds = 86_400.0
    /// Pairs remembered for repetition (oldest evicted beyond it).
    public var maxPairs = 65_536
    /// The ports each identifiable protocol owns (`AppProtocol` names).
    public var standardPorts: [String: PortSet] = C2PortRules.defaultStandardPorts
    /// Ports of services we do not identify by content (databases, mail retrieval, …): unknown content
    /// there is expected, and a known protocol there is a mismatch.
    public var otherServices: [String: PortSet] = C2PortRules.defaultOtherServices
    /// Ports commonly chosen by attack frameworks (Metasploit's 4444, …): a bonus, never an alert alone.
    public var suspiciousPorts = PortSet([4444...4445, 1337...1337, 31337...31337, 6666...6666, 12345...12345, 54321...54321])
    public var allowDestinations: [IPNetwork] = []
    public var allowPorts = PortSet()
    /// Accepted `protocol/port` combinations, e.g. `http/8081`.
    public var allowProtocolPorts: Set<String> = C2PortRules.vendorProtocolPorts
    /// Vendor and alternate ports of ordinary services: accepted for their protocol, without making the
    /// port one whose unknown content is a finding (Apple push on 5223 is TLS; Huawei's push there is not).
    public static let vendorProtocolPorts: Set<String> = [
        "tls/5223", "tls/4443", "tls/7443", "tls/9443", "tls/10443", "tls/5671", "tls/8531", "tls/9093",
        "http/8008", "http/8081",
    ]
    /// The "encrypted session to a bare IP" rule (TLS/QUIC without SNI), `encrypted_to_bare_ip:`.
    public var bareIP = BareIPSessionRules()

    public init() {}

    static func set(_ ports: [Int]) -> PortSet { PortSet(ports.map { UInt16($0)...UInt16($0) }) }

    public static let defaultStandardPorts: [String: PortSet] = [
        "http": set([80, 8080, 8000, 3128, 5985, 47001, 5357, 5358]),
        "tls": set([443, 8443, 993, 995, 465, 636, 853, 989, 990, 3269, 5061, 5986, 6697, 3389, 8883]),
        "ssh": set([22]),
        "dns": set([53]),
        "smb": set([445, 139]),
        "netbios": set([137, 138, 139]),
        "rdp": set([3389]),
        "smtp": set([25, 587, 465, 2525]),
        "ftp": set([21]),
        "irc": set([6660, 6661, 6662, 6663, 6664, 6665, 6666, 6667, 6668, 6669, 6697, 7000, 8000]),
        "dce_rpc": PortSet([135...135, 593...593, 1024...65535]),
        "kerberos": set([88, 464]),
        "ldap": set([389, 3268]),
        "cldap": set([389]),
        "onc_rpc": PortSet([1...65535]),
        "cotp": set([102]),
        "s7comm": set([102]),
        "mms": set([102]),
        "modbus": set([502]),
        "dnp3": set([20000]),
        "mysql": set([3306]),
        "postgresql": set([5432]),
        "redis": set([6379]),
        "vnc": PortSet([5900...5910]),
        "pop3": set([110]),
        "imap": set([143]),
        "mqtt": set([1883]),
        "telnet": set([23]),
        "stun": PortSet([1...65535]),
        "ssdp": set([1900]),
        "quic": set([443, 80, 8443]),
        "ntp": set([123]),
        "dhcp": set([67, 68, 546, 547]),
        "snmp": set([161, 162]),
        "sip": set([5060, 5061]),
        "mdns": set([5353]),
        "llmnr": set([5355]),
    ]

    public static let defaultOtherServices: [String: PortSet] = [
        "mssql": set([1433, 1434]), "oracle": set([1521]),
        "mongodb": set([27017]), "memcached": set([11211]), "nfs": set([2049]),
        "amqp": set([5672]), "xmpp": set([5222, 5269]), "iscsi": set([3260]),
        "kafka": set([9092]), "syslog": set([514, 601, 6514]), "radius": set([1812, 1813]), "openvpn": set([1194]),
        "ipsec": set([500, 4500]), "ws_discovery": set([3702]), "rsync": set([873]), "jetdirect": set([9100]),
        "ethernet_ip": set([44818, 2222]), "bacnet": set([47808]), "opc_ua": set([4840]),
    ]

    static let keys: Set<String> = ["enabled", "directions", "threshold", "base", "weights", "duration_full", "bytes_full",
                                    "repetition_full", "rare_port_servers", "min_payload_bytes", "suppress", "max_pairs",
                                    "standard_ports", "other_services", "suspicious_ports", "allow", "encrypted_to_bare_ip",
                                    "asymmetry_ratio", "asymmetry_min_bytes", "baseline", "duration_floor", "bytes_floor"]

    /// Parses the `nonstandard_port_c2:` section of `c2.yaml`, reporting every mistake with its line.
    public static func parse(_ root: ConfigValue) throws(ConfigIssues) -> C2PortRules {
        var rules = C2PortRules()
        var r = ConfigReader()
        let top = r.table(root, allowed: ["nonstandard_port_c2"])
        guard let section = top["nonstandard_port_c2"] else {
            if !r.issues.isEmpty { throw ConfigIssues(r.issues) }
            return rules
        }
        let t = r.table(section, allowed: keys)
        if let v = r.bool(t["enabled"]) { rules.enabled = v }
        if let v = RuleReading.directions(t["directions"], &r) { rules.directions = v }
        if let v = r.double(t["threshold"], in: 0...100) { rules.threshold = v }
        if let bv = t["base"] {
            let b = r.table(bv, allowed: ["other_protocols_port", "unusual_port", "unknown_on_standard_port", "unknown_on_unusual_port"])
            if let v = r.double(b["other_protocols_port"], in: 0...100) { rules.baseOtherProtocolsPort = v }
            if let v = r.double(b["unusual_port"], in: 0...100) { rules.baseUnusualPort = v }
            if let v = r.double(b["unknown_on_standard_port"], in: 0...100) { rules.baseUnknownOnStandardPort = v }
            if let v = r.double(b["unknown_on_unusual_port"], in: 0...100) { rules.baseUnknownOnUnusualPort = v }
        }
        if let wv = t["weights"] {
            let w = r.table(wv, allowed: ["duration", "bytes", "repetition", "rare_port", "suspicious_port", "outbound",
                                          "no_server_name", "asymmetry"])
            if let v = r.double(w["outbound"], in: 0...100) { rules.weightOutbound = v }
            if let v = r.double(w["no_server_name"], in: 0...100) { rules.weightNoServerName = v }
            if let v = r.double(w["asymmetry"], in: 0...100) { rules.weightAsymmetry = v }
            if let v = r.double(w["duration"], in: 0...100) { rules.weightDuration = v }
            if let v = r.double(w["bytes"], in: 0...100) { rules.weightBytes = v }
            if let v = r.double(w["repetition"], in: 0...100) { rules.weightRepetition = v }
            if let v = r.double(w["rare_port"], in: 0...100) { rules.weightRarePort = v }
            if let v = r.double(w["suspicious_port"], in: 0...100) { rules.weightSuspiciousPort = v }
        }
        if let v = r.seconds(t["duration_full"], in: 1...604_800) { rules.durationFull = v }
        if let v = r.double(t["bytes_full"], in: 1...1e15) { rules.bytesFull = v }
        if let v = r.seconds(t["duration_floor"], in: 0...604_800) { rules.durationFloor = v }
        if let v = r.double(t["bytes_floor"], in: 0...1e15) { rules.bytesFloor = v }
        if let v = r.double(t["repetition_full"], in: 1...1e6) { rules.repetitionFull = v }
        if let v = r.int(t["rare_port_servers"], in: 0...64) { rules.rarePortServers = v }
        if let v = r.int(t["min_payload_bytes"], in: 0...1_000_000) { rules.minPayloadBytes = UInt64(v) }
        if let v = r.seconds(t["suppress"], in: 0...2_592_000) { rules.suppressSeconds = v }
        if let v = r.int(t["max_pairs"], in: 16...10_000_000) { rules.maxPairs = v }
        if let v = r.double(t["asymmetry_ratio"], in: 0.5...1) { rules.asymmetryRatio = v }
        if let v = r.int(t["asymmetry_min_bytes"], in: 1...1_000_000_000) { rules.asymmetryMinBytes = UInt64(v) }
        if let bv = t["baseline"] {
            let b = r.table(bv, allowed: ["learning_period", "established_clients", "max_services"])
            if let v = r.seconds(b["learning_period"], in: 0...31_536_000) { rules.learningPeriod = v }
            if let v = r.int(b["established_clients"], in: 0...64) { rules.establishedClients = v }
            if let v = r.int(b["max_services"], in: 16...10_000_000) { rules.maxServices = v }
        }
        if let sv = t["standard_ports"] {
            let names = Set(AppProtocol.allCases.map { "\($0.name)" })
            var map: [String: PortSet] = [:]
            for (k, v) in sv.entries ?? [] {
                if !names.contains(k) { r.report(v, "'\(k)' is not a protocol the sensor identifies (one of \(names.sorted().joined(separator: ", ")))"); continue }
                if let p = RuleReading.ports(v, &r) { map[k] = p }
            }
            if sv.entries == nil { r.report(sv, "expected a mapping of protocol: [ports]") }
            rules.standardPorts = map
        }
        if let sv = t["other_services"] {
            var map: [String: PortSet] = [:]
            for (k, v) in sv.entries ?? [] { if let p = RuleReading.ports(v, &r) { map[k] = p } }
            if sv.entries == nil { r.report(sv, "expected a mapping of service: [ports]") }
            rules.otherServices = map
        }
        if let v = RuleReading.ports(t["suspicious_ports"], &r) { rules.suspiciousPorts = v }
        if let av = t["allow"] {
            let a = r.table(av, allowed: ["destinations", "ports", "protocol_ports"])
            if let v = RuleReading.networks(a["destinations"], &r) { rules.allowDestinations = v }
            if let v = RuleReading.ports(a["ports"], &r) { rules.allowPorts = v }
            if let list = r.stringList(a["protocol_ports"]) {
                for (i, s) in list.enumerated() {
                    let parts = s.split(separator: "/")
                    if parts.count == 2, AppProtocol.allCases.contains(where: { "\($0.name)" == parts[0] }), let p = Int(parts[1]), 0...65535 ~= p {
                        rules.allowProtocolPorts.insert(s)
                    } else {
                        r.report(a["protocol_ports"]!.items?[i] ?? a["protocol_ports"]!, "'\(s)' is not protocol/port (e.g. http/8081)")
                    }
                }
            }
        }
        if let bv = t["encrypted_to_bare_ip"] { rules.bareIP = BareIPSessionRules.parse(bv, &r) }
        if !r.issues.isEmpty { throw ConfigIssues(r.issues) }
        return rules
    }
}
