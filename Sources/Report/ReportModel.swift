import Detectors
import Foundation

/// What the page shows, aggregated from events in one pass: alerts kept whole, everything else reduced
/// to counters and bounded tables (a report of millions of flows stays a few MB).
final class ReportModel {
    struct Alert {
        var index: Int
        var time: Int64
        var event: EventObject
        var category: String { event.string("rule.category") ?? "other" }
        var severity: Int { Int(clamping: min(max(event.int("event.severity") ?? 1, 1), 4)) }
        var ruleID: String { event.string("rule.id") ?? "" }
        var anchor: String { "alert-\(index + 1)" }
    }

    struct Tally {
        var flows: Int64 = 0
        var bytes: Int64 = 0
        mutating func add(_ b: Int64) { flows &+= 1; bytes &+= max(b, 0) }
    }

    struct Domain {
        var queries: Int64 = 0
        var responses: Int64 = 0
        var nxdomain: Int64 = 0
        var subdomains = Set<String>()
        /// Subdomains not kept once `subdomainLimit` distinct ones are held (counted, so the figure reads "≥").
        var subdomainsOverflow = false
        var nameBytes: Int64 = 0
        var answerBytes: Int64 = 0
        var entropySum = 0.0
        var entropyCount: Int64 = 0
        var types: [String: Int64] = [:]
        var pairs: [String: Int64] = [:]
        var tunnelScore: Double?
        var meanEntropy: Double { entropyCount > 0 ? entropySum / Double(entropyCount) : 0 }
    }

    struct ResolverPair {
        var queries: Int64 = 0
        var domains = Set<String>()
        var nameBytes: Int64 = 0
        var answerBytes: Int64 = 0
    }

    /// Keeps each table bounded whatever the input: past these, new keys are counted as "other".
    static let keyLimit = 200_000
    static let subdomainLimit = 50_000
    static let startsLimit = 100_000

    var alerts: [Alert] = []
    var datasets: [String: Int64] = [:]
    var unparsedLines: Int64 = 0
    var firstTime: Int64?
    var lastTime: Int64?
    var versions = Set<String>()
    var sensors = Set<String>()
    /// Last `spanwatch.stats` per (sensor, worker): counters are cumulative.
    var stats: [String: EventObject] = [:]
    /// `spanwatch.evidence` file-created events by the alert ids they hold.
    var evidenceByAlert: [String: [EventObject]] = [:]
    var evidenceRefusals: [String: Int64] = [:]

    var flows: Int64 = 0
    var flowBytes: Int64 = 0
    var talkers: [String: Tally] = [:]
    var protocols: [String: Tally] = [:]
    var countries: [String: Tally] = [:]
    var asns: [String: Tally] = [:]
    var nonStandardPorts: [String: Tally] = [:]
    var userAgents: [String: Int64] = [:]
    var httpHosts: [String: Int64] = [:]
    var tablesFull: Int64 = 0
    /// Starts per (source, destination, port, transport) and per (source, TLS SNI or HTTP Host): the
    /// connections and HTTP requests a beacon alert scored.
    var starts: [String: [Int64]] = [:]
    /// Starts of HTTP connections (their requests are the starts when `spanwatch.http` events are present).
    var httpFlowStarts: [String: [Int64]] = [:]
    /// Lateral-movement-capable sessions between hosts (SMB, DCE-RPC, RDP, WinRM, SSH) by (source, destination, service).
    var adminSessions: [String: Int64] = [:]

    var domains: [String: Domain] = [:]
    var resolverPairs: [String: ResolverPair] = [:]
    var dnsTransactions: Int64 = 0

    let standardPorts = C2PortRules.defaultStandardPorts

    static func connKey(_ src: String, _ dst: String, _ port: Int64, _ transport: String) -> String { "c\u{0}\(src)\u{0}\(dst)\u{0}\(port)\u{0}\(transport)" }
    static func hostKey(_ src: String, _ host: String) -> String { "h\u{0}\(src)\u{0}\(host)" }
    static func sessionKey(_ src: String, _ dst: String, _ service: String) -> String { "\(src)\u{0}\(dst)\u{0}\(service)" }

