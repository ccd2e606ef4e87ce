import Analyzers
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Events
import PacketCore

/// Counters of the non-standard-port detector.
public struct C2PortCounters: Sendable, Equatable {
    public var judged: UInt64 = 0
    public var alerts: UInt64 = 0
    public var suppressed: UInt64 = 0
    public var pairEvictions: UInt64 = 0
    /// Sessions not judged because their service is established (`ServiceBaseline`).
    public var baselined: UInt64 = 0
    /// Sessions not judged because both ends are loopback addresses.
    public var loopback: UInt64 = 0
    public var serviceEvictions: UInt64 = 0
    public init() {}
}

/// Raises `nonstandard_port_c2` (MITRE T1571) for sessions whose identified protocol does not belong
/// on their destination port: HTTP or TLS on 4444, SSH on 443, HTTP on PostgreSQL's 5432, unknown binary
/// content on 80/443, or a known protocol on a port no protocol owns. Sessions that are none of these
/// are also judged as TLS/QUIC sessions to a bare IP (no SNI; `BareIPSessionRule.swift`).
///
/// Decided at flow end (and at active-timeout reports of long sessions) from facts the analysers
/// gathered: `network.protocol` from content identification, SNI/Host for the message. Only
/// established sessions that carried payload both ways are judged (failed connections and scans are
/// not C2), or a TCP session whose client sent enough while the server never spoke. Sessions of an
/// established service (`ServiceBaseline`: learned, or used by many clients) and loopback sessions are
/// not judged. The score is a base per finding plus evidence: the pair's duration, bytes and repetition,
/// the port's rarity (how many distinct servers this sensor saw on it), well-known attack-framework
/// ports, a home host talking out, a client that named no server, a channel that mostly sends. An
/// unusual port alone stays below the threshold; all tunable in `Rules/c2.yaml`.
///
/// Memory: one entry per (source, destination, port, transport) pair, at most `max_pairs` (≈ 96 B each,
/// oldest evicted, counted), plus a fixed 512 kB port-popularity table (a 64-bit distinct-server
/// sketch per port).
public final class NonStandardPortDetector {
    public private(set) var rules: C2PortRules
    public internal(set) var counters = C2PortCounters()
    let emitter: EventEmitter
    /// Port → protocol we can identify over TCP (resp. UDP) that owns it (ignoring DCE-RPC's dynamic
    /// range, whose endpoints are anywhere). Unknown content on such a port is a finding.
    var identifiableOwner: [UInt16: String]
    var identifiableOwnerUDP: [UInt16: String]
    /// Protocols `ProtocolIdentifier` recognises in datagrams; the rest only over TCP.
    static let datagramProtocols: Set<String> = ["dns", "quic", "ntp", "dhcp", "snmp", "sip", "mdns", "llmnr", "netbios", "cldap",
                                                 "onc_rpc", "stun", "ssdp", "dnp3"]
    /// Protocols that exist only over UDP: they own no TCP port.
    static let udpOnlyProtocols: Set<String> = ["quic", "ntp", "dhcp", "snmp", "mdns", "llmnr", "cldap", "stun", "ssdp"]
    var serviceOwner: [UInt16: String]
    /// `rules.standardPorts` by a flow's protocol byte (`AppProtocol` raw value), and `rules.directions`
    /// and `rules.bareIP.directions` as masks: read per flow without naming and hashing a protocol or direction.
    var standardPortsByProtocol: [PortSet?]
    var directions: DirectionMask
    var bareIPDirections: DirectionMask
    /// Per port: the distinct servers seen on it.
    let popularity = PortPopularity()

    /// Which rule a pair's history belongs to: each keeps its own repetition and suppression.
    enum PairRule: UInt8 { case protocolOnPort, bareIPSession }
    struct PairKey: Hashable { var source: IPAddress; var destination: IPAddress; var port: UInt16; var transport: UInt8; var rule: PairRule }
    struct Pair {
        var connections = 0; var bytes: UInt64 = 0; var packets: UInt64 = 0
        /// Payload bytes client → server and server → client, for the asymmetry evidence.
        var sent: UInt64 = 0; var received: UInt64 = 0
        var first: Timestamp; var last: Timestamp; var lastAlert: Timestamp?
    }
    var pairs: [PairKey: Pair] = [:]
    /// The services seen: an established one is not judged.
    var baseline = ServiceBaseline()
    /// FTP data connections announced on any control connection (facts from every worker): data on a
    /// high port there is FTP's, not an unknown protocol.
    var ftpData = FTPDataChannels()

