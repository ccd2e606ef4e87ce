import Analyzers
import Events
import PacketCore

/// Counters of the lateral-movement detector (bounded state and what it cost).
public struct LateralMovementCounters: Sendable, Equatable {
    public var facts: UInt64 = 0
    public var factsIgnored: UInt64 = 0
    public var alerts: UInt64 = 0
    public var suppressed: UInt64 = 0
    public var hostsEvicted: UInt64 = 0
    public var pairsEvicted: UInt64 = 0
    public var edgesEvicted: UInt64 = 0
    public init() {}
}

/// Decides lateral movement from the facts the SMB, DCE-RPC and Kerberos analysers extract and from the
/// connections sources make to administrative ports (rule.category `lateral_movement`).
///
/// State is per source→target pair (shares, pipes, RPC calls, writes), per source host (fan-out,
/// authentication failures) and per edge (first-seen RDP/WinRM/SSH); every table is bounded and evicts
/// its least recently used entries in batches, counting them. All time is packet time.
public final class LateralMovementDetector: RemoteAccessObserver {
    public private(set) var rules: LateralMovementRules
    public private(set) var counters = LateralMovementCounters()
    let emitter: EventEmitter
    let home: NetworkSet

    struct PairKey: Hashable { var source: IPAddress; var target: IPAddress }

    struct PairState {
        var lastSeen: Timestamp
        var adminShares = Set<String>()
        var dataShares = Set<String>()
        var adminShareFirst: Timestamp?
        var adminWrites: [(time: Timestamp, share: String, file: String)] = []
        var pipes: [String] = []
        var files: [String] = []
        var calls: [String] = []
        var users: [String] = []
        var ports = Set<UInt16>()
        var dcomClasses: [String] = []
        var dcomActivation: Timestamp?
        var shareEnumeration: Timestamp?
        /// Exploitation signatures seen on this pair (alert details).
        var signatures: [String] = []
        /// Recent Netlogon secure-channel setup calls (at most the burst threshold) and the last
        /// Zerologon evidence (a burst or a zero credential).
        var netlogonCalls: [Timestamp] = []
        var zerologon: Timestamp?
        /// Rule id → when it last fired for this pair.
        var fired: [String: Timestamp] = [:]
        var pendingShareAlert = false

        static func note(_ list: inout [String], _ s: String, limit: Int = 16) {
            if s.isEmpty || list.contains(s) || list.count >= limit { return }
            list.append(s)
        }
    }

    /// A destination a source reached on an admin port: when first and last within the tracked window.
    struct Reach {
        var target: IPAddress
        var port: UInt16
        var first: Timestamp
        var last: Timestamp
    }

    struct HostState {
        var lastSeen: Timestamp
        /// Admin-port destinations reached within the longer of the fan-out windows (capped, least
        /// recently reached evicted first).
        var reached: [Reach] = []
        /// New remote-access edges per service within the fan-out window (no-baseline pivots).
        var edges: [(service: String, target: IPAddress, time: Timestamp)] = []
        /// Short interactive-login sessions (SSH, RDP) within the login window (at most `loginCap`).
        var logins = LoginWindow()
        /// Authentication failures within the auth window (at most `failureCap`).
        var failures = AuthFailureWindow()
        /// Hosts the failures went to (at most `failureTargetCap`, never expired).
        var targetsOfFailures = Set<IPAddress>()
        var fired: [String: Timestamp] = [:]
    }

    struct EdgeKey: Hashable { var source: IPAddress; var target: IPAddress; var service: String }

    var pairs: [PairKey: PairState] = [:]
    var hosts: [IPAddress: HostState] = [:]
    var edges: [EdgeKey: Timestamp] = [:]
    var learnedControllers = Set<IPAddress>()
    var pendingShareAlerts: [PairKey] = []
    var firstPacket: Timestamp?
    var now = Timestamp.zero

    public init(rules: LateralMovementRules, emitter: EventEmitter) {
        self.rules = rules
        self.emitter = emitter
        self.home = emitter.homeNetworks
    }

    /// New rules on SIGHUP (thresholds, windows, allowlists of jump hosts, DCs, backup servers): the
    /// per-pair, per-source and per-edge state is kept.
    public func apply(_ newRules: LateralMovementRules) { rules = newRules }

    // MARK: Connections: fan-out and first-seen edges

    /// The packet clock started at `t` (the learning period counts from the first packet).
    public func clockStarted(at t: Timestamp) {
        if firstPacket == nil { firstPacket = t }
    }

    /// The first packet of a new TCP flow, from `source` to `destination:port`.
    public func tcpFlowStarted(source: IPAddress, destination: IPAddress, port: UInt16, at t: Timestamp) {
        // A connection attempt (or the first packet of a midstream flow) to an admin port.
        guard rules.fanOutPorts.contains(port), considered(source, destination) else { return }
        reached(source: source, target: destination, port: port, at: t)
    }

    /// A SYN-ACK from `server:port` to `client`.
    public func tcpAccepted(server: IPAddress, client: IPAddress, port: UInt16, at t: Timestamp) {
        // The server accepted: an edge to an interactive remote-access service.
        guard let service = rules.edgeServices[port], considered(client, server) else { return }
        edge(source: client, target: server, port: port, service: service, at: t)
    }

    public func flowEnded(_ flow: FlowRecord, reason: FlowEndReason) {
        guard flow.key.ipProtocol == IPProtocol.tcp, flow.isEstablished, considered(flow.originator, flow.responder) else { return }
        // Midstream sessions (handshake before the capture) still make an edge once they carried data both ways.
        if let service = rules.edgeServices[flow.responderPort] {
            edge(source: flow.originator, target: flow.responder, port: flow.responderPort, service: service, at: flow.firstSeen)
        }
        if reason != .activeTimeout, let service = rules.loginServices[flow.responderPort] { loginSession(flow, service: service) }
    }

    func considered(_ source: IPAddress, _ target: IPAddress) -> Bool {
        guard rules.enabled else { return false }
        if rules.internalOnly && !(home.contains(source) && home.contains(target)) { return false }
        return source != target
    }

    func isAllowed(_ a: IPAddress, _ list: [IPNetwork]) -> Bool { list.contains { $0.contains(a) } }
    func isAdminHost(_ a: IPAddress) -> Bool { isAllowed(a, rules.adminHosts) }
    func isDomainController(_ a: IPAddress) -> Bool { isAllowed(a, rules.domainControllers) || learnedControllers.contains(a) }
    func isBackupServer(_ a: IPAddress) -> Bool { isAllowed(a, rules.backupServers) }

