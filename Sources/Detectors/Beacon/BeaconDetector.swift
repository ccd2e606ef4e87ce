import Analyzers
import Events
import PacketCore

public struct BeaconCounters: Sendable, Equatable {
    public var connections: UInt64 = 0
    public var evaluations: UInt64 = 0
    public var alerts: UInt64 = 0
    /// Host-pair alerts left out because the (source, destination, port) pair already alerted.
    public var coveredHostAlerts: UInt64 = 0
    public var pairEvictions: UInt64 = 0
    public var sampleDrops: UInt64 = 0
    public init() {}
}

/// Raises `beaconing` alerts (MITRE T1071.001, T1573 for encrypted channels, T1571 on a non-standard port)
/// for pairs whose connections come at regular intervals with regular sizes.
///
/// Streaming: each finished connection (established, with payload; failed attempts are not beacons) adds
/// its start and its originator's bytes to two pairs, (source, destination, port) and (source, TLS SNI or
/// HTTP Host); the latter follows a beacon across rotating addresses. Pairs with new connections are
/// scored with `BeaconScorer` every `evaluate_every` seconds of packet time and at end of input, so a
/// replay of hours of traffic behaves as the hours did.
///
/// Memory bound: per pair at most `max_samples` × 12 bytes of samples plus ≈ 200 bytes of state
/// (256 samples: ≈ 3.3 kB); at most `max_pairs` pairs per table, two tables: with the defaults
/// (16,384 pairs, 256 samples) at most ≈ 108 MB in the worst case of every pair full, typically a few MB
/// since sample arrays grow only as connections arrive. Pairs idle past the window are dropped; the
/// stalest eighth is evicted when a table is full (counted).
public final class BeaconDetector {
    public private(set) var rules: BeaconRules
    public private(set) var counters = BeaconCounters()
    let emitter: EventEmitter
    var standardPorts: [String: PortSet]

    struct ConnKey: Hashable { var source: IPAddress; var destination: IPAddress; var port: UInt16; var transport: UInt8 }
    struct HostKey: Hashable { var source: IPAddress; var host: String }
    struct Pair {
        var starts: [Int64] = []
        var sizes: [Int64] = []
        var connections = 0
        var lastSeen: Int64 = 0
        var dirty = false
        var lastAlert: Int64?
        var appProtocol: UInt8 = 0
        var transport: UInt8 = 0
        var port: UInt16 = 0
        var destination: IPAddress
        /// Host pairs: the (destination, port) pairs seen, at most 8.
        var destinations: [ConnKey] = []
        var label: String?
    }
    var connPairs: [ConnKey: Pair] = [:]
    var hostPairs: [HostKey: Pair] = [:]
    var observedFrom: Int64?
    var lastEvaluation: Int64 = .min

    public init(rules: BeaconRules, emitter: EventEmitter, standardPorts: [String: PortSet] = C2PortRules.defaultStandardPorts) {
        self.rules = rules
        self.emitter = emitter
        self.standardPorts = standardPorts
    }

    /// New rules on SIGHUP: thresholds, weights and allowlists change, the pairs' samples are kept (a
    /// smaller `max_samples` applies as the arrays are next trimmed).
    public func apply(_ newRules: BeaconRules, standardPorts: [String: PortSet]) {
        rules = newRules
        self.standardPorts = standardPorts
    }

    /// Adds a finished connection from its record and the labels the worker's analysers gave it.
    public func flowEnded(_ flow: FlowRecord, reason: FlowEndReason, labels: FlowLabels) {
        guard rules.enabled, reason != .activeTimeout, flow.key.hasPorts else { return }
        let transport = flow.key.ipProtocol
        guard transport == IPProtocol.tcp || transport == IPProtocol.udp else { return }
        if observedFrom == nil || flow.firstSeen.nanoseconds < observedFrom! { observedFrom = flow.firstSeen.nanoseconds }
        guard flow.isEstablished, flow.originatorPayloadBytes &+ flow.responderPayloadBytes > 0 else { return }
        // A TCP connection joined mid-way has no known start.
        if transport == IPProtocol.tcp && !flow.originatorFlags.contains(.syn) { return }
        let port = flow.responderPort
        if transport == IPProtocol.udp ? rules.ignoreUDPPorts.contains(port) : rules.ignoreTCPPorts.contains(port) { return }
        let src = flow.originator, dst = flow.responder
        // Loopback (a test harness, a local proxy) never crosses the wire a sensor watches.
        if src.isLoopback || dst.isLoopback { return }
        guard rules.directions.contains(directionName(emitter.homeNetworks, from: src, to: dst)) else { return }
        if rules.ignoreDestinations.contains(where: { $0.contains(dst) }) || rules.ignoreSources.contains(where: { $0.contains(src) }) { return }
        counters.connections &+= 1

        var host: String?
        if labels.hasTLS, let sni = labels.serverName, !sni.isEmpty { host = sni.lowercased() }
        if host == nil, labels.hasHTTP { host = labels.httpHost }
        if let h = host, rules.ignoresHost(h) { return }

        let start = flow.firstSeen.nanoseconds
        let size = Int64(clamping: flow.originatorBytes)
        let ck = ConnKey(source: src, destination: dst, port: port, transport: transport)
        var cp = connPairs.removeValue(forKey: ck) ?? Pair(destination: dst)
        record(&cp, start: start, size: size, flow: flow, label: host)
        insert(&connPairs, ck, cp)
        if let host {
            let hk = HostKey(source: src, host: host)
            var hp = hostPairs.removeValue(forKey: hk) ?? Pair(destination: dst)
            record(&hp, start: start, size: size, flow: flow, label: host)
            hp.destination = dst
            if !hp.destinations.contains(ck) && hp.destinations.count < 8 { hp.destinations.append(ck) }
            insert(&hostPairs, hk, hp)
        }
    }

