import Analyzers
import ConfigKit
import Detectors
import Events
import Logging
import PacketCore

/// Counters of one host-level stage (a shard's detectors and what reached them).
public struct HostStageCounters: Sendable, Equatable {
    /// Fact records applied.
    public var facts: UInt64 = 0
    /// Records that did not decode (never expected: both ends are this program; counted, not trusted).
    public var undecodable: UInt64 = 0
    /// Rule sets applied (SIGHUP).
    public var reloads: UInt64 = 0
    public init() {}
}

/// Which host-level detectors run, with their rules: loaded once per pipeline from the rules directory,
/// so the worker side knows which facts to send and the stage which detectors to build.
struct HostDetectorPlan {
    var c2Rules: C2PortRules
    var beaconRules: BeaconRules
    /// nil when `lateral-movement.yaml` disables the detector.
    var lateralRules: LateralMovementRules?
    /// nil when DNS is off, the tunnelling rules disable the detector, or no Public Suffix List is loaded.
    var tunnelRules: DNSTunnelRules?

    var wantsFlows: Bool { c2Rules.enabled || beaconRules.enabled || lateralRules != nil }
    var wantsLateral: Bool { lateralRules != nil }
    var wantsDNS: Bool { tunnelRules != nil }

    static func load(_ c: SensorConfiguration, logger: Logger) throws -> HostDetectorPlan {
        let dir = RulesDirectory.resolve(c.rulesDirectory)
        // `c2.enabled: false` / `lateral_movement.enabled: false` turn the analysers and detectors off
        // (their rules files are then not read).
        var c2Rules = C2PortRules(), beaconRules = BeaconRules()
        if c.c2Enabled {
            c2Rules = try C2PortRules.load(directory: dir)
            beaconRules = try BeaconRules.load(directory: dir)
        } else {
            c2Rules.enabled = false
            beaconRules.enabled = false
        }
        var lateral: LateralMovementRules?
        if c.lateralMovementEnabled {
            let rules = try LateralMovementWiring.rules(c)
            if rules.enabled { lateral = rules }
        }
        var tunnel: DNSTunnelRules?
        if c.dnsEnabled {
            let rules = try DNSSetup.loadTunnelRules(c)
            if rules.enabled && DNSSetup.publicSuffixListAvailable(c) { tunnel = rules }
        }
        return HostDetectorPlan(c2Rules: c2Rules, beaconRules: beaconRules, lateralRules: lateral, tunnelRules: tunnel)
    }
}

/// The detectors that aggregate across flows, for the hosts of one shard: non-standard-port C2 (pair
/// repetition, port popularity), beaconing, lateral movement and DNS tunnelling.
///
/// They decide from self-contained fact records (`HostFactWriter`), never from a worker's flow table or
/// side tables, so the same set runs inline in replay and behind the per-worker rings live. Records are
/// applied in the order given (the caller merges workers by packet time); `tick` is called once per
/// packet-clock second, `finish` once at the end. Single-threaded: one owner thread.
public final class HostDetectorSet {
    let portDetector: NonStandardPortDetector
    let beaconDetector: BeaconDetector
    let lateral: LateralMovementDetector?
    let tunnel: DNSTunnelDetector?
    public private(set) var counters = HostStageCounters()
    /// The next packet-clock second the detectors tick at (`tick` records before it are ignored).
    var nextTick: Int64 = .min
    /// The lower-cased DNS name (the tunnelling detector reads both spellings).
    let lowerName = UnsafeMutableRawBufferPointer.allocate(byteCount: 1024, alignment: 8)

    init(plan: HostDetectorPlan, emitter: EventEmitter) {
        portDetector = NonStandardPortDetector(rules: plan.c2Rules, emitter: emitter, identifier: nil, tls: nil, http: nil)
        beaconDetector = BeaconDetector(rules: plan.beaconRules, emitter: emitter, tls: nil, http: nil,
                                        standardPorts: plan.c2Rules.standardPorts)
        lateral = plan.lateralRules.map { LateralMovementDetector(rules: $0, emitter: emitter) }
        tunnel = plan.tunnelRules.map { DNSTunnelDetector(rules: $0, emitter: emitter) }
    }

    deinit { lowerName.deallocate() }

    /// Applies one record (stamp, kind, fields).
    public func apply(_ record: UnsafeRawBufferPointer) {
        var r = HostFactReader(record)
        guard r.i64() != nil, let k = r.u8(), let kind = HostFactKind(rawValue: k), apply(kind, &r) else {
            counters.undecodable &+= 1
            return
        }
        counters.facts &+= 1
    }