    func add(_ e: EventObject) {
        let ds = e.dataset
        bump(&datasets, ds.isEmpty ? "(none)" : ds, 1)
        if let v = e.string("observer.version") { if versions.count < 64 { versions.insert(v) } }
        if let n = e.string("observer.name") { if sensors.count < 64 { sensors.insert(n) } }
        let t = e.timestamp
        if ds == "spanwatch.stats" {
            let worker = e.value("spanwatch.stats.worker").map { "\($0)" } ?? "-"
            stats[(e.string("observer.name") ?? "") + "\u{0}" + worker] = e
            return
        }
        if let t, ds != "spanwatch.evidence" {
            firstTime = min(firstTime ?? t, t)
            lastTime = max(lastTime ?? t, t)
        }
        if e.kind == "alert" {
            alerts.append(Alert(index: alerts.count, time: t ?? 0, event: e))
            if e.string("rule.category") == "dns_tunneling", let d = e.string("spanwatch.dns_tunneling.domain") {
                let score = e.double("spanwatch.dns_tunneling.score") ?? e.double("event.risk_score") ?? 0
                if var domain = domains[d] ?? (domains.count < Self.keyLimit ? Domain() : nil) {
                    domain.tunnelScore = max(domain.tunnelScore ?? 0, score)
                    domains[d] = domain
                }
            }
            return
        }
        switch ds {
        case "spanwatch.flow": addFlow(e)
        case "spanwatch.http": addHTTP(e)
        case "spanwatch.dns": addDNS(e)
        case "spanwatch.evidence":
            if e.string("event.outcome") == "failure" {
                bump(&evidenceRefusals, e.string("spanwatch.evidence.refused") ?? e.string("event.reason") ?? "unknown", 1)
            } else if e.strings("event.type").contains("creation") {
                for id in e.strings("spanwatch.evidence.alert_ids") where evidenceByAlert[id] != nil || evidenceByAlert.count < Self.keyLimit {
                    evidenceByAlert[id, default: []].append(e)
                }
            }
        default: break
        }
    }

    func bump(_ table: inout [String: Int64], _ key: String, _ n: Int64) {
        if table[key] != nil || table.count < Self.keyLimit { table[key, default: 0] &+= n } else { tablesFull &+= 1 }
    }

    func bump(_ table: inout [String: Tally], _ key: String, _ bytes: Int64) {
        if table[key] != nil || table.count < Self.keyLimit { table[key, default: Tally()].add(bytes) } else { tablesFull &+= 1 }
    }

    func addFlow(_ e: EventObject) {
        flows &+= 1
        let bytes = max(e.int("network.bytes") ?? 0, 0)
        flowBytes &+= bytes
        let src = e.string("source.ip") ?? "?", dst = e.string("destination.ip") ?? "?"
        bump(&talkers, src, bytes)
        if dst != src { bump(&talkers, dst, bytes) }
        let transport = e.string("network.transport") ?? "ip/\(e.string("network.iana_number") ?? "?")"
        let proto = e.string("network.protocol")
        bump(&protocols, proto.map { "\($0)/\(transport)" } ?? transport, bytes)
        // The remote side of a flow that leaves the home networks.
        let direction = e.string("network.direction") ?? ""
        let remote = direction == "inbound" ? "source" : direction == "outbound" || direction == "external" ? "destination" : nil
        if let remote {
            let country = e.string("\(remote).geo.country_iso_code") ?? e.string("\(remote).geo.country_name")
            bump(&countries, country ?? "(no GeoIP)", bytes)
            if let n = e.int("\(remote).as.number") {
                let org = e.string("\(remote).as.organization.name") ?? ""
                bump(&asns, "AS\(n) \(org)", bytes)
            } else {
                bump(&asns, "(no ASN)", bytes)
            }
        }
        let port = e.int("destination.port")
        if let proto, let port, let set = standardPorts[proto], (0...65535).contains(port), !set.contains(UInt16(port)) {
            bump(&nonStandardPorts, "\(proto)\u{0}\(port)\u{0}\(transport)", bytes)
        }
        if let ua = e.string("user_agent.original") { bump(&userAgents, ua, 1) }
        if let h = e.string("url.domain") { bump(&httpHosts, h, 1) }
        if let port, let service = Self.adminService(proto: proto, port: port) {
            bump(&adminSessions, Self.sessionKey(src, dst, service), 1)
        }
        // The starts the beacon detector samples: UDP flows the originator sent payload in, established TCP
        // flows with payload; HTTP connections by their requests (`spanwatch.http`), their flow starts kept
        // apart for event files without HTTP events.
        guard transport == "udp" ? (e.int("spanwatch.flow.orig_payload_bytes") ?? 0) > 0
                : e.bool("spanwatch.flow.established") == true && (e.int("spanwatch.flow.orig_payload_bytes") ?? 0) > 0,
              let start = e.time("event.start") else { return }
        let http = transport == "tcp" && proto == "http"
        if let port { recordStart(start, Self.connKey(src, dst, port, transport), http: http) }
        if let host = e.string("tls.client.server_name") ?? e.string("url.domain") { recordStart(start, Self.hostKey(src, host), http: http) }
    }

    /// One HTTP request: a start of its (client, server, port) and (client, Host) pairs.
    func addHTTP(_ e: EventObject) {
        guard let src = e.string("source.ip"), let start = e.time("@timestamp") else { return }
        if let dst = e.string("destination.ip"), let port = e.int("destination.port") { recordStart(start, Self.connKey(src, dst, port, "tcp"), http: false) }
        if let host = e.string("url.domain") { recordStart(start, Self.hostKey(src, host), http: false) }
    }