    /// Most destinations kept per source: enough for every threshold, bounded whatever the rules say.
    var reachCap: Int { min(1024, max(64, 2 * max(rules.fanOutDistinctHosts, rules.fanOutNewPerMinute, sustainedNeed))) }

    /// New destinations over the sustained window that make a worm-like rate.
    var sustainedNeed: Int {
        max(rules.fanOutNewPerMinute, Int((rules.fanOutSustainedRate * rules.fanOutSustainedWindow / 60).rounded(.up)))
    }

    func reached(source: IPAddress, target: IPAddress, port: UInt16, at t: Timestamp) {
        guard !isAdminHost(source), !isDomainController(source), !isBackupServer(source) else { return }
        // The list is changed in place in the table: a copy out and back would copy all of it per connection.
        let cap = reachCap
        let keep = t - .seconds(max(rules.fanOutWindow, rules.fanOutSustainedWindow))
        let hi = touchHost(source, t)
        hosts.values[hi].reached.removeAll { $0.last < keep }
        if let i = hosts.values[hi].reached.firstIndex(where: { $0.target == target }) {
            hosts.values[hi].reached[i].last = t
        } else {
            if hosts.values[hi].reached.count >= cap,
               let j = hosts.values[hi].reached.indices.min(by: { hosts.values[hi].reached[$0].last < hosts.values[hi].reached[$1].last }) {
                hosts.values[hi].reached.remove(at: j)
            }
            hosts.values[hi].reached.append(Reach(target: target, port: port, first: t, last: t))
        }
        // Counted in place; the targets are listed only for an alert (this runs per admin-port connection,
        // whose rate a host on the monitored network chooses).
        let horizon = t - .seconds(rules.fanOutWindow)
        var distinct = 0
        for r in hosts.values[hi].reached where r.last >= horizon { distinct &+= 1 }
        if distinct >= rules.fanOutDistinctHosts {
            fireHost(source, rule: "lateral_movement.fan_out", at: t) {
                let targets = hosts.values[hi].reached.filter { $0.last >= horizon }.map(\.target)
                return Alert(timestamp: t, category: .lateralMovement, ruleID: "lateral_movement.fan_out",
                      ruleName: "Fan-out to many internal hosts on administrative ports", ruleDescription: Self.describe("lateral_movement.fan_out"),
                      techniques: [.remoteServices], tactics: [.discovery],
                      severity: .medium, riskScore: 60,
                      message: "\(source) connected to \(distinct) internal hosts on administrative ports within \(Int(rules.fanOutWindow)) s",
                      source: Endpoint(ip: source), relatedIPs: [source] + targets.prefix(32),
                      details: [("targets", .array(targets.prefix(64).map { .ip($0) })), ("distinct_targets", .int(Int64(distinct))),
                                ("window_seconds", .double(rules.fanOutWindow))])
            }
        }
        spreadRate(source, hosts.values[hi].reached, at: t)
    }

    /// Worm-like spread as a rate: destinations first reached within the last minute, or on average over
    /// the sustained window. Domain controllers are not counted (every workstation reaches them), nor are
    /// destinations first reached in the minute after the packet clock started (sessions in progress when
    /// the capture began look new but are not).
    /// The count rule (`fan_out`) having fired for the source covers the same spread: not reported twice.
    /// Counted in one pass without building lists; the destinations are listed only for an alert.
    func spreadRate(_ source: IPAddress, _ reached: [Reach], at t: Timestamp) {
        guard !suppressed(hosts.index(forKey: source).flatMap { hosts.values[$0].fired["lateral_movement.fan_out"] }, t) else { return }
        let settled = (firstPacket ?? t) + .seconds(60)
        let minute = t - .seconds(60)
        let sustainedHorizon = t - .seconds(rules.fanOutSustainedWindow)
        var fresh = 0, lastMinute = 0, sustained = 0
        for r in reached where r.first >= settled && !isDomainController(r.target) {
            fresh &+= 1
            if r.first >= minute { lastMinute &+= 1 }
            if r.first >= sustainedHorizon { sustained &+= 1 }
        }
        guard fresh >= rules.fanOutNewPerMinute else { return }
        let burst = lastMinute >= rules.fanOutNewPerMinute
        guard burst || sustained >= sustainedNeed else { return }
        let since = burst ? minute : sustainedHorizon
        let window = burst ? 60 : rules.fanOutSustainedWindow
        fireHost(source, rule: "lateral_movement.fan_out_rate", at: t) {
            let hits = reached.filter { $0.first >= settled && !isDomainController($0.target) && $0.first >= since }
            let rate = Double(hits.count) / (window / 60)
            let ports = Set(hits.map(\.port)).sorted()
            return Alert(timestamp: t, category: .lateralMovement, ruleID: "lateral_movement.fan_out_rate",
                  ruleName: "Worm-like spread: new internal destinations at a high rate", ruleDescription: Self.describe("lateral_movement.fan_out_rate"),
                  techniques: [.remoteServices], tactics: [.discovery],
                  severity: .high, riskScore: 70,
                  message: "\(source) reached \(hits.count) new internal hosts on administrative ports within \(Int(window)) s (\((rate * 10).rounded() / 10) per minute)",
                  source: Endpoint(ip: source), relatedIPs: [source] + hits.prefix(32).map(\.target),
                  details: [("targets", .array(hits.prefix(64).map { .ip($0.target) })), ("new_targets", .int(Int64(hits.count))),
                            ("rate_per_minute", .double(rate)), ("window_seconds", .double(window)),
                            ("ports", .array(ports.map { .int(Int64($0)) }))])
        }
    }