    func apply(_ kind: HostFactKind, _ r: inout HostFactReader) -> Bool {
        switch kind {
        case .clockStarted:
            guard let t = r.time() else { return false }
            lateral?.clockStarted(at: t)
        case .flowEnded:
            guard let flow = r.flow(), let rawReason = r.u8(), let reason = FlowEndReason(rawValue: rawReason),
                  let labels = r.labels() else { return false }
            portDetector.flowEnded(flow, reason: reason, labels: labels)
            beaconDetector.flowEnded(flow, reason: reason, labels: labels)
            lateral?.flowEnded(flow, reason: reason, slot: -1)
        case .tick:
            guard let t = r.time() else { return false }
            if t.nanoseconds >= nextTick {
                nextTick = (t.seconds &+ 1) &* 1_000_000_000
                tick(t)
            }
        case .flowElsewhere:
            guard let flow = r.flow() else { return false }
            portDetector.learnPortServer(flow)
        case .tcpFlowStarted:
            guard let s = r.ip(), let d = r.ip(), let port = r.u16(), let t = r.time() else { return false }
            lateral?.tcpFlowStarted(source: s, destination: d, port: port, at: t)
        case .tcpAccepted:
            guard let s = r.ip(), let c = r.ip(), let port = r.u16(), let t = r.time() else { return false }
            lateral?.tcpAccepted(server: s, client: c, port: port, at: t)
        case .remoteAccess:
            guard let ep = r.endpoints(), let t = r.time(), let fact = r.remoteAccess() else { return false }
            lateral?.observe(fact, on: ep, at: t)
        case .dnsMessage:
            return applyDNS(&r)
        case .ftpDataAnnounced:
            guard let host = r.ip(), let port = r.u16(), let until = r.time(), let t = r.time() else { return false }
            portDetector.ftpDataAnnounced(FTPDataChannels.Expected(host: host, port: port, until: until), at: t)
        }
        return true
    }

    func applyDNS(_ r: inout HostFactReader) -> Bool {
        guard let t = r.time(), let client = r.ip(), let server = r.ip(), let cport = r.u16(), let sport = r.u16(),
              let ipProtocol = r.u8(), let app = r.u8(), let isResponse = r.bool(), let id = r.u16(), let qtype = r.u16(),
              let rcode = r.u16(), let registered = r.u32(), let suffix = r.u32(), let length = r.u32(), let answers = r.u32(),
              let answerBytes = r.u32(), let name = r.bytes(), name.count <= lowerName.count else { return false }
        for i in 0..<name.count {
            let b = name[i]
            lowerName[i] = b >= 0x41 && b <= 0x5A ? b | 0x20 : b
        }
        let facts = DNSMessageFacts(
            at: t, client: client, server: server, clientPort: cport, serverPort: sport, ipProtocol: ipProtocol,
            appProtocol: AppProtocol(rawValue: app) ?? .dns, isResponse: isResponse, id: id, queryType: qtype, responseCode: rcode,
            name: name, lowercaseName: UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(lowerName)[..<name.count]),
            registeredDomainStart: Int(Int32(bitPattern: registered)), publicSuffixStart: Int(Int32(bitPattern: suffix)),
            messageLength: Int(length), answerCount: Int(answers), answerDataBytes: Int(answerBytes))
        tunnel?.dnsMessage(facts)
        return true
    }

    /// Once per packet-clock second, in the order the pipeline ticked them before the stage existed.
    public func tick(_ now: Timestamp) {
        portDetector.tick(now)
        beaconDetector.tick(now)
        lateral?.tick(now)
        tunnel?.tick(now)
    }

    public func finish(_ now: Timestamp) {
        portDetector.finish(now)
        beaconDetector.finish(now)
        lateral?.finish(now)
    }

    /// Hands an accepted rule set to the detectors, on the stage's thread, between two records: each
    /// takes its new thresholds, weights and allowlists and keeps its per-pair and per-host state. The
    /// reloader has already checked the whole directory; a file that still fails to load here (changed
    /// again in between) leaves that detector on its previous rules, logged. Switching a detector on or
    /// off (`enabled`) and the DNS window geometry take effect at restart.
    func reload(_ snapshot: RulesSnapshot, logger: Logger, shard: Int) {
        let dir = snapshot.directory
        func attempt(_ detector: String, _ body: () throws(ConfigIssues) -> Void) {
            do { try body() } catch {
                logger.error("host-level detector kept its previous rules",
                             metadata: ["detector": "\(detector)", "shard": "\(shard)", "problems": "\(error.description)"])
            }
        }
        attempt("nonstandard_port_c2/beaconing") { () throws(ConfigIssues) in
            // `enabled` stays as started: which facts the workers send was fixed then (and a family
            // switched off in the configuration must stay off).
            var c2 = try C2PortRules.load(directory: dir)
            var beacon = try BeaconRules.load(directory: dir)
            c2.enabled = portDetector.rules.enabled
            beacon.enabled = beaconDetector.rules.enabled
            portDetector.apply(c2)
            beaconDetector.apply(beacon, standardPorts: c2.standardPorts)
        }
        if let lateral {
            attempt("lateral_movement") { () throws(ConfigIssues) in
                var rules = try LateralMovementWiring.rules(directory: dir)
                rules.enabled = lateral.rules.enabled
                lateral.apply(rules)
            }
        }
        if let tunnel {
            attempt("dns_tunneling") { () throws(ConfigIssues) in
                var rules = try DNSSetup.tunnelRules(directory: dir)
                rules.enabled = tunnel.rules.enabled
                if !tunnel.apply(rules) {
                    logger.notice("dns_tunneling: a new window or bucket count takes effect at restart; other settings applied")
                }
            }
        }
        counters.reloads &+= 1
    }
}