    public init(rules: C2PortRules, emitter: EventEmitter) {
        self.rules = rules
        self.emitter = emitter
        (identifiableOwner, identifiableOwnerUDP, serviceOwner) = Self.portOwners(rules)
        (standardPortsByProtocol, directions, bareIPDirections) = Self.perFlowTables(rules)
    }

    public func ftpDataAnnounced(_ channel: FTPDataChannels.Expected, at time: Timestamp) { ftpData.add(channel) }

    /// Which protocol owns each port (TCP, UDP) and which other service, from the rules' port lists.
    static func portOwners(_ rules: C2PortRules) -> ([UInt16: String], [UInt16: String], [UInt16: String]) {
            var owner: [UInt16: String] = [:]
            var ownerUDP: [UInt16: String] = [:]
            for (name, set) in rules.standardPorts.sorted(by: { $0.key < $1.key }) {
                let members = set.members
                guard members.count < 1024 else { continue }
                if !NonStandardPortDetector.udpOnlyProtocols.contains(name) {
                    for p in members where owner[p] == nil { owner[p] = name }
                }
                if NonStandardPortDetector.datagramProtocols.contains(name) {
                    for p in members where ownerUDP[p] == nil { ownerUDP[p] = name }
                }
            }
            var services: [UInt16: String] = [:]
            for (name, set) in rules.otherServices.sorted(by: { $0.key < $1.key }) {
                for p in set.members where services[p] == nil { services[p] = name }
            }
            return (owner, ownerUDP, services)
    }

    /// New rules on SIGHUP (thresholds, weights, port lists, allowlists): pair and port-popularity state
    /// is kept, so repetition and rarity carry over.
    public func apply(_ newRules: C2PortRules) {
        rules = newRules
        (identifiableOwner, identifiableOwnerUDP, serviceOwner) = Self.portOwners(newRules)
        (standardPortsByProtocol, directions, bareIPDirections) = Self.perFlowTables(newRules)
    }

    /// The rules' standard ports per protocol byte (an unknown byte reads as `unknown`, as the judging
    /// does) and their direction masks.
    static func perFlowTables(_ rules: C2PortRules) -> ([PortSet?], DirectionMask, DirectionMask) {
        let ports = (0...255).map { raw in rules.standardPorts["\((AppProtocol(rawValue: UInt8(raw)) ?? .unknown).name)"] }
        return (ports, DirectionMask(rules.directions), DirectionMask(rules.bareIP.directions))
    }

    /// What was found about one session.
    enum Finding: String {
        case otherProtocolsPort = "protocol_on_other_protocols_port"
        case unusualPort = "protocol_on_unusual_port"
        case unknownOnStandardPort = "unknown_protocol_on_standard_port"
        case unknownOnUnusualPort = "unknown_protocol_on_unusual_port"

        var ruleDescription: String {
            switch self {
            case .otherProtocolsPort: return "A protocol identified by content runs on a port that belongs to another protocol (e.g. SSH on 443) (Rules/c2.yaml)."
            case .unusualPort: return "A protocol identified by content runs on a port that is not its own and rarely seen (Rules/c2.yaml)."
            case .unknownOnStandardPort: return "Traffic no analyser identifies runs on a well-known service port (e.g. not TLS on 443) (Rules/c2.yaml)."
            case .unknownOnUnusualPort: return "Long-lived or repeated traffic no analyser identifies runs on an unusual port (Rules/c2.yaml)."
            }
        }
    }

    /// Judges a session from its record and the labels the worker's analysers gave it.
    public func flowEnded(_ flow: FlowRecord, reason: FlowEndReason, labels: FlowLabels) {
        guard learnPortServer(flow) else { return }
        let port = flow.responderPort
        let server = flow.responder
        // A test harness or local proxy: never C2 on the wire.
        if flow.originator.isLoopback || server.isLoopback { counters.loopback &+= 1; return }
        guard !rules.allowPorts.contains(port), !rules.allowDestinations.contains(where: { $0.contains(server) }) else { return }
        // One alert per session: the bare-IP rule judges what the port rule did not alert on.
        if judgeProtocolOnPort(flow, reason: reason, labels: labels) { return }
        judgeBareIPSession(flow, reason: reason, labels: labels)
    }