    func edge(source: IPAddress, target: IPAddress, port: UInt16, service: String, at t: Timestamp) {
        let key = EdgeKey(source: source, target: target, service: service)
        if edges[key] != nil { edges[key] = t; return }
        if edges.count >= rules.maxEdges {
            counters.edgesEvicted &+= UInt64(LateralMovementDetector.evictOldest(&edges, keep: rules.maxEdges * 7 / 8) { $0 })
        }
        edges[key] = t
        let start = firstPacket ?? t
        guard t - start >= .seconds(rules.learningPeriod) else { return }
        guard !isAdminHost(source) else { return }
        var targets = [target]
        if rules.learningPeriod == 0 && !rules.edgeServicesWithoutBaseline.contains(service) {
            // No baseline: one new edge is every admin session; new edges to several hosts are a pivot.
            var h = host(source, t)
            let horizon = t - .seconds(rules.fanOutWindow)
            h.edges.removeAll { $0.time < horizon }
            if h.edges.count < 64 { h.edges.append((service, target, t)) }
            hosts[source] = h
            targets = h.edges.filter { $0.service == service }.map(\.target)
            guard targets.count >= rules.edgeTargetsWithoutBaseline else { return }
        }
        let technique: Technique
        switch service {
        case "rdp": technique = .remoteDesktopProtocol
        case "winrm": technique = .winRM
        default: technique = .ssh
        }
        let pk = PairKey(source: source, target: target)
        pairs.values[touchPair(pk, t)].ports.insert(port)
        firePair(pk, rule: "lateral_movement.new_\(service)_edge", at: t) {
            Alert(timestamp: t, category: .lateralMovement, ruleID: "lateral_movement.new_\(service)_edge",
                  ruleName: "First-seen \(service.uppercased()) connection between internal hosts", ruleDescription: Self.describe("lateral_movement.new_\(service)_edge"),
                  techniques: [technique], severity: .low, riskScore: 35,
                  message: targets.count > 1
                      ? "\(source) opened \(service.uppercased()) sessions to \(targets.count) internal hosts, not seen before (last \(target):\(port))"
                      : "\(source) opened a \(service.uppercased()) session to \(target):\(port), not seen before",
                  source: Endpoint(ip: source), destination: Endpoint(ip: target, port: port), ipProtocol: IPProtocol.tcp,
                  relatedIPs: [source] + targets,
                  details: [("service", .string(service)), ("targets", .array(targets.map { .ip($0) }))])
        }
    }

    // MARK: Facts from the analysers

    public func observe(_ fact: RemoteAccessFact, on ep: SessionEndpoints, at t: Timestamp) {
        counters.facts &+= 1
        if case .kerberosServer = fact {
            if rules.learnDomainControllers && learnedControllers.count < 4096 { learnedControllers.insert(ep.server) }
            return
        }
        guard considered(ep.client, ep.server) else { counters.factsIgnored &+= 1; return }
        let key = PairKey(source: ep.client, target: ep.server)
        // The pair's state is changed in place in the table (a copy out and back would copy every set
        // and list it holds); the rules that read the whole pair run once it holds the fact.
        let i = touchPair(key, t)
        pairs.values[i].ports.insert(ep.serverPort)
        switch fact {
        case .treeConnect(let path):
            let share = SMBAnalyzer.shareName(path)
            if SMBAnalyzer.isAdminShare(share) {
                pairs.values[i].adminShares.insert(share)
                if pairs.values[i].adminShareFirst == nil { pairs.values[i].adminShareFirst = t }
                scheduleShareAlert(key, &pairs.values[i])
            } else if share != "IPC$" {
                pairs.values[i].dataShares.insert(share)
            }
        case .open(let share, let name, let isPipe, let writeAccess):
            if isPipe {
                PairState.note(&pairs.values[i].pipes, name)
                if SMBAnalyzer.isRemoteExecutionPipe(name) {
                    execution(key, kind: .service, call: "pipe \(name)", at: t)
                    return
                }
            } else if SMBAnalyzer.isAdminShare(share) {
                PairState.note(&pairs.values[i].files, "\(share)\\\(name)")
                if writeAccess { adminWrite(&pairs.values[i], key, share: share, file: name, at: t) }
            }
        case .write(let share, let name):
            if SMBAnalyzer.isAdminShare(share) { adminWrite(&pairs.values[i], key, share: share, file: name, at: t) }
        case .authentication(let a):
            if !a.user.isEmpty { PairState.note(&pairs.values[i].users, a.domain.isEmpty ? a.user : "\(a.domain)\\\(a.user)", limit: 8) }
            if a.success == false { authFailure(a, ep, at: t) }
        case .rpcBind(let iface):
            if iface.name == "drsuapi" {
                replicationFromRogue(key, call: "drsuapi bind", at: t)
            } else if iface.name == "IWbemLevel1Login" || iface.name == "IWbemServices" {
                PairState.note(&pairs.values[i].calls, "\(iface.name!).bind")
                execution(key, kind: .wmi, call: "\(iface.name!) bind", at: t)
            }
        case .rpcCall(let iface, let opnum, _):
            guard let iface else { break }
            let op = iface.operationName(opnum)
            PairState.note(&pairs.values[i].calls, op, limit: 32)
            switch iface.effect(of: opnum) {
            case .serviceCreateOrStart?: execution(key, kind: .service, call: op, at: t)
            case .atJob?: execution(key, kind: .atJob, call: op, at: t)
            case .scheduledTask?: execution(key, kind: .task, call: op, at: t)
            case .wmiExec?: execution(key, kind: .wmi, call: op, at: t)
            case .replication?: dcsync(key, call: op, inferred: false, at: t)
            case .replicaTopology?: dcshadow(key, call: op, at: t)
            case .secureChannelSetup?: netlogonSetup(key, at: t)
            case .machinePasswordSet?: netlogonPasswordSet(key, call: op, at: t)
            case .logClear?: logClear(key, call: op, at: t)
            case .shareEnumeration?:
                if rules.shareEnumerationEnabled && pairs[key]?.shareEnumeration == nil {
                    pairs[key]?.shareEnumeration = t
                    pendingShareAlerts.append(key)
                }
            case nil: break
            }
        case .dcomActivation(let className):
            pairs.values[i].dcomActivation = t
            PairState.note(&pairs.values[i].dcomClasses, className ?? "unknown class")
            if className == "WbemLevel1Login" {
                execution(key, kind: .wmi, call: "ISystemActivator.RemoteCreateInstance(WbemLevel1Login)", at: t)
            } else {
                dcom(key, className: className, at: t)
            }
        case .wmiProcessCreate:
            PairState.note(&pairs.values[i].calls, "IWbemServices.ExecMethod(Win32_Process)")
            execution(key, kind: .wmi, call: "IWbemServices.ExecMethod(Win32_Process)", at: t)
        case .rpcCallInferred(let iface, let opnum):
            let op = iface.operationName(opnum)
            PairState.note(&pairs.values[i].calls, "inferred:" + op, limit: 32)
            if iface.effect(of: opnum) == .replication { dcsync(key, call: op, inferred: true, at: t) }
        case .exploit(let signature):
            PairState.note(&pairs.values[i].signatures, signature.name)
            exploit(key, signature, at: t)
        case .encryptedSMB, .kerberosServer:
            break
        }
    }