    func record(_ p: inout Pair, start: Int64, size: Int64, flow: FlowRecord, label: String?) {
        if p.starts.count >= rules.maxSamples {
            p.starts.removeFirst()
            p.sizes.removeFirst()
            counters.sampleDrops &+= 1
        }
        p.starts.append(start)
        p.sizes.append(size)
        p.connections += 1
        p.lastSeen = max(p.lastSeen, flow.lastSeen.nanoseconds)
        p.dirty = true
        if flow.appProtocol != 0 { p.appProtocol = flow.appProtocol }
        p.transport = flow.key.ipProtocol
        p.port = flow.responderPort
        if label != nil { p.label = label }
    }

    func insert<K: Hashable>(_ table: inout [K: Pair], _ key: K, _ pair: Pair) {
        if table.count >= rules.maxPairs {
            let victims = table.sorted { $0.value.lastSeen < $1.value.lastSeen }.prefix(max(1, rules.maxPairs / 8))
            for (k, _) in victims { table[k] = nil }
            counters.pairEvictions &+= UInt64(victims.count)
        }
        table[key] = pair
    }

    public func tick(_ now: Timestamp) {
        if observedFrom == nil { observedFrom = now.nanoseconds }
        guard lastEvaluation == .min || now - Timestamp(nanoseconds: lastEvaluation) >= .seconds(rules.evaluateEverySeconds) else { return }
        if lastEvaluation == .min { lastEvaluation = now.nanoseconds; return }
        evaluate(now)
    }

    public func finish(_ now: Timestamp) { evaluate(now) }

    /// Scores every pair with new connections, alerts, and forgets pairs idle past the window.
    func evaluate(_ now: Timestamp) {
        lastEvaluation = now.nanoseconds
        let from = max(observedFrom ?? now.nanoseconds, (now - .seconds(rules.windowSeconds)).nanoseconds)
        for key in connPairs.keys {
            guard var p = connPairs[key], p.dirty else { continue }
            p.dirty = false
            trim(&p, from: from)
            if let s = score(p, from: from, to: now.nanoseconds), !suppressed(p, now) {
                p.lastAlert = now.nanoseconds
                alert(p, s, source: key.source, hostPair: false, now: now)
            }
            connPairs[key] = p
        }
        for key in hostPairs.keys {
            guard var p = hostPairs[key], p.dirty else { continue }
            p.dirty = false
            trim(&p, from: from)
            if let s = score(p, from: from, to: now.nanoseconds), !suppressed(p, now) {
                p.lastAlert = now.nanoseconds
                // The same beacon already reported per destination: say nothing twice.
                let covered = p.destinations.allSatisfy { connPairs[$0].map { suppressed($0, now) } ?? false }
                if covered { counters.coveredHostAlerts &+= 1 } else { alert(p, s, source: key.source, hostPair: true, now: now) }
            }
            hostPairs[key] = p
        }
        connPairs = connPairs.filter { $0.value.lastSeen >= from }
        hostPairs = hostPairs.filter { $0.value.lastSeen >= from }
    }

    func trim(_ p: inout Pair, from: Int64) {
        while let f = p.starts.first, f < from { p.starts.removeFirst(); p.sizes.removeFirst() }
    }

    func suppressed(_ p: Pair, _ now: Timestamp) -> Bool {
        guard let last = p.lastAlert else { return false }
        return (now - Timestamp(nanoseconds: last)).secondsDouble < rules.suppressSeconds
    }

    func score(_ p: Pair, from: Int64, to: Int64) -> BeaconScore? {
        guard p.starts.count >= rules.scoring.minStarts else { return nil }
        counters.evaluations &+= 1
        guard let s = BeaconScorer.score(starts: p.starts, sizes: p.sizes, observedFrom: from, observedTo: to, parameters: rules.scoring),
              s.medianIntervalSeconds >= rules.scoring.minIntervalSeconds, s.score >= rules.threshold else { return nil }
        return s
    }