    /// Port popularity and the service baseline are learned from every session that could be judged
    /// (established, payload, start seen), whoever owns its source: the host-sharded stage calls this on
    /// the shards that do not judge the session. Returns false when the session is not one to judge.
    @discardableResult
    public func learnPortServer(_ flow: FlowRecord) -> Bool {
        guard rules.enabled, flow.key.hasPorts else { return false }
        let transport = flow.key.ipProtocol
        guard transport == IPProtocol.tcp || transport == IPProtocol.udp else { return false }
        guard flow.isEstablished, flow.originatorPayloadBytes >= rules.minPayloadBytes,
              flow.originatorPayloadBytes > 0 || flow.responderPayloadBytes > 0 else { return false }
        // The server must have answered, unless a home host sent enough over TCP to the outside that a
        // server which never speaks is itself the finding (a one-way channel out; inside the network and
        // over UDP one-way streams are ordinary: printing, backups, media, syslog, flow export).
        if flow.responderPayloadBytes < rules.minPayloadBytes {
            guard transport == IPProtocol.tcp, flow.responderPayloadBytes == 0, flow.originatorPayloadBytes >= rules.asymmetryMinBytes,
                  NetworkDirection(emitter.homeNetworks, from: flow.originator, to: flow.responder) == .outbound else { return false }
        }
        // A TCP connection joined mid-way has no known originator or start: not judged.
        if transport == IPProtocol.tcp && !flow.originatorFlags.contains(.syn) { return false }
        popularity.learn(port: flow.responderPort, server: flow.responder)
        baseline.learn(flow, learningPeriod: rules.learningPeriod, maxServices: rules.maxServices)
        counters.serviceEvictions = baseline.evictions
        return true
    }

