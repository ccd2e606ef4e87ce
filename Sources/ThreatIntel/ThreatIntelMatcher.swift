import Events
import PacketCore

/// Tuning for the matcher (config `intel:`).
public struct ThreatIntelSettings: Sendable, Equatable {
    /// One alert per (indicator, host) per this much packet time; repeats are counted, not alerted.
    public var alertInterval: Timestamp.Duration = .seconds(3600)
    /// Bound on remembered (indicator, host) pairs; the oldest is forgotten first.
    public var rateLimitCapacity = 65_536
    /// Bound on addresses remembered from DNS answers for listed domains.
    public var resolvedCapacity = 65_536
    public init() {}
}

/// Counters of one matcher (per worker).
public struct ThreatIntelCounters: Sendable, Equatable {
    public var flowsChecked: UInt64 = 0
    public var factsChecked: UInt64 = 0
    public var matches: UInt64 = 0
    public var alerts: UInt64 = 0
    /// Matches inside the rate-limit interval of an earlier alert for the same indicator and host.
    public var suppressed: UInt64 = 0
    public var rateLimitEvicted: UInt64 = 0
    public var resolvedEvicted: UInt64 = 0
    public var reloadsApplied: UInt64 = 0
    public init() {}
}

/// What a hunt reports per indicator that matched.
public struct IndicatorMatchSummary: Sendable {
    public var type: IndicatorType
    public var value: String
    public var source: String
    public var alerts: Int = 0
    public var suppressed: Int = 0
    /// Up to `hostLimit` hosts (the side that talked to the indicator).
    public var hosts: [IPAddress] = []
    public var first: Timestamp
    public var last: Timestamp
    public static let hostLimit = 16

    /// The summaries of several matchers (one per worker) as one per indicator: counts added, hosts
    /// joined (up to `hostLimit`), the earliest first and latest last match.
    public static func merged(_ parts: [[String: IndicatorMatchSummary]]) -> [IndicatorMatchSummary] {
        var out: [String: IndicatorMatchSummary] = [:]
        for part in parts {
            for (key, s) in part {
                guard var m = out[key] else { out[key] = s; continue }
                m.alerts += s.alerts
                m.suppressed += s.suppressed
                for h in s.hosts where !m.hosts.contains(h) && m.hosts.count < hostLimit { m.hosts.append(h) }
                m.first = min(m.first, s.first)
                m.last = max(m.last, s.last)
                out[key] = m
            }
        }
        return Array(out.values)
    }
}

/// Matches traffic against the indicator set: flow addresses once per flow (at its first packet), and
/// the protocol facts analysers publish (DNS names and answers, TLS SNI/JA3/JA4 and certificate
/// hashes, HTTP hosts and URLs, file hashes). Raises `threat_intel` alerts, rate-limited per
/// (indicator, host).
///
/// Per packet this costs one branch (`isNewFlow`); per new flow, two address probes. An address a
/// listed domain resolved to is remembered (bounded), so a later connection to it alerts too — the
/// way an implant that resolves its C2 name and then connects shows up even when only the name is listed.
public final class ThreatIntelMatcher: PacketAnalyzer, FactObserver {
    public let name = "threat_intel"
    public let feed: IndicatorFeed
    public private(set) var set: IndicatorSet
    var generation: UInt64
    let emitter: EventEmitter
    let settings: ThreatIntelSettings
    public private(set) var counters = ThreatIntelCounters()

    struct RateKey: Hashable { var indicator: String; var host: IPAddress }
    var lastAlert: [RateKey: Timestamp] = [:]
    var rateOrder: [RateKey] = []
    var rateHead = 0
    var resolved: [IPAddress: (indicator: Int32, name: String)] = [:]
    var resolvedOrder: [IPAddress] = []
    var resolvedHead = 0
    /// Per indicator that matched (`type:value`), bounded for hunts over huge inputs.
    public private(set) var summary: [String: IndicatorMatchSummary] = [:]
    public static let summaryLimit = 100_000