    /// What a beacon over `proto` is, in ATT&CK terms. Only an identified protocol earns a sub-technique: an
    /// unidentified one (custom binary C2 over raw TCP or UDP) is Non-Application Layer Protocol, not Web.
    static func techniques(for proto: AppProtocol, standardPort: Bool) -> [Technique] {
        var t: [Technique]
        switch proto {
        case .http: t = [.webProtocols]
        case .tls, .quic: t = [.webProtocols, .encryptedChannel]
        case .ssh: t = [.encryptedChannel]
        case .dns, .mdns, .llmnr: t = [.dnsProtocol]
        case .ftp: t = [.fileTransferProtocols]
        case .smtp: t = [.mailProtocols]
        case .unknown: t = [.nonApplicationLayerProtocol]
        default: t = [.applicationLayerProtocol]
        }
        if !standardPort { t.append(.nonStandardPort) }
        return t
    }

    func alert(_ p: Pair, _ s: BeaconScore, source: IPAddress, hostPair: Bool, now: Timestamp) {
        counters.alerts &+= 1
        let proto = AppProtocol(rawValue: p.appProtocol) ?? .unknown
        let pname = "\(proto.name)"
        let standard = p.appProtocol != 0 && standardPorts[pname]?.contains(p.port) == true
        let techniques = BeaconDetector.techniques(for: proto, standardPort: standard)
        let transportName = p.transport == IPProtocol.tcp ? "tcp" : "udp"
        let pairText = hostPair ? "\(source) → \(p.label ?? "?")" : "\(source) → \(p.destination):\(p.port)/\(transportName)"
        let parts: [(String, JSONValue)] = [
            ("interval_skew", .double(rounded(s.intervalSkew))), ("interval_dispersion", .double(rounded(s.intervalDispersion))),
            ("size_skew", .double(rounded(s.sizeSkew))), ("size_dispersion", .double(rounded(s.sizeDispersion))),
            ("histogram", .double(rounded(s.histogram))), ("duration", .double(rounded(s.duration))), ("count", .double(rounded(s.count))),
        ]
        var details: [(String, JSONValue)] = [
            ("pair", .object([("type", .string(hostPair ? "source_host" : "source_destination_port")), ("text", .string(pairText))])),
            ("score", .double(rounded(s.score))),
            ("score_parts", .object(parts)),
            ("interval_median", .double(rounded(s.medianIntervalSeconds))),
            ("interval_mad", .double(rounded(s.intervalMADSeconds))),
            ("size_median", .double(rounded(s.medianSizeBytes))),
            ("size_mad", .double(rounded(s.sizeMADBytes))),
            ("connections", .int(s.connections)),
            ("distinct_starts", .int(s.distinctStarts)),
            ("first_start", .string("\(Timestamp(nanoseconds: p.starts.min() ?? 0))")),
            ("last_start", .string("\(Timestamp(nanoseconds: p.starts.max() ?? 0))")),
            ("protocol", .string(p.appProtocol != 0 ? pname : "unknown")),
            ("port", .int(Int(p.port))),
            ("transport", .string(transportName)),
            ("standard_port", .bool(standard)),
        ]
        if let l = p.label { details.append(("server_name", .string(l))) }
        if s.wholeSecondTimestamps { details.append(("whole_second_timestamps", .bool(true))) }
        if hostPair { details.append(("destinations", .array(p.destinations.map { .ip($0.destination) }))) }
        let risk = rounded(min(100, s.score * 100))
        emitter.emit(Alert(
            timestamp: now, category: .beaconing,
            ruleID: hostPair ? "beaconing.host" : "beaconing.destination",
            ruleName: hostPair ? "Beaconing to a host name" : "Beaconing to a destination",
            ruleDescription: hostPair
                ? "Connections from one source to one server name (over any of its addresses) start at regular intervals with regular sizes (RITA-style score, Rules/beaconing.yaml)."
                : "Connections from one source to one destination address and port start at regular intervals with regular sizes (RITA-style score, Rules/beaconing.yaml).",
            techniques: techniques,
            severity: s.score >= 0.9 ? .high : .medium, riskScore: risk,
            message: "Beaconing \(pairText): \(s.distinctStarts) connections every \(rounded(s.medianIntervalSeconds)) s (score \(rounded(s.score)))",
            source: Endpoint(ip: source), destination: Endpoint(ip: p.destination, port: p.port), ipProtocol: p.transport,
            relatedIPs: [source, p.destination], relatedHosts: p.label.map { [$0] } ?? [],
            details: details))
    }
}