    /// The port/protocol mismatch findings; true when the session is one (alert raised, or suppressed
    /// as a repeat of the pair's), so the bare-IP rule does not report it a second time.
    func judgeProtocolOnPort(_ flow: FlowRecord, reason: FlowEndReason, labels: FlowLabels) -> Bool {
        let transport = flow.key.ipProtocol
        let port = flow.responderPort
        let server = flow.responder
        guard directions.contains(emitter.homeNetworks, from: flow.originator, to: server) else { return false }
        if ftpData.isExpected(host: server, port: port, at: flow.firstSeen) { return false }

        let proto = AppProtocol(rawValue: flow.appProtocol) ?? .unknown
        let finding: Finding
        var owner: String?
        if flow.appProtocol != 0 {
            if standardPortsByProtocol[Int(flow.appProtocol)]?.contains(port) == true { return false }
            let pname = "\(proto.name)"
            if rules.allowProtocolPorts.contains("\(pname)/\(port)") { return false }
            owner = (transport == IPProtocol.udp ? identifiableOwnerUDP[port] : identifiableOwner[port]) ?? serviceOwner[port]
            finding = owner != nil ? .otherProtocolsPort : .unusualPort
        } else {
            // Unknown content is judged on TCP only, where the SYN anchors the bytes to the stream's start;
            // a UDP exchange is routinely joined mid-way, and its first datagram proves nothing.
            guard transport == IPProtocol.tcp, labels.identifiedUnknown else { return false }
            if serviceOwner[port] != nil { return false }
            owner = transport == IPProtocol.udp ? identifiableOwnerUDP[port] : identifiableOwner[port]
            finding = owner != nil ? .unknownOnStandardPort : .unknownOnUnusualPort
        }
        if baseline.isEstablished(flow, establishedClients: rules.establishedClients) { counters.baselined &+= 1; return false }
        counters.judged &+= 1

        // The pair's history: repetition, total bytes and how long it has been talking.
        let key = PairKey(source: flow.originator, destination: server, port: port, transport: transport, rule: .protocolOnPort)
        var pair = accumulate(key, flow, reason)

        let base: Double
        switch finding {
        case .otherProtocolsPort: base = rules.baseOtherProtocolsPort
        case .unusualPort: base = rules.baseUnusualPort
        case .unknownOnStandardPort: base = rules.baseUnknownOnStandardPort
        case .unknownOnUnusualPort: base = rules.baseUnknownOnUnusualPort
        }
        let span = (pair.last - pair.first).secondsDouble
        let w = sessionWeights(pair, span: span, port: port)
        let durationPart = w.duration, bytesPart = w.bytes, repetitionPart = w.repetition, suspiciousPart = w.suspiciousPort
        let servers = popularity.servers(port: port, including: flow.responder)
        let rarePart = servers < rules.rarePortServers ? rules.weightRarePort : 0
        let e = evidence(flow, proto: proto, labels: labels, pair: pair)
        let score = min(100, base + durationPart + bytesPart + repetitionPart + rarePart + suspiciousPart + e.outbound + e.noServerName + e.asymmetry)

        defer { insert(key, pair) }
        guard score >= rules.threshold else { return false }
        guard admitAlert(&pair, at: flow.lastSeen) else { return true }

        let transportName = transport == IPProtocol.tcp ? "tcp" : "udp"
        let pname = flow.appProtocol != 0 ? "\(proto.name)" : "unknown"
        var label: String?
        if labels.hasTLS { label = labels.serverName }
        if label == nil, labels.hasHTTP { label = labels.httpHost }
        let what: String
        switch finding {
        case .otherProtocolsPort: what = "\(pname.uppercased()) on \(transportName.uppercased()) port \(port), the port of \(owner ?? "another service")"
        case .unusualPort: what = "\(pname.uppercased()) on unusual \(transportName.uppercased()) port \(port)"
        case .unknownOnStandardPort: what = "Unidentified protocol on \(transportName.uppercased()) port \(port), the port of \(owner ?? "a known protocol")"
        case .unknownOnUnusualPort: what = "Unidentified protocol on unusual \(transportName.uppercased()) port \(port)"
        }
        var cid: [UInt8] = []
        emitter.communityID.append(flow.key, to: &cid)
        var details: [(String, JSONValue)] = [
            ("finding", .string(finding.rawValue)),
            ("protocol", .string(pname)),
            ("port", .int(Int(port))),
            ("transport", .string(transportName)),
            ("score", .double(rounded(score))),
            ("score_parts", .object([
                ("base", .double(rounded(base))), ("duration", .double(rounded(durationPart))), ("bytes", .double(rounded(bytesPart))),
                ("repetition", .double(rounded(repetitionPart))), ("rare_port", .double(rounded(rarePart))),
                ("suspicious_port", .double(rounded(suspiciousPart))), ("outbound", .double(rounded(e.outbound))),
                ("no_server_name", .double(rounded(e.noServerName))), ("asymmetry", .double(rounded(e.asymmetry))),
            ])),
            ("connections", .int(pair.connections)),
            ("bytes", .int(pair.bytes)),
            ("client_payload_bytes", .int(pair.sent)),
            ("server_payload_bytes", .int(pair.received)),
            ("duration", .double(rounded(span))),
            ("port_servers_seen", .int(servers)),
        ]
        if let owner { details.append(("port_owner", .string(owner))) }
        if let label { details.append(("server_name", .string(label))) }
        let severity = Self.severity(score)
        emitter.emit(Alert(
            timestamp: flow.lastSeen, category: .nonstandardPortC2,
            ruleID: "nonstandard_port_c2.\(finding.rawValue)", ruleName: "Non-standard port: \(finding.rawValue.replacingUnderscores())",
            ruleDescription: finding.ruleDescription,
            techniques: [.nonStandardPort],
            severity: severity, riskScore: rounded(score),
            message: "\(what) from \(flow.originator) to \(server)\(label.map { " (\($0))" } ?? "")",
            source: Endpoint(ip: flow.originator, port: flow.originatorPort), destination: Endpoint(ip: server, port: port),
            ipProtocol: transport, communityID: String(decoding: cid, as: UTF8.self),
            relatedIPs: [flow.originator, server], relatedHosts: label.map { [$0] } ?? [],
            details: details))
        return true
    }

    /// The pair's history with this session added: repetition, total bytes and packets, and how long
    /// it has been talking (an active-timeout report of a continuing session is not a new connection).
    /// What both findings (protocol on port, bare-IP session) add to their base score: how long, how much
    /// and how often the pair talked, and whether the port is an attack framework's default.
    struct SessionWeights { var duration: Double; var bytes: Double; var repetition: Double; var suspiciousPort: Double }

    /// Evidence about the session beyond its port, each a weight or 0.
    struct Evidence { var outbound = 0.0; var noServerName = 0.0; var asymmetry = 0.0 }

