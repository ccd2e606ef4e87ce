import Analyzers
import Events
import PacketCore

public struct BeaconCounters: Sendable, Equatable {
    public var connections: UInt64 = 0
    /// HTTP requests sampled (each request of a keep-alive connection is one start).
    public var httpRequests: UInt64 = 0
    /// UDP datagrams sampled that resumed their flow after a silence (polls from one source port).
    public var udpRequests: UInt64 = 0
    public var evaluations: UInt64 = 0
    public var alerts: UInt64 = 0
    /// Host-pair alerts left out because the (source, destination, port) pair already alerted.
    public var coveredHostAlerts: UInt64 = 0
    /// Pairs whose score reached the threshold but not once lowered by the destination's prevalence.
    public var prevalenceDiscounted: UInt64 = 0
    public var strobeAlerts: UInt64 = 0
    public var longConnectionAlerts: UInt64 = 0
    public var pairEvictions: UInt64 = 0
    /// Source-activity and destination-audience entries evicted because their table was full.
    public var audienceEvictions: UInt64 = 0
    public var sampleDrops: UInt64 = 0
    public init() {}
}

/// Raises `beaconing` alerts (MITRE T1071.001, T1573 for encrypted channels, T1571 on a non-standard port)
/// for pairs whose connections come at regular intervals, and RITA's strobe and long-connection findings.
///
/// Streaming: each finished connection (established, with payload; failed attempts are not beacons) adds
/// its start and its originator's bytes to two pairs, (source, destination, port) and (source, TLS SNI or
/// HTTP Host); the latter follows a beacon across rotating addresses. HTTP is measured per request
/// (`httpRequest`), so a beacon polling inside one keep-alive connection is seen; a UDP flow counts
/// without a reply (replies from another port are another flow), and its pair ignores the source port;
/// a UDP flow's datagrams after a silence are starts too (`udpRequest`), so polls from one source port,
/// which one flow holds, are as many starts.
/// Pairs with new connections are scored with `BeaconScorer` every `evaluate_every` seconds of packet
/// time and at end of input, so a replay of hours of traffic behaves as the hours did.
///
/// Beyond the statistics: a pair's observation span is its source's own activity (never the whole
/// input's window), and the score is lowered by the destination's prevalence — how many internal hosts
/// talk to it — since software every workstation runs (antivirus, updaters) beacons by design.
///
/// Memory bound: per pair at most `max_samples` × 16 bytes of samples plus ≈ 250 bytes of state
/// (256 samples: ≈ 4.3 kB); at most `max_pairs` pairs per table, two tables: with the defaults
/// (16,384 pairs, 256 samples) at most ≈ 140 MB in the worst case of every pair full, typically a few MB
/// since sample arrays grow only as connections arrive. Source activity (≈ 60 bytes each) and destination
/// audiences (≤ 64 source hashes, ≤ 300 bytes each, two tables) hold at most `max_pairs` entries each
/// (≈ 11 MB). Entries idle past the window are dropped; the stalest eighth is evicted when a table is
/// full (counted).
public final class BeaconDetector {
    public private(set) var rules: BeaconRules { didSet { directions = DirectionMask(rules.directions) } }
    /// `rules.directions`, tested per flow and request.
    var directions: DirectionMask
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
        /// Starts in the current window-long period (strobe), and when that period began.
        var periodStart: Int64 = .min
        var periodStarts = 0
        var strobeAlert: Int64?
        /// The longest connection of the pair so far (ns), and when it was reported.
        var longest: Int64 = 0
        var longestStart: Int64 = 0
        var longAlert: Int64?
        /// Flows still open after an active-timeout report: their continuous length so far (ns), at most
        /// `runningCap` of them.
        var running: [FlowMark: Int64] = [:]
        /// UDP flows that had requests after their first (at most `runningCap`): the last request's
        /// size, which their end's start takes instead of the whole flow's bytes.
        var requestSizes: [FlowMark: Int64] = [:]
    }
    /// One flow of a pair: its start and source port.
    struct FlowMark: Hashable { var start: Int64; var port: UInt16 }
    static let runningCap = 8
    var connPairs: [ConnKey: Pair] = [:]
    var hostPairs: [HostKey: Pair] = [:]

    /// When a source (any originator) was first and last seen: a pair's observation span.
    struct Activity { var first: Int64; var last: Int64; var isInternal: Bool }
    var sources: [IPAddress: Activity] = [:]
    var internalSources = 0
    /// The internal sources that talked to a destination (address, or SNI/Host name): up to
    /// `audienceCap` 32-bit hashes of their addresses, then saturated.
    struct Audience { var members: [UInt32] = []; var lastSeen: Int64 = 0 }
    var byAddress: [IPAddress: Audience] = [:]
    var byHost: [String: Audience] = [:]
    static let audienceCap = 64
    var lastEvaluation: Int64 = .min
    /// One evaluation's alerts, emitted sorted once it ends: the tables are dictionaries, whose order
    /// changes with every process, and the same input should give the same output in the same order.
    var raised: [Alert] = []

    public init(rules: BeaconRules, emitter: EventEmitter, standardPorts: [String: PortSet] = C2PortRules.defaultStandardPorts) {
        self.rules = rules
        directions = DirectionMask(rules.directions)
        self.emitter = emitter
        self.standardPorts = standardPorts
    }

    /// New rules on SIGHUP: thresholds, weights and allowlists change, the pairs' samples are kept (a
    /// smaller `max_samples` applies as the arrays are next trimmed).
    public func apply(_ newRules: BeaconRules, standardPorts: [String: PortSet]) {
        rules = newRules
        self.standardPorts = standardPorts
    }

    // MARK: Facts

    /// What a flow or request is to the detector once filtered: nil when it is never a beacon sample.
    struct Candidate { var source: IPAddress; var destination: IPAddress; var port: UInt16; var transport: UInt8; var host: String? }

    func candidate(source src: IPAddress, destination dst: IPAddress, port: UInt16, transport: UInt8, host: String?) -> Candidate? {
        if transport == IPProtocol.udp ? rules.ignoreUDPPorts.contains(port) : rules.ignoreTCPPorts.contains(port) { return nil }
        // Loopback (a test harness, a local proxy) never crosses the wire a sensor watches.
        if src.isLoopback || dst.isLoopback { return nil }
        // A beacon polls a server: datagrams to a group are routing hellos and LAN discovery, periodic by design.
        if transport == IPProtocol.udp && dst.isGroupDestination { return nil }
        guard directions.contains(emitter.homeNetworks, from: src, to: dst) else { return nil }
        if rules.ignoreDestinations.contains(where: { $0.contains(dst) }) || rules.ignoreSources.contains(where: { $0.contains(src) }) { return nil }
        if let h = host, rules.ignoresHost(h) { return nil }
        return Candidate(source: src, destination: dst, port: port, transport: transport, host: host)
    }

    /// A flow with payload from its originator; TCP needs an established connection, UDP no reply
    /// (a UDP beacon's replies may come from another port, as another flow).
    func carriesData(_ flow: FlowRecord) -> Bool {
        if flow.key.ipProtocol == IPProtocol.tcp { return flow.isEstablished && flow.originatorPayloadBytes &+ flow.responderPayloadBytes > 0 }
        return flow.originatorPayloadBytes > 0
    }

    func host(_ labels: FlowLabels) -> String? {
        if labels.hasTLS, let sni = host(serverName: labels.serverName) { return sni }
        return labels.hasHTTP ? labels.httpHost : nil
    }

    /// An SNI as a pair's name: lower-cased, none when empty.
    func host(serverName: String?) -> String? {
        guard let sni = serverName, !sni.isEmpty else { return nil }
        return sni.lowercased()
    }

    /// Adds a finished connection from its record and the labels the worker's analysers gave it.
    public func flowEnded(_ flow: FlowRecord, reason: FlowEndReason, labels: FlowLabels) {
        guard rules.enabled, flow.key.hasPorts else { return }
        let transport = flow.key.ipProtocol
        guard transport == IPProtocol.tcp || transport == IPProtocol.udp else { return }
        noteSource(flow.originator, from: flow.firstSeen.nanoseconds, to: flow.lastSeen.nanoseconds)
        guard carriesData(flow), let c = candidate(source: flow.originator, destination: flow.responder, port: flow.responderPort,
                                                   transport: transport, host: host(labels)) else { return }
        noteAudience(c, at: flow.lastSeen.nanoseconds)
        let ck = ConnKey(source: c.source, destination: c.destination, port: c.port, transport: transport)
        longConnection(flow, reason: reason, ck, c)
        guard reason != .activeTimeout else { return }
        // A TCP connection joined mid-way has no known start.
        if transport == IPProtocol.tcp && !flow.originatorFlags.contains(.syn) { return }
        // HTTP is measured per request (`httpRequest`), each request one start.
        if transport == IPProtocol.tcp && labels.hasHTTP { return }
        counters.connections &+= 1
        // A UDP flow of several requests: its first start weighs as one request, not as all of them.
        var size = Int64(clamping: flow.originatorBytes)
        if transport == IPProtocol.udp, let request = connPairs[ck]?.requestSizes.removeValue(forKey: FlowMark(start: flow.firstSeen.nanoseconds, port: flow.originatorPort)) {
            size = request
        }
        sample(c, start: flow.firstSeen.nanoseconds, size: size, last: flow.lastSeen.nanoseconds, appProtocol: flow.appProtocol)
    }

    /// Long connections, judged on every report (active-timeout ones included): a flow's continuous
    /// length is the sum of its reports' segments (counters restart at each) while each segment averaged
    /// a packet every `max_average_gap` at least; a sparser segment restarts it, so a capture whose
    /// timestamps jump makes no "connection" of years out of a few packets.
    func longConnection(_ flow: FlowRecord, reason: FlowEndReason, _ ck: ConnKey, _ c: Candidate) {
        let segment = max(0, flow.duration.nanoseconds)
        let dense = flow.duration.secondsDouble <= Double(flow.packetsA &+ flow.packetsB) * rules.longConnection.maxAverageGapSeconds
        let mark = FlowMark(start: flow.firstSeen.nanoseconds, port: flow.originatorPort)
        // Read in place: `connPairs[ck]` would copy the pair out, arrays and all.
        let before = connPairs.index(forKey: ck).flatMap { connPairs.values[$0].running[mark] } ?? 0
        let continuous = dense ? before &+ min(segment, Int64.max &- before) : 0
        let long = continuous >= Int64(rules.longConnection.minimumSeconds * 1e9)
        let tracked = reason == .activeTimeout || before > 0
        guard long || tracked else { return }
        var p = connPairs.removeValue(forKey: ck) ?? Pair(destination: c.destination)
        if reason == .activeTimeout {
            if p.running[mark] != nil || p.running.count < Self.runningCap { p.running[mark] = continuous }
        } else {
            p.running[mark] = nil
        }
        if long && continuous > p.longest {
            p.longest = continuous
            p.longestStart = flow.firstSeen.nanoseconds
            p.dirty = true
        }
        p.lastSeen = max(p.lastSeen, flow.lastSeen.nanoseconds)
        describe(&p, appProtocol: flow.appProtocol, transport: flow.key.ipProtocol, port: c.port, label: c.host)
        insert(&connPairs, ck, p)
    }

    /// One HTTP request head: a start of its (client, server, port) and (client, Host) pairs.
    public func httpRequest(_ q: HTTPRequestFact) {
        guard rules.enabled else { return }
        noteSource(q.client, from: q.time.nanoseconds, to: q.time.nanoseconds)
        guard let c = candidate(source: q.client, destination: q.server, port: q.serverPort, transport: IPProtocol.tcp, host: q.host) else { return }
        noteAudience(c, at: q.time.nanoseconds)
        counters.httpRequests &+= 1
        sample(c, start: q.time.nanoseconds, size: Int64(clamping: q.bytes), last: q.time.nanoseconds, appProtocol: AppProtocol.http.rawValue)
    }

    /// A UDP datagram that resumed its flow after a silence: a start of its (client, server, port) pair
    /// when the server is outside the home networks. Inside them, services poll from one port by design
    /// (NFS attribute checks, SNMP polling, RADIUS interim updates): there a flow stays one start.
    public func udpRequest(_ q: UDPRequestFact) {
        guard rules.enabled else { return }
        noteSource(q.client, from: q.time.nanoseconds, to: q.time.nanoseconds)
        guard !emitter.homeNetworks.contains(q.server),
              let c = candidate(source: q.client, destination: q.server, port: q.serverPort, transport: IPProtocol.udp,
                                host: host(serverName: q.serverName)) else { return }
        noteAudience(c, at: q.time.nanoseconds)
        counters.udpRequests &+= 1
        let size = Int64(q.bytes)
        sample(c, start: q.time.nanoseconds, size: size, last: q.time.nanoseconds, appProtocol: 0)
        let ck = ConnKey(source: c.source, destination: c.destination, port: c.port, transport: IPProtocol.udp)
        let mark = FlowMark(start: q.flowStart.nanoseconds, port: q.clientPort)
        guard let i = connPairs.index(forKey: ck) else { return }
        if connPairs.values[i].requestSizes[mark] != nil || connPairs.values[i].requestSizes.count < Self.runningCap {
            connPairs.values[i].requestSizes[mark] = size
        }
    }

    /// A flow judged on another shard (several shards): its source and audience only, so prevalence
    /// counts every internal host, as with one shard.
    public func flowElsewhere(_ flow: FlowRecord) {
        guard rules.enabled, flow.key.hasPorts, flow.key.ipProtocol == IPProtocol.tcp || flow.key.ipProtocol == IPProtocol.udp else { return }
        noteSource(flow.originator, from: flow.firstSeen.nanoseconds, to: flow.lastSeen.nanoseconds)
        guard carriesData(flow), let c = candidate(source: flow.originator, destination: flow.responder, port: flow.responderPort,
                                                   transport: flow.key.ipProtocol, host: nil) else { return }
        noteAudience(c, at: flow.lastSeen.nanoseconds)
    }

    func sample(_ c: Candidate, start: Int64, size: Int64, last: Int64, appProtocol: UInt8) {
        let ck = ConnKey(source: c.source, destination: c.destination, port: c.port, transport: c.transport)
        // A known pair is updated in place (taken out and put back, its sample arrays would be copied
        // on every append); a table over its bound (smaller rules) goes through `insert`, which evicts.
        if let i = connPairs.index(forKey: ck), connPairs.count <= rules.maxPairs {
            record(&connPairs.values[i], start: start, size: size, last: last)
            describe(&connPairs.values[i], appProtocol: appProtocol, transport: c.transport, port: c.port, label: c.host)
        } else {
            var cp = connPairs.removeValue(forKey: ck) ?? Pair(destination: c.destination)
            record(&cp, start: start, size: size, last: last)
            describe(&cp, appProtocol: appProtocol, transport: c.transport, port: c.port, label: c.host)
            insert(&connPairs, ck, cp)
        }
        guard let host = c.host else { return }
        let hk = HostKey(source: c.source, host: host)
        if let i = hostPairs.index(forKey: hk), hostPairs.count <= rules.maxPairs {
            sampleHost(&hostPairs.values[i], ck, host, start: start, size: size, last: last, appProtocol: appProtocol)
        } else {
            var hp = hostPairs.removeValue(forKey: hk) ?? Pair(destination: c.destination)
            sampleHost(&hp, ck, host, start: start, size: size, last: last, appProtocol: appProtocol)
            insert(&hostPairs, hk, hp)
        }
    }

    func sampleHost(_ hp: inout Pair, _ ck: ConnKey, _ host: String, start: Int64, size: Int64, last: Int64, appProtocol: UInt8) {
        record(&hp, start: start, size: size, last: last)
        describe(&hp, appProtocol: appProtocol, transport: ck.transport, port: ck.port, label: host)
        hp.destination = ck.destination
        if !hp.destinations.contains(ck) && hp.destinations.count < 8 { hp.destinations.append(ck) }
    }

    func record(_ p: inout Pair, start: Int64, size: Int64, last: Int64) {
        if p.starts.count >= rules.maxSamples {
            p.starts.removeFirst()
            p.sizes.removeFirst()
            counters.sampleDrops &+= 1
        }
        p.starts.append(start)
        p.sizes.append(size)
        p.connections += 1
        p.lastSeen = max(p.lastSeen, last)
        p.dirty = true
        // Strobe: starts counted over window-long periods (a count, not samples: a strobe is thousands).
        if p.periodStart == .min || BeaconScorer.gap(min(p.periodStart, start), max(p.periodStart, start)) > UInt64(rules.windowSeconds * 1e9) {
            p.periodStart = start
            p.periodStarts = 0
        }
        p.periodStarts += 1
    }

    func describe(_ p: inout Pair, appProtocol: UInt8, transport: UInt8, port: UInt16, label: String?) {
        if appProtocol != 0 { p.appProtocol = appProtocol }
        p.transport = transport
        p.port = port
        if label != nil { p.label = label }
    }

    func insert<K: Hashable>(_ table: inout [K: Pair], _ key: K, _ pair: Pair) {
        // The count first: below the bound the key is not looked up (nor its pair copied out) twice.
        if table.count >= rules.maxPairs && table.index(forKey: key) == nil {
            let victims = table.sorted { $0.value.lastSeen < $1.value.lastSeen }.prefix(max(1, rules.maxPairs / 8))
            for (k, _) in victims { table[k] = nil }
            counters.pairEvictions &+= UInt64(victims.count)
        }
        table[key] = pair
    }

    // MARK: Sources and audiences

    func noteSource(_ a: IPAddress, from: Int64, to: Int64) {
        if let i = sources.index(forKey: a) {
            sources.values[i].first = min(sources.values[i].first, from)
            sources.values[i].last = max(sources.values[i].last, to)
            return
        }
        if sources.count >= rules.maxPairs {
            let victims = sources.sorted { $0.value.last < $1.value.last }.prefix(max(1, rules.maxPairs / 8))
            for (k, v) in victims {
                sources[k] = nil
                if v.isInternal { internalSources -= 1 }
            }
            counters.audienceEvictions &+= UInt64(victims.count)
        }
        let home = emitter.homeNetworks.contains(a) && !a.isLoopback
        sources[a] = Activity(first: from, last: to, isInternal: home)
        if home { internalSources += 1 }
    }

    /// A fixed mix of the address (the same in every run and shard).
    static func memberHash(_ a: IPAddress) -> UInt32 {
        var h = (a.high &* 0x9E37_79B9_7F4A_7C15) ^ (a.low &* 0xC2B2_AE3D_27D4_EB4F)
        h ^= h >> 29
        return UInt32(truncatingIfNeeded: h)
    }

    func noteAudience(_ c: Candidate, at t: Int64) {
        guard emitter.homeNetworks.contains(c.source) else { return }
        let m = Self.memberHash(c.source)
        add(m, to: &byAddress, c.destination, at: t)
        if let h = c.host { add(m, to: &byHost, h, at: t) }
    }

    func add<K: Hashable>(_ member: UInt32, to table: inout [K: Audience], _ key: K, at t: Int64) {
        if table.count >= rules.maxPairs && table.index(forKey: key) == nil {
            let victims = table.sorted { $0.value.lastSeen < $1.value.lastSeen }.prefix(max(1, rules.maxPairs / 8))
            for (k, _) in victims { table[k] = nil }
            counters.audienceEvictions &+= UInt64(victims.count)
        }
        Self.note(member, at: t, in: &table[key, default: Audience()])
    }

    /// In place in its table (a copy out and back would copy the member list on every append).
    static func note(_ member: UInt32, at t: Int64, in a: inout Audience) {
        if a.members.count < audienceCap && !a.members.contains(member) { a.members.append(member) }
        a.lastSeen = max(a.lastSeen, t)
    }

    /// How many internal hosts talk to the pair's destination, and the factor its score is multiplied
    /// by: 1 below `prevalence.min_sources`, else 1 − impact × max(share of internal hosts,
    /// hosts / `popular_sources`), capped at 1.
    func prevalence(_ p: Pair, hostPair: Bool) -> (sources: Int, share: Double, factor: Double) {
        let audience = hostPair ? p.label.flatMap { byHost[$0] } : byAddress[p.destination]
        let n = audience?.members.count ?? 0
        let share = internalSources > 0 ? min(1, Double(n) / Double(internalSources)) : 0
        guard n >= rules.prevalence.minSources else { return (n, share, 1) }
        let popularity = min(1, max(share, Double(n) / Double(rules.prevalence.popularSources)))
        return (n, share, max(0, 1 - rules.prevalence.impact * popularity))
    }

    // MARK: Evaluation

    public func tick(_ now: Timestamp) {
        guard lastEvaluation == .min || now - Timestamp(nanoseconds: lastEvaluation) >= .seconds(rules.evaluateEverySeconds) else { return }
        if lastEvaluation == .min { lastEvaluation = now.nanoseconds; return }
        evaluate(now)
    }

    public func finish(_ now: Timestamp) { evaluate(now) }

    /// Scores every pair with new connections, alerts, and forgets what was idle past the window.
    func evaluate(_ now: Timestamp) {
        lastEvaluation = now.nanoseconds
        let from = (now - .seconds(rules.windowSeconds)).nanoseconds
        // Pairs are judged in place, in table order: walking the keys while storing a changed copy back
        // made the table copy itself whole, and every pair's arrays with it.
        var i = connPairs.startIndex
        while i != connPairs.endIndex {
            if connPairs.values[i].dirty { judge(&connPairs.values[i], source: connPairs.keys[i].source, from: from, now: now) }
            connPairs.formIndex(after: &i)
        }
        var h = hostPairs.startIndex
        while h != hostPairs.endIndex {
            if hostPairs.values[h].dirty { judgeHost(&hostPairs.values[h], source: hostPairs.keys[h].source, from: from, now: now) }
            hostPairs.formIndex(after: &h)
        }
        if connPairs.values.contains(where: { $0.lastSeen < from }) { connPairs = connPairs.filter { $0.value.lastSeen >= from } }
        if hostPairs.values.contains(where: { $0.lastSeen < from }) { hostPairs = hostPairs.filter { $0.value.lastSeen >= from } }
        if sources.values.contains(where: { $0.last < from }) {
            sources = sources.filter { $0.value.last >= from }
            internalSources = sources.values.reduce(0) { $1.isInternal ? $0 + 1 : $0 }
        }
        if byAddress.values.contains(where: { $0.lastSeen < from }) { byAddress = byAddress.filter { $0.value.lastSeen >= from } }
        if byHost.values.contains(where: { $0.lastSeen < from }) { byHost = byHost.filter { $0.value.lastSeen >= from } }
        guard !raised.isEmpty else { return }
        raised.sort { ($0.ruleID, $0.message) < ($1.ruleID, $1.message) }
        for a in raised { emitter.emit(a) }
        raised.removeAll(keepingCapacity: true)
    }

    func judge(_ p: inout Pair, source: IPAddress, from: Int64, now: Timestamp) {
        p.dirty = false
        trim(&p, from: from)
        findings(&p, source: source, now: now)
        if !isStrobe(p), let s = score(p, source: source, from: from, hostPair: false, now: now), !suppressed(p.lastAlert, now) {
            p.lastAlert = now.nanoseconds
            alert(p, s, source: source, hostPair: false, now: now)
        }
    }

    func judgeHost(_ p: inout Pair, source: IPAddress, from: Int64, now: Timestamp) {
        p.dirty = false
        trim(&p, from: from)
        if !isStrobe(p), let s = score(p, source: source, from: from, hostPair: true, now: now), !suppressed(p.lastAlert, now) {
            p.lastAlert = now.nanoseconds
            // The same beacon already reported per destination: say nothing twice.
            let covered = p.destinations.allSatisfy { connPairs[$0].map { suppressed($0.lastAlert, now) } ?? false }
            if covered { counters.coveredHostAlerts &+= 1 } else { alert(p, s, source: source, hostPair: true, now: now) }
        }
    }

    func trim(_ p: inout Pair, from: Int64) {
        var k = 0
        while k < p.starts.count, p.starts[k] < from { k += 1 }
        if k > 0 { p.starts.removeFirst(k); p.sizes.removeFirst(k) }
    }

    func suppressed(_ last: Int64?, _ now: Timestamp) -> Bool {
        guard let last else { return false }
        return (now - Timestamp(nanoseconds: last)).secondsDouble < rules.suppressSeconds
    }

    func isStrobe(_ p: Pair) -> Bool { p.periodStarts >= rules.strobeConnections }

    struct Judged {
        var score: BeaconScore
        var final: Double
        var prevalence: (sources: Int, share: Double, factor: Double)
        var observedFrom: Int64
    }

    func score(_ p: Pair, source: IPAddress, from: Int64, hostPair: Bool, now: Timestamp) -> Judged? {
        guard p.starts.count >= rules.scoring.minStarts else { return nil }
        counters.evaluations &+= 1
        // The pair's observation span: its source's activity within the window, never the input's.
        let activity = sources[source]
        let observedFrom = max(from, activity?.first ?? p.starts.min() ?? from)
        let observedTo = max(activity?.last ?? now.nanoseconds, p.lastSeen)
        guard let s = BeaconScorer.score(starts: p.starts, sizes: p.sizes, observedFrom: observedFrom, observedTo: observedTo, parameters: rules.scoring),
              s.medianIntervalSeconds >= rules.scoring.minIntervalSeconds, s.score >= rules.threshold else { return nil }
        let prev = prevalence(p, hostPair: hostPair)
        let final = s.score * prev.factor
        guard final >= rules.threshold else {
            counters.prevalenceDiscounted &+= 1
            return nil
        }
        return Judged(score: s, final: final, prevalence: prev, observedFrom: observedFrom)
    }

    /// RITA's other two findings on a (source, destination, port) pair: a strobe (so many connections in
    /// a window that they are a flood, not a beacon: reported instead of scored) and a long connection.
    func findings(_ p: inout Pair, source: IPAddress, now: Timestamp) {
        if isStrobe(p), !suppressed(p.strobeAlert, now) {
            p.strobeAlert = now.nanoseconds
            counters.strobeAlerts &+= 1
            finding(p, source: source, now: now, ruleID: "beaconing.strobe", ruleName: "Strobe: a flood of connections to one destination",
                    description: "So many connections from one source to one destination and port within the window that they are a strobe, not a beacon (RITA's strobe finding, Rules/beaconing.yaml).",
                    severity: .low, risk: 30,
                    message: "Strobe \(pairText(p, source: source, hostPair: false)): \(p.periodStarts) connections within \(rounded(rules.windowSeconds / 3600)) h",
                    extra: [("connections", .int(p.periodStarts))])
        }
        let minimum = rules.longConnection.minimumSeconds
        if p.longest > 0, Double(p.longest) / 1e9 >= minimum, !suppressed(p.longAlert, now) {
            p.longAlert = now.nanoseconds
            counters.longConnectionAlerts &+= 1
            let seconds = Double(p.longest) / 1e9
            let severity: Severity = seconds >= rules.longConnection.highSeconds ? .high
                : seconds >= rules.longConnection.mediumSeconds ? .medium : .low
            let risk = severity == .high ? 80.0 : severity == .medium ? 60 : 40
            finding(p, source: source, now: now, ruleID: "beaconing.long_connection", ruleName: "Long connection",
                    description: "One connection from one source to one destination and port lasted longer than long_connection.minimum (RITA's long-connection finding, Rules/beaconing.yaml).",
                    severity: severity, risk: risk,
                    message: "Long connection \(pairText(p, source: source, hostPair: false)): \(rounded(seconds / 3600)) h",
                    extra: [("duration", .double(rounded(seconds))), ("connection_start", .string("\(Timestamp(nanoseconds: p.longestStart))"))])
        }
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

    func pairText(_ p: Pair, source: IPAddress, hostPair: Bool) -> String {
        let transportName = p.transport == IPProtocol.tcp ? "tcp" : "udp"
        return hostPair ? "\(source) → \(p.label ?? "?")" : "\(source) → \(p.destination):\(p.port)/\(transportName)"
    }

    /// Protocol, techniques and the fields every finding of a pair carries.
    func common(_ p: Pair) -> (techniques: [Technique], fields: [(String, JSONValue)]) {
        let proto = AppProtocol(rawValue: p.appProtocol) ?? .unknown
        let pname = "\(proto.name)"
        let standard = p.appProtocol != 0 && standardPorts[pname]?.contains(p.port) == true
        var fields: [(String, JSONValue)] = [
            ("protocol", .string(p.appProtocol != 0 ? pname : "unknown")),
            ("port", .int(Int(p.port))),
            ("transport", .string(p.transport == IPProtocol.tcp ? "tcp" : "udp")),
            ("standard_port", .bool(standard)),
        ]
        if let l = p.label { fields.append(("server_name", .string(l))) }
        return (BeaconDetector.techniques(for: proto, standardPort: standard), fields)
    }

    func finding(_ p: Pair, source: IPAddress, now: Timestamp, ruleID: String, ruleName: String, description: String,
                 severity: Severity, risk: Double, message: String, extra: [(String, JSONValue)]) {
        counters.alerts &+= 1
        let (techniques, fields) = common(p)
        raised.append(Alert(
            timestamp: now, category: .beaconing, ruleID: ruleID, ruleName: ruleName, ruleDescription: description,
            techniques: techniques, severity: severity, riskScore: risk, message: message,
            source: Endpoint(ip: source), destination: Endpoint(ip: p.destination, port: p.port), ipProtocol: p.transport,
            relatedIPs: [source, p.destination], relatedHosts: p.label.map { [$0] } ?? [],
            details: [("pair", .object([("type", .string("source_destination_port")), ("text", .string(pairText(p, source: source, hostPair: false)))]))]
                + extra + fields))
    }

    func alert(_ p: Pair, _ j: Judged, source: IPAddress, hostPair: Bool, now: Timestamp) {
        counters.alerts &+= 1
        let s = j.score
        let (techniques, fields) = common(p)
        let text = pairText(p, source: source, hostPair: hostPair)
        let parts: [(String, JSONValue)] = [
            ("interval_skew", .double(rounded(s.intervalSkew))), ("interval_dispersion", .double(rounded(s.intervalDispersion))),
            ("interval_band", .double(rounded(s.intervalBand))),
            ("size_skew", .double(rounded(s.sizeSkew))), ("size_dispersion", .double(rounded(s.sizeDispersion))),
            ("histogram", .double(rounded(s.histogram))), ("duration", .double(rounded(s.duration))),
            ("confidence", .double(rounded(s.confidence))), ("prevalence", .double(rounded(j.prevalence.factor))),
        ]
        var details: [(String, JSONValue)] = [
            ("pair", .object([("type", .string(hostPair ? "source_host" : "source_destination_port")), ("text", .string(text))])),
            ("score", .double(rounded(j.final))),
            ("score_parts", .object(parts)),
            ("interval_median", .double(rounded(s.medianIntervalSeconds))),
            ("interval_mad", .double(rounded(s.intervalMADSeconds))),
            ("size_median", .double(rounded(s.medianSizeBytes))),
            ("size_mad", .double(rounded(s.sizeMADBytes))),
            ("connections", .int(s.connections)),
            ("distinct_starts", .int(s.distinctStarts)),
            ("first_start", .string("\(Timestamp(nanoseconds: p.starts.min() ?? 0))")),
            ("last_start", .string("\(Timestamp(nanoseconds: p.starts.max() ?? 0))")),
            ("observed_from", .string("\(Timestamp(nanoseconds: j.observedFrom))")),
            ("prevalence_sources", .int(j.prevalence.sources)),
            ("prevalence_share", .double(rounded(j.prevalence.share))),
        ]
        details += fields
        if s.wholeSecondTimestamps { details.append(("whole_second_timestamps", .bool(true))) }
        if hostPair { details.append(("destinations", .array(p.destinations.map { .ip($0.destination) }))) }
        let risk = rounded(min(100, j.final * 100))
        raised.append(Alert(
            timestamp: now, category: .beaconing,
            ruleID: hostPair ? "beaconing.host" : "beaconing.destination",
            ruleName: hostPair ? "Beaconing to a host name" : "Beaconing to a destination",
            ruleDescription: hostPair
                ? "Connections or HTTP requests from one source to one server name (over any of its addresses) start at regular intervals (RITA-style score, Rules/beaconing.yaml)."
                : "Connections or HTTP requests from one source to one destination address and port start at regular intervals (RITA-style score, Rules/beaconing.yaml).",
            techniques: techniques,
            severity: j.final >= 0.9 ? .high : .medium, riskScore: risk,
            message: "Beaconing \(text): \(s.distinctStarts) starts every \(rounded(s.medianIntervalSeconds)) s (score \(rounded(j.final)))",
            source: Endpoint(ip: source), destination: Endpoint(ip: p.destination, port: p.port), ipProtocol: p.transport,
            relatedIPs: [source, p.destination], relatedHosts: p.label.map { [$0] } ?? [],
            details: details))
    }
}

extension IPAddress {
    /// Multicast (224.0.0.0/4, ff00::/8) or broadcast: the limited one, or an IPv4 address ending in .255
    /// (a /24 or longer subnet's; a host there is rare enough not to matter to beaconing).
    var isGroupDestination: Bool {
        if isIPv6 { return high >> 56 == 0xFF }
        let v = ipv4Value
        return v >> 28 == 0xE || v & 0xFF == 0xFF
    }
}