    func adminWrite(_ s: inout PairState, _ key: PairKey, share: String, file: String, at t: Timestamp) {
        s.adminShares.insert(share)
        if s.adminShareFirst == nil { s.adminShareFirst = t }
        if s.adminWrites.count < 16 && !s.adminWrites.contains(where: { $0.share == share && $0.file.lowercased() == file.lowercased() }) {
            s.adminWrites.append((t, share, file))
        }
        scheduleShareAlert(key, &s)
    }

    func scheduleShareAlert(_ key: PairKey, _ s: inout PairState) {
        guard !s.pendingShareAlert, !isBackupServer(key.source), !isAdminHost(key.source) else { return }
        s.pendingShareAlert = true
        pendingShareAlerts.append(key)
    }

    enum ExecutionKind {
        case service, atJob, task, wmi
        var technique: Technique {
            switch self {
            case .service: return .serviceExecution
            case .atJob: return .atJob
            case .task: return .scheduledTask
            case .wmi: return .wmi
            }
        }
        var rule: String {
            switch self {
            case .service: return "lateral_movement.remote_service"
            case .atJob: return "lateral_movement.remote_at_job"
            case .task: return "lateral_movement.remote_scheduled_task"
            case .wmi: return "lateral_movement.wmi_exec"
            }
        }
        var title: String {
            switch self {
            case .service: return "Remote service creation or start"
            case .atJob: return "Remote at job"
            case .task: return "Remote scheduled task"
            case .wmi: return "Remote execution through WMI"
            }
        }
    }

    /// Remote execution on `key.target`; combined with a recent admin-share write into one high alert.
    func execution(_ key: PairKey, kind: ExecutionKind, call: String, at t: Timestamp) {
        guard !isAdminHost(key.source), let s = pairs[key] else { return }
        let windowStart = t - .seconds(rules.toolTransferWindow)
        let writes = s.adminWrites.filter { $0.time >= windowStart }
        if !writes.isEmpty {
            firePair(key, rule: "lateral_movement.tool_transfer_execution", at: t) {
                var a = pairAlert(key, s, at: t, rule: "lateral_movement.tool_transfer_execution",
                                  name: "Admin-share write followed by remote execution",
                                  techniques: [.lateralToolTransfer,
                                               .adminShares, kind.technique],
                                  severity: .high, risk: 90,
                                  message: "\(key.source) wrote \(writes.map { "\($0.share)\\\($0.file)" }.joined(separator: ", ")) on \(key.target) and then ran \(call)")
                a.details.append(("written_files", .array(writes.map { .string("\($0.share)\\\($0.file)") })))
                a.details.append(("execution", .string(call)))
                return a
            }
            // The combined alert covers the share use.
            pairs[key]?.fired["lateral_movement.admin_share"] = t
            return
        }
        firePair(key, rule: kind.rule, at: t) {
            var a = pairAlert(key, s, at: t, rule: kind.rule, name: kind.title, techniques: [kind.technique],
                              severity: .high, risk: 80, message: "\(key.source) ran \(call) on \(key.target)")
            a.details.append(("execution", .string(call)))
            return a
        }
    }

    func dcom(_ key: PairKey, className: String?, at t: Timestamp) {
        guard !isAdminHost(key.source), let s = pairs[key] else { return }
        let cls = className ?? "an unidentified class"
        firePair(key, rule: "lateral_movement.dcom_exec", at: t) {
            pairAlert(key, s, at: t, rule: "lateral_movement.dcom_exec", name: "Remote DCOM object activation",
                      techniques: [.dcom],
                      severity: className == nil ? .medium : .high, risk: className == nil ? 55 : 75,
                      message: "\(key.source) activated \(cls) on \(key.target) over DCOM")
        }
    }

    /// DRSGetNCChanges. From a host that is not a known DC: DCSync. From a known DC to a host that is
    /// not one: a DC pulling changes from a rogue DC (DCShadow's push). With `inferred`, the interface
    /// was recognised by the call's stub because its bind was not captured.
    func dcsync(_ key: PairKey, call: String, inferred: Bool, at t: Timestamp) {
        guard let s = pairs[key] else { return }
        guard !isDomainController(key.source) else {
            replicationFromRogue(key, call: call, at: t)
            return
        }
        firePair(key, rule: "lateral_movement.dcsync", at: t) {
            var a = pairAlert(key, s, at: t, rule: "lateral_movement.dcsync", name: "Directory replication requested by a non-domain-controller",
                              techniques: [.dcSync], severity: inferred ? .high : .critical, risk: inferred ? 85 : 95,
                              message: inferred
                                ? "\(key.source), not a known domain controller, called \(call) on \(key.target) (interface recognised from the call's arguments; its bind was not captured)"
                                : "\(key.source), not a known domain controller, called \(call) on \(key.target)")
            if inferred {
                a.details.append(("interface_inferred", .bool(true)))
                a.details.append(("inference", .string("GetNCChanges request shape: context handle, version 5/7/8/10/11 repeated as union tag, DSA and invocation GUIDs, naming-context pointer")))
            }
            return a
        }
    }

    /// A known domain controller binding to or replicating from a host that is not a known DC: the
    /// rogue DC of DCShadow serving its changes. Only with `domain_controllers` configured: DCs learned
    /// from Kerberos replies are only those the capture saw answer, so another DC may be missing.
    func replicationFromRogue(_ key: PairKey, call: String, at t: Timestamp) {
        guard !rules.domainControllers.isEmpty, isDomainController(key.source), !isDomainController(key.target),
              let s = pairs[key] else { return }
        firePair(key, rule: "lateral_movement.dcshadow", at: t) {
            pairAlert(key, s, at: t, rule: "lateral_movement.dcshadow", name: "Domain controller replicating from a host that is not a known DC",
                      techniques: [.rogueDomainController], severity: .critical, risk: 95,
                      message: "domain controller \(key.source) called \(call) on \(key.target), which is not a known domain controller")
        }
    }