    func recordStart(_ start: Int64, _ key: String, http: Bool) {
        if http {
            if httpFlowStarts[key] == nil, httpFlowStarts.count >= Self.keyLimit { tablesFull &+= 1; return }
            if httpFlowStarts[key, default: []].count < Self.startsLimit { httpFlowStarts[key, default: []].append(start) }
        } else {
            if starts[key] == nil, starts.count >= Self.keyLimit { tablesFull &+= 1; return }
            if starts[key, default: []].count < Self.startsLimit { starts[key, default: []].append(start) }
        }
    }

    /// Services lateral movement uses, by identified protocol first, else by port.
    static func adminService(proto: String?, port: Int64) -> String? {
        switch proto {
        case "smb": return "smb"
        case "dce_rpc": return "dce_rpc"
        case "rdp": return "rdp"
        case "ssh": return "ssh"
        case "kerberos", "ldap", "dns", "tls", "http", "ntp": if port != 5985 && port != 5986 && port != 3389 { return nil }
        default: break
        }
        switch port {
        case 445, 139: return "smb"
        case 135: return "dce_rpc"
        case 3389: return "rdp"
        case 5985, 5986: return "winrm"
        case 22: return "ssh"
        default: return nil
        }
    }

    func addDNS(_ e: EventObject) {
        dnsTransactions &+= 1
        guard let name = e.string("dns.question.name") else { return }
        let registered = e.string("dns.question.registered_domain") ?? name
        if domains[registered] == nil, domains.count >= Self.keyLimit { tablesFull &+= 1; return }
        var d = domains[registered] ?? Domain()
        d.queries &+= 1
        if e.string("dns.type") == "answer" || e.string("spanwatch.dns.status") == "answered" { d.responses &+= 1 }
        if e.string("dns.response_code") == "NXDOMAIN" { d.nxdomain &+= 1 }
        let nameBytes = Int64(name.utf8.count)
        d.nameBytes &+= nameBytes
        var answerBytes: Int64 = 0
        if let answers = e.value("dns.answers") as? [Any] {
            for a in answers { if let o = a as? [String: Any], let data = o["data"] as? String { answerBytes &+= Int64(data.utf8.count) } }
        }
        d.answerBytes &+= answerBytes
        if let sub = e.string("dns.question.subdomain"), !sub.isEmpty {
            if d.subdomains.count < Self.subdomainLimit { d.subdomains.insert(sub) } else if !d.subdomains.contains(sub) { d.subdomainsOverflow = true }
            d.entropySum += Self.entropy(sub)
            d.entropyCount &+= 1
        }
        if let type = e.string("dns.question.type"), d.types.count < 32 || d.types[type] != nil { d.types[type, default: 0] &+= 1 }
        let client = e.string("client.ip") ?? e.string("source.ip") ?? "?"
        let server = e.string("server.ip") ?? e.string("destination.ip") ?? "?"
        let pair = "\(client) → \(server)"
        if d.pairs.count < 64 || d.pairs[pair] != nil { d.pairs[pair, default: 0] &+= 1 }
        domains[registered] = d
        if resolverPairs[pair] != nil || resolverPairs.count < Self.keyLimit {
            var p = resolverPairs[pair] ?? ResolverPair()
            p.queries &+= 1
            if p.domains.count < Self.subdomainLimit { p.domains.insert(registered) }
            p.nameBytes &+= nameBytes
            p.answerBytes &+= answerBytes
            resolverPairs[pair] = p
        } else { tablesFull &+= 1 }
    }

    /// Shannon entropy of the characters, bits per character.
    static func entropy(_ s: String) -> Double {
        var counts = [Int](repeating: 0, count: 256)
        var n = 0
        for b in s.utf8 { counts[Int(b)] += 1; n += 1 }
        guard n > 0 else { return 0 }
        var h = 0.0
        for c in counts where c > 0 { let p = Double(c) / Double(n); h -= p * log2(p) }
        return h
    }

    /// Summed counters of the last statistics event of every sensor and worker.
    var statsTotals: [String: Int64] {
        var out: [String: Int64] = [:]
        for s in stats.values {
            for (k, v) in (s.object("spanwatch.stats") ?? EventObject([:])).numericLeaves() { out[k, default: 0] &+= v }
        }
        return out
    }

    var statsSpan: (Int64, Int64)? {
        let firsts = stats.values.compactMap { $0.time("spanwatch.stats.first_packet") }
        let lasts = stats.values.compactMap { $0.time("spanwatch.stats.last_packet") }
        guard let f = firsts.min(), let l = lasts.max() else { return nil }
        return (f, l)
    }
}
