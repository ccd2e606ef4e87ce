import Analyzers
import ConfigKit
import Events
import PacketCore

/// Tuning of the "encrypted session to a bare IP" rule, the `encrypted_to_bare_ip:` section of
/// `nonstandard_port_c2` in `Rules/c2.yaml` (every key optional; defaults are the shipped values).
///
/// A browser or any other client that reached its server through a name sends that name in the
/// ClientHello (SNI) — HTTP/3 always does. An implant that dials a bare IP address (Merlin, many
/// Cobalt Strike and Sliver profiles, Emotet's epoch servers) sends none: JA4 marks exactly this with
/// an `i` in its fourth character. Short exchanges without SNI are common and harmless (connectivity
/// checks, a resumed session to a CDN address), so the rule only speaks about sessions that are
/// established with payload both ways and last, or repeat, beyond configurable minimums.
public struct BareIPSessionRules: Sendable, Equatable {
    public var enabled = true
    /// `network.direction` values judged: a home host talking to the outside.
    public var directions: Set<NetworkDirection> = [.outbound]
    /// Base score; the non-standard-port weights for duration, bytes, repetition and suspicious ports
    /// are added (not the rare-port weight: the port is not what is odd here), alert at `threshold`.
    public var base = 35.0
    /// Minimum span of the (source, destination, port) pair's no-SNI sessions, first start to last packet.
    public var minDuration = 120.0
    /// Minimum packets (both directions, the pair's sessions together) …
    public var minPackets: UInt64 = 40
    /// … or minimum wire bytes: either is enough.
    public var minBytes: UInt64 = 32_768
    /// Minimum sessions of the pair (1: one long session is enough).
    public var minConnections = 1
    /// Destinations (addresses or CIDRs) and destination ports never judged by this rule: by default
    /// the public resolvers DNS-over-HTTPS clients reach by address, and DNS over TLS/QUIC's 853.
    public var allowDestinations: [IPNetwork] = BareIPSessionRules.publicResolvers.compactMap { IPNetwork($0) }
    public var allowPorts = PortSet([853...853])

    public static let publicResolvers = [
        "1.1.1.1", "1.0.0.1", "2606:4700:4700::1111", "2606:4700:4700::1001", "8.8.8.8", "8.8.4.4",
        "2001:4860:4860::8888", "2001:4860:4860::8844", "9.9.9.9", "149.112.112.112", "2620:fe::fe", "2620:fe::9",
        "208.67.222.222", "208.67.220.220",
    ]

    public init() {}

    static let keys: Set<String> = ["enabled", "directions", "base", "min_duration", "min_packets", "min_bytes", "min_connections", "allow"]

    static func parse(_ v: ConfigValue, _ r: inout ConfigReader) -> BareIPSessionRules {
        var rules = BareIPSessionRules()
        let t = r.table(v, allowed: keys)
        if let x = r.bool(t["enabled"]) { rules.enabled = x }
        if let x = RuleReading.directions(t["directions"], &r) { rules.directions = x }
        if let x = r.double(t["base"], in: 0...100) { rules.base = x }
        if let x = r.seconds(t["min_duration"], in: 0...604_800) { rules.minDuration = x }
        if let x = r.int(t["min_packets"], in: 0...1_000_000_000) { rules.minPackets = UInt64(x) }
        if let x = r.int(t["min_bytes"], in: 0...1_000_000_000_000) { rules.minBytes = UInt64(x) }
        if let x = r.int(t["min_connections"], in: 1...1_000_000) { rules.minConnections = x }
        if let av = t["allow"] {
            let a = r.table(av, allowed: ["destinations", "ports"])
            if let x = RuleReading.networks(a["destinations"], &r) { rules.allowDestinations = x }
            if let x = RuleReading.ports(a["ports"], &r) { rules.allowPorts = x }
        }
        return rules
    }
}

extension NonStandardPortDetector {
    /// The bare-IP finding: a TLS or QUIC session whose ClientHello carried no server name.
    static let bareIPFinding = "encrypted_session_to_bare_ip"