    /// DRSReplicaAdd/Del/Modify (replication topology changes) from a host that is not a known DC:
    /// DCShadow registering its rogue DC as a replication source.
    func dcshadow(_ key: PairKey, call: String, at t: Timestamp) {
        guard !isDomainController(key.source), let s = pairs[key] else { return }
        firePair(key, rule: "lateral_movement.dcshadow", at: t) {
            pairAlert(key, s, at: t, rule: "lateral_movement.dcshadow", name: "Replication topology changed by a non-domain-controller",
                      techniques: [.rogueDomainController], severity: .critical, risk: 95,
                      message: "\(key.source), not a known domain controller, called \(call) on \(key.target)")
        }
    }

    /// Netlogon secure-channel setup (ReqChallenge, Authenticate*): a burst from one source to one server
    /// is Zerologon's brute force of the all-zero credential (1 in 256 tries succeeds).
    func netlogonSetup(_ key: PairKey, at t: Timestamp) {
        guard var s = pairs[key] else { return }
        let horizon = t - .seconds(rules.netlogonWindow)
        s.netlogonCalls.removeAll { $0 < horizon }
        if s.netlogonCalls.count >= rules.netlogonBurstCalls { s.netlogonCalls.removeFirst() }
        s.netlogonCalls.append(t)
        let n = s.netlogonCalls.count
        pairs[key] = s
        guard n >= rules.netlogonBurstCalls else { return }
        zerologon(key, evidence: "\(n) Netlogon secure-channel setup calls within \(Int(rules.netlogonWindow)) s", at: t)
    }

    func zerologon(_ key: PairKey, evidence: String, at t: Timestamp) {
        pairs[key]?.zerologon = t
        guard let s = pairs[key] else { return }
        firePair(key, rule: "lateral_movement.zerologon", at: t) {
            var a = pairAlert(key, s, at: t, rule: "lateral_movement.zerologon", name: "Zerologon: Netlogon authentication bypass attempt",
                              techniques: [.exploitationOfRemoteServices, .exploitationForPrivilegeEscalation],
                              severity: .critical, risk: 95,
                              message: "\(key.source) attempted Zerologon (CVE-2020-1472) against \(key.target): \(evidence)")
            a.details.append(("evidence", .string(evidence)))
            return a
        }
    }

    /// NetrServerPasswordSet2: routine every 30 days; Zerologon's final step after a burst or zero credential.
    func netlogonPasswordSet(_ key: PairKey, call: String, at t: Timestamp) {
        guard let s = pairs[key], let z = s.zerologon, t - z <= .seconds(rules.toolTransferWindow) else { return }
        passwordReset(key, s, evidence: "\(call) after Zerologon evidence from the same source", at: t)
    }

    func passwordReset(_ key: PairKey, _ s: PairState, evidence: String, at t: Timestamp) {
        firePair(key, rule: "lateral_movement.zerologon_password_set", at: t) {
            var a = pairAlert(key, s, at: t, rule: "lateral_movement.zerologon_password_set",
                              name: "Zerologon: domain controller machine password reset",
                              techniques: [.exploitationOfRemoteServices, .exploitationForPrivilegeEscalation],
                              severity: .critical, risk: 100,
                              message: "\(key.source) reset the machine account password on \(key.target) over Netlogon: \(evidence)")
            a.details.append(("evidence", .string(evidence)))
            return a
        }
    }

    /// Exploitation signatures from the SMB and DCE-RPC analysers. Allowlists do not apply (no
    /// legitimate host produces them), except to the MS17-010 check, which vulnerability scanners run.
    func exploit(_ key: PairKey, _ sig: ExploitSignature, at t: Timestamp) {
        guard let s = pairs[key] else { return }
        let info: (rule: String, name: String, severity: Severity, risk: Double, message: String)
        switch sig {
        case .netlogonZeroCredential, .netlogonZeroChallenge:
            zerologon(key, evidence: sig == .netlogonZeroCredential ? "NetrServerAuthenticate with an all-zero client credential"
                                                                    : "NetrServerReqChallenge with an all-zero client challenge", at: t)
            return
        case .netlogonZeroPasswordSet:
            passwordReset(key, s, evidence: "NetrServerPasswordSet2 with an all-zero authenticator or new password", at: t)
            return
        case .smbTransactionMismatch, .smbOversizedNTTransact:
            info = ("lateral_movement.smb_exploit", "SMBv1 transaction exploitation (EternalBlue-style)", .critical, 95,
                    sig == .smbTransactionMismatch
                        ? "\(key.source) continued an NT_TRANSACT with TRANSACTION2_SECONDARY on \(key.target) (EternalBlue's type confusion)"
                        : "\(key.source) sent an NT_TRANSACT with an undefined function and over 64 KiB of data to \(key.target) (EternalBlue's oversized FEA list)")
        case .smbCompressionOverflow:
            info = ("lateral_movement.smb_exploit", "SMBv3 compression header overflow (SMBGhost)", .critical, 95,
                    "\(key.source) and \(key.target) exchanged an SMB 3.1.1 compression header whose sizes overflow (SMBGhost, CVE-2020-0796)")
        case .doublePulsarRequest:
            info = ("lateral_movement.doublepulsar", "DoublePulsar backdoor command (SMB TRANS2 SESSION_SETUP)", .high, 85,
                    "\(key.source) sent a TRANSACTION2 SESSION_SETUP to \(key.target), DoublePulsar's ping or payload command")
        case .doublePulsarReply:
            info = ("lateral_movement.doublepulsar_implant", "DoublePulsar implant answering", .critical, 100,
                    "\(key.target) answered \(key.source) with a TRANSACTION2 multiplex id no request carried: an installed DoublePulsar implant")
        case .ms17010Probe:
            guard !isAdminHost(key.source) else { return }
            info = ("lateral_movement.ms17_010_probe", "MS17-010 vulnerability check", .medium, 50,
                    "\(key.source) checked \(key.target) for MS17-010 (PeekNamedPipe on FID 0), as scanners and EternalBlue worms do")
        case .ms17010Vulnerable:
            info = ("lateral_movement.ms17_010_vulnerable", "Host answered the MS17-010 check as unpatched", .high, 75,
                    "\(key.target) answered \(key.source)'s MS17-010 check with STATUS_INSUFF_SERVER_RESOURCES: it is unpatched")
        }
        firePair(key, rule: info.rule, at: t) {
            pairAlert(key, s, at: t, rule: info.rule, name: info.name, techniques: [.exploitationOfRemoteServices],
                      severity: info.severity, risk: info.risk, message: info.message)
        }
    }