    public init(feed: IndicatorFeed, emitter: EventEmitter, settings: ThreatIntelSettings = ThreatIntelSettings()) {
        self.feed = feed
        self.emitter = emitter
        self.settings = settings
        self.generation = feed.generation.load(ordering: .acquiring)
        self.set = feed.current
    }

    // MARK: PacketAnalyzer

    /// Addresses are matched once per flow, so the matcher stays out of the per-packet loop
    /// (`wantsEveryPacket == false`) and hears of new flows through `flowStarted`.
    public var wantsEveryPacket: Bool { false }
    public var wantsFlowStart: Bool { true }

    public func flowStarted(_ flow: FlowRecord, slot: Int32, at time: Timestamp) { newFlow(flow, at: time) }

    /// For callers that drive analysers packet by packet themselves.
    public func packet(_ context: PacketContext, flows: FlowTable) {
        guard context.isNewFlow else { return }
        newFlow(flows[context.slot], at: context.packet.timestamp)
    }

    @inline(never)
    func newFlow(_ r: FlowRecord, at time: Timestamp) {
        counters.flowsChecked &+= 1
        let orig = r.originator, resp = r.responder
        if set.hasAddresses {
            if let i = set.match(address: resp, at: time) {
                raise(i, field: "destination.ip", observed: resp.description, flow: r, host: orig, at: time)
            }
            if let i = set.match(address: orig, at: time) {
                raise(i, field: "source.ip", observed: orig.description, flow: r, host: resp, at: time)
            }
        }
        if !resolved.isEmpty, let (i, name) = resolved[resp], Int(i) < set.indicators.count {
            raise(i, field: "destination.ip", observed: resp.description, flow: r, host: orig, at: time,
                  extra: [("resolved_from", .string(name))])
        }
    }

    public func tick(_ now: Timestamp) {
        let g = feed.generation.load(ordering: .acquiring)
        if g != generation {
            generation = g
            set = feed.current
            // Remembered resolutions point into the old set's indices.
            resolved.removeAll(keepingCapacity: true)
            resolvedOrder.removeAll(keepingCapacity: true)
            resolvedHead = 0
            counters.reloadsApplied &+= 1
        }
    }

    // MARK: FactObserver

    public func observe(_ fact: ObservedFact, flow: FlowRecord?, at time: Timestamp) {
        counters.factsChecked &+= 1
        let host = flow?.originator
        switch fact {
        case .dnsQuery(let name):
            if let i = set.match(domain: name, at: time) {
                raise(i, field: "dns.question.name", observed: name, flow: flow, host: host, at: time)
            }
        case .dnsAnswer(let name, let address):
            if let i = set.match(domain: name, at: time) {
                raise(i, field: "dns.answers.name", observed: name, flow: flow, host: host, at: time)
                if let a = address { remember(a, indicator: i, name: name) }
            }
            if let a = address, let i = set.match(address: a, at: time) {
                raise(i, field: "dns.answers.data", observed: a.description, flow: flow, host: host, at: time,
                      extra: [("resolved_from", .string(name))])
            }
        case .tlsClientHello(let sni, let ja3, let ja4):
            if let s = sni {
                if let i = set.match(.sni, s, at: time) ?? set.match(domain: s, at: time) {
                    raise(i, field: "tls.client.server_name", observed: s, flow: flow, host: host, at: time)
                }
            }
            if let j = ja3, let i = set.match(.ja3, j, at: time) {
                raise(i, field: "tls.client.ja3", observed: j, flow: flow, host: host, at: time)
            }
            if let j = ja4, let i = set.match(.ja4, j, at: time) {
                raise(i, field: "spanwatch.tls.client.ja4", observed: j, flow: flow, host: host, at: time)
            }
        case .tlsCertificate(let sha256, let sha1):
            if let h = sha256, let i = set.match(.sha256, h, at: time) {
                raise(i, field: "tls.server.hash.sha256", observed: h, flow: flow, host: host, at: time)
            }
            if let h = sha1, let i = set.match(.sha1, h, at: time) {
                raise(i, field: "tls.server.hash.sha1", observed: h, flow: flow, host: host, at: time)
            }
        case .httpRequest(let hostHeader, let url):
            if let i = set.match(.url, url, at: time) {
                raise(i, field: "url.full", observed: url, flow: flow, host: host, at: time)
            } else if let h = hostHeader {
                // The Host header may carry a port.
                let name = h.split(separator: ":").first.map(String.init) ?? h
                if let i = set.match(domain: name, at: time) {
                    raise(i, field: "url.domain", observed: name, flow: flow, host: host, at: time)
                }
            }
        case .fileHash(let algorithm, let value):
            if let t = IndicatorType(name: algorithm), [.md5, .sha1, .sha256].contains(t), let i = set.match(t, value, at: time) {
                raise(i, field: "file.hash.\(t.rawValue)", observed: value, flow: flow, host: host, at: time)
            }
        }
    }