    func evidence(_ flow: FlowRecord, proto: AppProtocol, labels: FlowLabels, pair: Pair) -> Evidence {
        var e = Evidence()
        if NetworkDirection(emitter.homeNetworks, from: flow.originator, to: flow.responder) == .outbound { e.outbound = rules.weightOutbound }
        // The client dialled an address, not a name: HTTP without a Host name, TLS without SNI.
        let unnamedHTTP = proto == .http && labels.hasHTTP && (labels.httpHost.map(Self.isAddressLiteral) ?? true)
        let unnamedTLS = proto == .tls && labels.hasClientHello && labels.serverName == nil
        if unnamedHTTP || unnamedTLS { e.noServerName = rules.weightNoServerName }
        let total = pair.sent &+ pair.received
        if pair.sent >= rules.asymmetryMinBytes, total > 0, Double(pair.sent) >= rules.asymmetryRatio * Double(total) {
            e.asymmetry = rules.weightAsymmetry
        }
        return e
    }

    /// An HTTP Host that is an IPv4 or bracketed IPv6 address rather than a name.
    static func isAddressLiteral(_ host: String) -> Bool {
        if host.hasPrefix("[") { return true }
        return !host.isEmpty && host.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2e }
    }

    func sessionWeights(_ pair: Pair, span: Double, port: UInt16) -> SessionWeights {
        // Log-shaped above a floor: a few seconds or a few kilobytes are what any session has, not evidence.
        func logScale(_ v: Double, _ floor: Double, _ full: Double) -> Double {
            min(1, ln1p(max(0, v - floor)) / ln1p(max(1, full - floor)))
        }
        return SessionWeights(
            duration: rules.weightDuration * logScale(span, rules.durationFloor, rules.durationFull),
            bytes: rules.weightBytes * logScale(Double(pair.bytes), rules.bytesFloor, rules.bytesFull),
            repetition: rules.weightRepetition * min(1, Double(pair.connections - 1) / max(1, rules.repetitionFull - 1)),
            suspiciousPort: rules.suspiciousPorts.contains(port) ? rules.weightSuspiciousPort : 0)
    }

    /// One alert per pair per `suppress` period: true (and the pair stamped) when this one may go out.
    func admitAlert(_ pair: inout Pair, at time: Timestamp) -> Bool {
        if let last = pair.lastAlert, (time - last).secondsDouble < rules.suppressSeconds {
            counters.suppressed &+= 1
            return false
        }
        pair.lastAlert = time
        counters.alerts &+= 1
        return true
    }

    static func severity(_ score: Double) -> Severity { score >= 80 ? .high : score >= 60 ? .medium : .low }

    func accumulate(_ key: PairKey, _ flow: FlowRecord, _ reason: FlowEndReason) -> Pair {
        var pair = pairs[key] ?? Pair(first: flow.segmentStart, last: flow.lastSeen)
        pair.connections += reason == .activeTimeout && pair.connections > 0 ? 0 : 1
        pair.bytes &+= flow.originatorBytes &+ flow.responderBytes
        pair.packets &+= flow.originatorPackets &+ flow.responderPackets
        pair.sent &+= flow.originatorPayloadBytes
        pair.received &+= flow.responderPayloadBytes
        if flow.segmentStart < pair.first { pair.first = flow.segmentStart }
        if flow.lastSeen > pair.last { pair.last = flow.lastSeen }
        return pair
    }

    func insert(_ key: PairKey, _ pair: Pair) {
        if pairs[key] == nil && pairs.count >= rules.maxPairs {
            // Evict the stalest eighth in one go, so a full table costs one sort per many inserts.
            let victims = pairs.sorted { $0.value.last < $1.value.last }.prefix(max(1, rules.maxPairs / 8))
            for (k, _) in victims { pairs[k] = nil }
            counters.pairEvictions &+= UInt64(victims.count)
        }
        pairs[key] = pair
    }

    public func tick(_ now: Timestamp) {
        popularity.tick()
        baseline.tick()
        ftpData.expire(now)
        // Forget pairs quiet for longer than the suppression period (their history no longer matters).
        guard now.nanoseconds % 60_000_000_000 < 1_000_000_000, !pairs.isEmpty else { return }
        let horizon = max(rules.suppressSeconds, rules.durationFull)
        pairs = pairs.filter { (now - $0.value.last).secondsDouble < horizon }
        baseline.expire(now, horizon: horizon)
    }
}

/// ln(1 + x), for the log-shaped weights (a few bytes and a few gigabytes both matter).
@inline(__always) func ln1p(_ x: Double) -> Double { log1p(x) }

@inline(__always) func rounded(_ v: Double) -> Double { (v * 1000).rounded() / 1000 }

extension String {
    func replacingUnderscores() -> String { String(map { $0 == "_" ? " " : $0 }) }
}