    /// A short session to an interactive-login service (SSH, RDP) that ended: many from one source are
    /// password guessing, since the authentication itself is encrypted.
    func loginSession(_ flow: FlowRecord, service: String) {
        let source = flow.originator, server = flow.responder, t = flow.lastSeen
        let payload = flow.originatorPayloadBytes &+ flow.responderPayloadBytes
        guard !isAdminHost(source), flow.originatorPayloadBytes > 0, flow.responderPayloadBytes > 0,
              flow.lastSeen - flow.firstSeen <= .seconds(rules.loginMaxSessionSeconds),
              payload <= UInt64(rules.loginMaxSessionBytes) else { return }
        // Changed in place in the table; per session only counts change (`LoginWindow`).
        let hi = touchHost(source, t)
        hosts.values[hi].logins.expire(before: t - .seconds(rules.loginWindow))
        if hosts.values[hi].logins.count >= Self.loginCap { hosts.values[hi].logins.removeOldestArrival() }
        hosts.values[hi].logins.append(.init(server: server, service: service, time: t))
        let same = hosts.values[hi].logins.sessions(service)
        let toServer = hosts.values[hi].logins.sessions(service, to: server)
        let technique: Technique = service == "rdp" ? .remoteDesktopProtocol : .ssh
        if toServer >= rules.loginSessions {
            let rule = "lateral_movement.\(service)_brute_force"
            fireHost(source, rule: "\(rule):\(server)", at: t) {
                Alert(timestamp: t, category: .lateralMovement, ruleID: rule,
                      ruleName: "\(service.uppercased()) brute force: many short sessions to one server", ruleDescription: Self.describe(rule),
                      techniques: [.passwordGuessing, technique], severity: .high, riskScore: 70,
                      message: "\(source) opened \(toServer) short \(service.uppercased()) sessions to \(server) within \(Int(rules.loginWindow)) s",
                      source: Endpoint(ip: source), destination: Endpoint(ip: server, port: flow.responderPort), ipProtocol: IPProtocol.tcp,
                      relatedIPs: [source, server],
                      details: [("service", .string(service)), ("sessions", .int(Int64(toServer))), ("targets", .array([.ip(server)])),
                                ("window_seconds", .double(rules.loginWindow))])
            }
        } else if same >= rules.loginSessions && hosts.values[hi].logins.servers(service) >= rules.loginDistinctServers {
            let rule = "lateral_movement.\(service)_password_spray"
            fireHost(source, rule: rule, at: t) {
                let servers = hosts.values[hi].logins.sortedServers(service)
                return Alert(timestamp: t, category: .lateralMovement, ruleID: rule,
                      ruleName: "\(service.uppercased()) password spraying: short sessions to many servers", ruleDescription: Self.describe(rule),
                      techniques: [.passwordSpraying, technique], severity: .high, riskScore: 70,
                      message: "\(source) opened \(same) short \(service.uppercased()) sessions to \(servers.count) servers within \(Int(rules.loginWindow)) s",
                      source: Endpoint(ip: source), relatedIPs: [source] + servers.prefix(32),
                      details: [("service", .string(service)), ("sessions", .int(Int64(same))),
                                ("targets", .array(servers.prefix(64).map { .ip($0) })), ("window_seconds", .double(rules.loginWindow))])
            }
        }
    }

    func logClear(_ key: PairKey, call: String, at t: Timestamp) {
        guard let s = pairs[key] else { return }
        firePair(key, rule: "lateral_movement.event_log_cleared", at: t) {
            pairAlert(key, s, at: t, rule: "lateral_movement.event_log_cleared", name: "Remote event log clearing",
                      techniques: [.clearWindowsEventLogs], severity: .high, risk: 80,
                      message: "\(key.source) cleared an event log on \(key.target) (\(call))")
        }
    }

    /// Most authentication failures held per source (later ones are not counted until some expire), and
    /// most targets of them named (kept for the source's life).
    static let failureCap = 1024
    static let failureTargetCap = 64

    /// Most short login sessions held per source (the earliest to arrive is pushed out).
    static let loginCap = 1024

    /// Per failure: expiry and counts only (`AuthFailureWindow`); the accounts, methods and targets are
    /// listed when an alert is made.
    func authFailure(_ a: AuthenticationAttempt, _ ep: SessionEndpoints, at t: Timestamp) {
        let source = ep.client
        let user = a.user.lowercased()
        // Changed in place in the table: a copy out and back would copy the whole window per failure.
        let hi = touchHost(source, t)
        hosts.values[hi].failures.expire(before: t - .seconds(rules.authWindow))
        if hosts.values[hi].failures.count < Self.failureCap {
            hosts.values[hi].failures.append(.init(user: user, time: t, method: a.method))
        }
        if hosts.values[hi].targetsOfFailures.count < Self.failureTargetCap { hosts.values[hi].targetsOfFailures.insert(ep.server) }
        let distinctUsers = hosts.values[hi].failures.distinctUsers
        let failuresOfUser = hosts.values[hi].failures.failures(of: user)
        // Sorted: replays must give identical events.
        func targets() -> [IPAddress] { hosts.values[hi].targetsOfFailures.sorted() }
        if distinctUsers >= rules.sprayDistinctUsers {
            fireHost(source, rule: "lateral_movement.password_spray", at: t) {
                let window = hosts.values[hi].failures
                let users = window.sortedUsers, methods = window.sortedMethods, targets = targets()
                return Alert(timestamp: t, category: .lateralMovement, ruleID: "lateral_movement.password_spray",
                      ruleName: "Password spraying: many accounts failing from one source", ruleDescription: Self.describe("lateral_movement.password_spray"),
                      techniques: [.passwordSpraying],
                      severity: .high, riskScore: 75,
                      message: "\(users.count) accounts failed to authenticate (\(methods.joined(separator: ", "))) from \(source) within \(Int(rules.authWindow)) s",
                      source: Endpoint(ip: source), destination: targets.count == 1 ? Endpoint(ip: targets[0], port: ep.serverPort) : nil,
                      relatedIPs: [source] + targets, relatedUsers: Array(users.prefix(64)),
                      details: [("users", .array(users.prefix(64).map { .string($0) })), ("failures", .int(Int64(window.count))),
                                ("methods", .array(methods.map { .string($0) })), ("targets", .array(targets.map { .ip($0) }))])
            }
        }
        if let n = failuresOfUser, n >= rules.bruteForceFailures {
            fireHost(source, rule: "lateral_movement.brute_force:\(user)", at: t) {
                let targets = targets()
                return Alert(timestamp: t, category: .lateralMovement, ruleID: "lateral_movement.brute_force",
                      ruleName: "Brute force: repeated failures for one account", ruleDescription: Self.describe("lateral_movement.brute_force"),
                      techniques: [.passwordGuessing],
                      severity: .medium, riskScore: 65,
                      message: "\(n) failed authentications for \(a.user) from \(source) within \(Int(rules.authWindow)) s",
                      source: Endpoint(ip: source), relatedIPs: [source] + targets, relatedUsers: [a.user],
                      details: [("users", .array([.string(a.user)])), ("failures", .int(Int64(n))), ("targets", .array(targets.map { .ip($0) }))])
            }
        }
    }