    func remember(_ a: IPAddress, indicator: Int32, name: String) {
        if resolved[a] == nil {
            if resolvedOrder.count < settings.resolvedCapacity {
                resolvedOrder.append(a)
            } else {
                resolved[resolvedOrder[resolvedHead]] = nil
                resolvedOrder[resolvedHead] = a
                resolvedHead = (resolvedHead + 1) % resolvedOrder.count
                counters.resolvedEvicted &+= 1
            }
        }
        resolved[a] = (indicator, name)
    }

    // MARK: Alerts

    func raise(_ index: Int32, field: String, observed: String, flow: FlowRecord?, host: IPAddress?, at time: Timestamp,
               extra: [(String, JSONValue)] = []) {
        let ind = set.indicators[Int(index)]
        counters.matches &+= 1
        let key = "\(ind.type.rawValue):\(ind.value)"
        let h = host ?? IPAddress(ipv4: 0)
        let rk = RateKey(indicator: key, host: h)
        var entry = summary[key] ?? IndicatorMatchSummary(type: ind.type, value: ind.value, source: ind.source, first: time, last: time)
        defer {
            if summary[key] != nil || summary.count < Self.summaryLimit { summary[key] = entry }
        }
        entry.last = max(entry.last, time)
        if let host, !entry.hosts.contains(host), entry.hosts.count < IndicatorMatchSummary.hostLimit { entry.hosts.append(host) }
        if let last = lastAlert[rk], time - last < settings.alertInterval, time >= last {
            counters.suppressed &+= 1
            entry.suppressed += 1
            return
        }
        rememberAlert(rk, time)
        entry.alerts += 1
        counters.alerts &+= 1
        emitter.emit(makeAlert(ind, field: field, observed: observed, flow: flow, host: host, at: time, extra: extra))
    }

    func rememberAlert(_ k: RateKey, _ time: Timestamp) {
        if lastAlert[k] == nil {
            if rateOrder.count < settings.rateLimitCapacity {
                rateOrder.append(k)
            } else {
                lastAlert[rateOrder[rateHead]] = nil
                rateOrder[rateHead] = k
                rateHead = (rateHead + 1) % rateOrder.count
                counters.rateLimitEvicted &+= 1
            }
        }
        lastAlert[k] = time
    }