    /// Judges a session the port rule did not alert on: TLS over TCP or QUIC whose ClientHello (read by
    /// `TLSAnalyzer`, or by `QUICAnalyzer` from the decrypted Initial packets) had no SNI, from a home
    /// network to the outside, lasting or repeating beyond the rule's minimums.
    func judgeBareIPSession(_ flow: FlowRecord, reason: FlowEndReason, labels: FlowLabels) {
        let r = rules.bareIP
        guard r.enabled, labels.hasClientHello, labels.serverName == nil else { return }
        let transport = flow.key.ipProtocol
        let port = flow.responderPort
        let server = flow.responder
        guard bareIPDirections.contains(emitter.homeNetworks, from: flow.originator, to: server),
              !r.allowPorts.contains(port), !r.allowDestinations.contains(where: { $0.contains(server) }) else { return }
        let key = PairKey(source: flow.originator, destination: server, port: port, transport: transport, rule: .bareIPSession)
        var pair = accumulate(key, flow, reason)
        defer { insert(key, pair) }
        let span = (pair.last - pair.first).secondsDouble
        guard span >= r.minDuration, pair.connections >= r.minConnections,
              pair.packets >= r.minPackets || pair.bytes >= r.minBytes else { return }
        counters.judged &+= 1

        let w = sessionWeights(pair, span: span, port: port)
        let durationPart = w.duration, bytesPart = w.bytes, repetitionPart = w.repetition, suspiciousPart = w.suspiciousPort
        let score = min(100, r.base + durationPart + bytesPart + repetitionPart + suspiciousPart)
        guard score >= rules.threshold, admitAlert(&pair, at: flow.lastSeen) else { return }

        let transportName = transport == IPProtocol.tcp ? "tcp" : "udp"
        let pname = flow.appProtocol == AppProtocol.quic.rawValue ? "quic" : "tls"
        let alpn = labels.alpn
        var cid: [UInt8] = []
        emitter.communityID.append(flow.key, to: &cid)
        var details: [(String, JSONValue)] = [
            ("finding", .string(NonStandardPortDetector.bareIPFinding)),
            ("reason", .string("no_server_name")),
            ("protocol", .string(pname)),
            ("port", .int(Int64(port))),
            ("transport", .string(transportName)),
        ]
        if !alpn.isEmpty { details.append(("alpn", .array(alpn.map { .string($0) }))) }
        if let j = labels.ja4 { details.append(("ja4", .string(j))) }
        if let j = labels.ja3 { details.append(("ja3", .string(j))) }
        details += [
            ("score", .double(rounded(score))),
            ("score_parts", .object([
                ("base", .double(rounded(r.base))), ("duration", .double(rounded(durationPart))), ("bytes", .double(rounded(bytesPart))),
                ("repetition", .double(rounded(repetitionPart))), ("suspicious_port", .double(rounded(suspiciousPart))),
            ])),
            ("connections", .int(Int64(pair.connections))),
            ("bytes", .int(Int64(pair.bytes))),
            ("packets", .int(Int64(pair.packets))),
            ("duration", .double(rounded(span))),
        ]
        let severity = Self.severity(score)
        let what = pname == "quic" ? "QUIC (\(alpn.first ?? "no ALPN"))" : "TLS"
        emitter.emit(Alert(
            timestamp: flow.lastSeen, category: .nonstandardPortC2,
            ruleID: "nonstandard_port_c2.\(NonStandardPortDetector.bareIPFinding)", ruleName: "Encrypted session to a bare IP (no server name)",
            ruleDescription: "An established, long-lived TLS or QUIC session from a home network to an external address whose ClientHello carried no server name: an implant dialling a bare IP (Rules/c2.yaml, encrypted_to_bare_ip).",
            techniques: [.nonStandardPort, .encryptedChannel],
            severity: severity, riskScore: rounded(score),
            message: "\(what) session without a server name from \(flow.originator) to bare IP \(server) port \(port), "
                + "\(pair.connections) session(s) over \(Int(span.rounded())) s",
            source: Endpoint(ip: flow.originator, port: flow.originatorPort), destination: Endpoint(ip: server, port: port),
            ipProtocol: transport, communityID: String(decoding: cid, as: UTF8.self),
            relatedIPs: [flow.originator, server], relatedHosts: [],
            details: details))
    }
}