    // MARK: Alerts

    /// `rule.description` of each rule id this detector raises.
    static func describe(_ rule: String) -> String {
        switch rule {
        case "lateral_movement.fan_out": return "One internal host reaches many internal hosts on administrative ports (SMB, RPC, RDP, WinRM, SSH) within a short window."
        case "lateral_movement.new_rdp_edge", "lateral_movement.new_winrm_edge", "lateral_movement.new_ssh_edge":
            return "An interactive remote-administration session between two internal hosts that never talked over that service during the learning period (with no learning period, SSH and RDP only when one source opens new sessions to several hosts)."
        case "lateral_movement.admin_share": return "An internal host opens (or writes to) an administrative share (ADMIN$, C$, IPC$ with file access) on another host."
        case "lateral_movement.share_enumeration": return "An internal host lists another host's shares over SRVSVC without using any of them."
        case "lateral_movement.tool_transfer_execution": return "A write to an administrative share followed by remote execution (service, task, at job, WMI) on the same host: the PsExec pattern."
        case "lateral_movement.remote_service": return "Remote service creation or start over the SVCCTL RPC interface."
        case "lateral_movement.remote_at_job": return "A job scheduled remotely over the ATSVC RPC interface."
        case "lateral_movement.remote_scheduled_task": return "A task registered remotely over the Task Scheduler (ITaskSchedulerService) RPC interface."
        case "lateral_movement.wmi_exec": return "Remote process creation through WMI (IWbemServices ExecMethod over DCOM)."
        case "lateral_movement.dcom_exec": return "Remote activation of a DCOM object that can run commands (MMC20.Application, ShellWindows, …)."
        case "lateral_movement.dcsync": return "Directory replication (DRSUAPI GetNCChanges) requested by a host that is not a known domain controller (also recognised from the request's arguments when the bind was not captured)."
        case "lateral_movement.dcshadow": return "A rogue domain controller: replication topology changed (DRSReplicaAdd/Del/Modify) by a host that is not a known DC, or a domain controller replicating from a host outside the configured domain controllers."
        case "lateral_movement.zerologon": return "Zerologon (CVE-2020-1472): Netlogon secure-channel setup with an all-zero credential or challenge, or a burst of setup calls from one source."
        case "lateral_movement.zerologon_password_set": return "A domain controller's machine password reset over Netlogon with an all-zero authenticator or password, or after Zerologon evidence."
        case "lateral_movement.smb_exploit": return "SMB exploitation: EternalBlue's (MS17-010) NT_TRANSACT continued by TRANSACTION2_SECONDARY or oversized NT_TRANSACT with an undefined function, or SMBGhost's (CVE-2020-0796) overflowing compression header."
        case "lateral_movement.doublepulsar": return "A TRANSACTION2 SESSION_SETUP request, the unused subcommand the DoublePulsar backdoor is driven with."
        case "lateral_movement.doublepulsar_implant": return "A TRANSACTION2 response whose multiplex id the server changed (0x51-0x53): an installed DoublePulsar implant answering."
        case "lateral_movement.ms17_010_probe": return "The MS17-010 vulnerability check (TRANSACTION PeekNamedPipe on FID 0) that scanners and EternalBlue worms run."
        case "lateral_movement.ms17_010_vulnerable": return "A host answered the MS17-010 check with STATUS_INSUFF_SERVER_RESOURCES: unpatched."
        case "lateral_movement.fan_out_rate": return "One internal host reaches new internal hosts on administrative ports at a worm-like rate (per minute, or sustained over a longer window)."
        case "lateral_movement.ssh_brute_force", "lateral_movement.rdp_brute_force": return "Many short sessions (failed logins) from one source to one SSH or RDP server within the window."
        case "lateral_movement.ssh_password_spray", "lateral_movement.rdp_password_spray": return "Many short sessions (failed logins) from one source spread over several SSH or RDP servers within the window."
        case "lateral_movement.event_log_cleared": return "An event log cleared remotely over the EventLog RPC interface."
        case "lateral_movement.password_spray": return "Many different accounts fail to authenticate (NTLM, Kerberos) from one source within the window."
        case "lateral_movement.brute_force": return "One account fails to authenticate repeatedly from one source within the window."
        default: return ""
        }
    }

    func pairAlert(_ key: PairKey, _ s: PairState, at t: Timestamp, rule: String, name: String, techniques: [Technique],
                   severity: Severity, risk: Double, message: String) -> Alert {
        var details: [(String, JSONValue)] = [("targets", .array([.ip(key.target)]))]
        let shares = (s.adminShares.sorted() + s.dataShares.sorted())
        if !shares.isEmpty { details.append(("shares", .array(shares.map { .string($0) }))) }
        if !s.pipes.isEmpty { details.append(("pipes", .array(s.pipes.map { .string($0) }))) }
        if !s.files.isEmpty { details.append(("files", .array(s.files.map { .string($0) }))) }
        if !s.calls.isEmpty { details.append(("rpc_calls", .array(s.calls.map { .string($0) }))) }
        if !s.dcomClasses.isEmpty { details.append(("dcom_classes", .array(s.dcomClasses.map { .string($0) }))) }
        if !s.users.isEmpty { details.append(("users", .array(s.users.map { .string($0) }))) }
        if !s.signatures.isEmpty { details.append(("exploit_signatures", .array(s.signatures.map { .string($0) }))) }
        let port = s.ports.contains(445) ? 445 : s.ports.min()
        return Alert(timestamp: t, category: .lateralMovement, ruleID: rule, ruleName: name, ruleDescription: Self.describe(rule), techniques: techniques,
                     severity: severity, riskScore: risk, message: message,
                     source: Endpoint(ip: key.source), destination: Endpoint(ip: key.target, port: port),
                     ipProtocol: IPProtocol.tcp, relatedIPs: [key.source, key.target],
                     relatedUsers: s.users.map { $0.split(separator: "\\").last.map(String.init) ?? $0 }, details: details)
    }