    /// Builds the alert; field layout documented in docs/SCHEMA.md (`threat_intel.*`, `threat.indicator`,
    /// `threat.enrichments`).
    public func makeAlert(_ ind: Indicator, field: String, observed: String, flow: FlowRecord?, host: IPAddress?,
                          at time: Timestamp, extra: [(String, JSONValue)] = []) -> Alert {
        let severity: Severity
        switch ind.confidence ?? 50 {
        case 70...: severity = .high
        case 30..<70: severity = .medium
        default: severity = .low
        }
        let t = ind.type.technique
        var source: Endpoint?, destination: Endpoint?
        var related: [IPAddress] = []
        var proto: UInt8?, cid: String?
        if let r = flow {
            let ports = r.key.hasPorts && r.key.ipProtocol != IPProtocol.icmp && r.key.ipProtocol != IPProtocol.icmpv6
            source = Endpoint(ip: r.originator, port: ports ? r.originatorPort : nil)
            destination = Endpoint(ip: r.responder, port: ports ? r.responderPort : nil)
            proto = r.key.ipProtocol
            cid = emitter.communityID.string(r.key)
        } else if let host {
            related.append(host)
        }
        if (ind.type == .ip || ind.type == .cidr), let a = IPAddress(observed), !related.contains(a) { related.append(a) }
        var hosts: [String] = []
        switch ind.type {
        case .domain, .sni: hosts.append(observed)
        default: break
        }

        var indicatorDetails: [(String, JSONValue)] = [
            ("type", .string(ind.type.rawValue)),
            ("value", .string(ind.value)),
            ("provider", .string(ind.source)),
            ("confidence_level", .string(ind.confidenceName)),
        ]
        if let c = ind.confidence { indicatorDetails.append(("confidence", .int(Int64(c)))) }
        if let d = ind.description { indicatorDetails.append(("description", .string(d))) }
        if let r = ind.reference { indicatorDetails.append(("reference", .string(r))) }
        if let e = ind.expires { indicatorDetails.append(("expires", .string(e.description))) }
        if !ind.origin.isEmpty { indicatorDetails.append(("origin", .string(ind.origin))) }
        var matched: [(String, JSONValue)] = [("field", .string(field)), ("atomic", .string(observed))]
        matched += extra

        // ECS: the indicator as ECS names its fields, once as `threat.indicator` and once in the
        // `threat.enrichments` entry that says which event field matched.
        var ecs: [(String, JSONValue)] = [
            ("type", .string(ind.ecsType)),
            ("name", .string(ind.value)),
            ("provider", .string(ind.source)),
            ("confidence", .string(ind.confidenceName)),
        ]
        switch ind.type {
        case .ip: ecs.append(("ip", .string(ind.value)))
        case .cidr: ecs.append(("ip", .string(observed)))
        case .domain, .sni: ecs.append(("url", .object([("domain", .string(ind.value))])))
        case .url: ecs.append(("url", .object([("full", .string(ind.value)), ("original", .string(observed))])))
        case .md5, .sha1, .sha256: ecs.append(("file", .object([("hash", .object([(ind.type.rawValue, .string(ind.value))]))])))
        case .ja3, .ja4: break
        }
        if let d = ind.description { ecs.append(("description", .string(d))) }
        if let r = ind.reference { ecs.append(("reference", .string(r))) }
        let enrichment: JSONValue = .object([
            ("indicator", .object(ecs)),
            ("matched", .object([("atomic", .string(observed)), ("field", .string(field)), ("type", .string("indicator_match_rule"))])),
        ])

        var alert = Alert(
            timestamp: time, category: .threatIntel, ruleID: "threat_intel.\(ind.type.rawValue)",
            ruleName: "Threat intelligence match (\(ind.type.rawValue))",
            ruleDescription: "Traffic matched a loaded \(ind.type.rawValue) indicator (Rules/indicators/).",
            techniques: [t],
            severity: severity, riskScore: Double(ind.confidence ?? 50),
            message: "\(field) \(observed) matches \(ind.type.rawValue) indicator \(ind.value) from \(ind.source)",
            source: source, destination: destination, ipProtocol: proto, communityID: cid,
            relatedIPs: related, relatedHosts: hosts,
            details: [("indicator", .object(indicatorDetails)), ("matched", .object(matched))])
        alert.threatFields = [("feed", .object([("name", .string(ind.source))])), ("indicator", .object(ecs)), ("enrichments", .array([enrichment]))]
        return alert
    }
}