    func suppressed(_ last: Timestamp?, _ t: Timestamp) -> Bool {
        guard let last else { return false }
        return t - last < .seconds(rules.suppression)
    }

    // Both read and change the entry in place in its table: `table[key]` would copy the whole state out.
    func firePair(_ key: PairKey, rule: String, at t: Timestamp, _ make: () -> Alert) {
        guard let i = pairs.index(forKey: key) else { return }
        if suppressed(pairs.values[i].fired[rule], t) { counters.suppressed &+= 1; return }
        pairs.values[i].fired[rule] = t
        counters.alerts &+= 1
        emitter.emit(make())
    }

    func fireHost(_ source: IPAddress, rule: String, at t: Timestamp, _ make: () -> Alert) {
        guard let i = hosts.index(forKey: source) else { return }
        if suppressed(hosts.values[i].fired[rule], t) { counters.suppressed &+= 1; return }
        hosts.values[i].fired[rule] = t
        // Per-account brute-force keys could grow with the accounts tried: keep the most recent 256.
        if hosts.values[i].fired.count > 256 {
            _ = LateralMovementDetector.evictOldest(&hosts.values[i].fired, keep: 192) { $0 }
        }
        counters.alerts &+= 1
        emitter.emit(make())
    }

    /// Delayed alerts: admin-share use not folded into a combined alert, share enumeration without share use.
    func flushPending(_ now: Timestamp, force: Bool) {
        guard !pendingShareAlerts.isEmpty else { return }
        var keep: [PairKey] = []
        for key in pendingShareAlerts {
            guard let s = pairs[key] else { continue }
            if s.pendingShareAlert, let first = s.adminShareFirst {
                if !force && now - first < .seconds(rules.adminShareAlertDelay) { keep.append(key); continue }
                pairs[key]?.pendingShareAlert = false
                let wrote = !s.adminWrites.isEmpty
                firePair(key, rule: "lateral_movement.admin_share", at: first) {
                    var a = pairAlert(key, s, at: first, rule: "lateral_movement.admin_share",
                                      name: wrote ? "Write to an administrative share" : "Administrative share access",
                                      techniques: [.adminShares],
                                      severity: wrote ? .medium : .low, risk: wrote ? 60 : 40,
                                      message: "\(key.source) \(wrote ? "wrote to" : "accessed") \(s.adminShares.sorted().joined(separator: ", ")) on \(key.target)")
                    if wrote { a.details.append(("written_files", .array(s.adminWrites.map { .string("\($0.share)\\\($0.file)") }))) }
                    return a
                }
            }
            if let e = s.shareEnumeration, e != Self.enumerationJudged {
                if !force && now - e < .seconds(rules.adminShareAlertDelay) { keep.append(key); continue }
                pairs[key]?.shareEnumeration = Self.enumerationJudged
                // Browsing a server's shares and then opening one is ordinary use; enumeration alone is discovery.
                guard s.dataShares.isEmpty, s.adminShares.isEmpty, !isAdminHost(key.source) else { continue }
                firePair(key, rule: "lateral_movement.share_enumeration", at: e) {
                    pairAlert(key, s, at: e, rule: "lateral_movement.share_enumeration", name: "Remote share enumeration",
                              techniques: [.networkShareDiscovery], severity: .low, risk: 30,
                              message: "\(key.source) enumerated the shares of \(key.target) without using any of them")
                }
            }
        }
        pendingShareAlerts = keep
    }

    /// `PairState.shareEnumeration` once judged: later than every packet time, so never a real one.
    static let enumerationJudged = Timestamp(nanoseconds: .max)

    public func tick(_ now: Timestamp) {
        self.now = now
        flushPending(now, force: false)
    }

    public func finish(_ now: Timestamp) {
        flushPending(now, force: true)
    }

    // MARK: Bounded tables

    /// The pair's entry, seen at `t` (made when new, after evicting the oldest when the table is full);
    /// valid until the next insertion or removal.
    func touchPair(_ key: PairKey, _ t: Timestamp) -> [PairKey: PairState].Index {
        if let i = pairs.index(forKey: key) { pairs.values[i].lastSeen = t; return i }
        if pairs.count >= rules.maxPairs {
            counters.pairsEvicted &+= UInt64(LateralMovementDetector.evictOldest(&pairs, keep: rules.maxPairs * 7 / 8) { $0.lastSeen })
            let live = Set(pairs.keys)
            pendingShareAlerts.removeAll { !live.contains($0) }
        }
        pairs[key] = PairState(lastSeen: t)
        return pairs.index(forKey: key)!
    }

    /// The source's entry, touched at `t` (made, evicting first when the table is full, as `host` then
    /// storing it does): its index, so it is changed in place.
    func touchHost(_ a: IPAddress, _ t: Timestamp) -> [IPAddress: HostState].Index {
        if let i = hosts.index(forKey: a) { hosts.values[i].lastSeen = t; return i }
        hosts[a] = host(a, t)
        return hosts.index(forKey: a)!
    }

    func host(_ a: IPAddress, _ t: Timestamp) -> HostState {
        if var h = hosts[a] { h.lastSeen = t; return h }
        if hosts.count >= rules.maxHosts {
            counters.hostsEvicted &+= UInt64(LateralMovementDetector.evictOldest(&hosts, keep: rules.maxHosts * 7 / 8) { $0.lastSeen })
        }
        return HostState(lastSeen: t)
    }

    /// Drops the least recently seen entries until `keep` remain (a batch, so the sort is amortised).
    static func evictOldest<K: Hashable, V>(_ d: inout [K: V], keep: Int, lastSeen: (V) -> Timestamp) -> Int {
        let excess = d.count - keep
        guard excess > 0 else { return 0 }
        let victims = d.sorted { lastSeen($0.value) < lastSeen($1.value) }.prefix(excess).map(\.key)
        for k in victims { d[k] = nil }
        return victims.count
    }
}
