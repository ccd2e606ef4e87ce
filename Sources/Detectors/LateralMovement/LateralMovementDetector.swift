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
        /// Rule id → when it last fired for this pair.
        var fired: [String: Timestamp] = [:]
        var pendingShareAlert = false

        mutating func note(_ list: WritableKeyPath<PairState, [String]>, _ s: String, limit: Int = 16) {
            if s.isEmpty || self[keyPath: list].contains(s) || self[keyPath: list].count >= limit { return }
            self[keyPath: list].append(s)
        }
    }

    struct HostState {
        var lastSeen: Timestamp
        /// Recent admin-port connections: target and time (window-bounded, capped).
        var reached: [(target: IPAddress, time: Timestamp)] = []
        var failures: [(user: String, time: Timestamp, method: AuthenticationAttempt.Method)] = []
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
        reached(source: source, target: destination, at: t)
    }

    /// A SYN-ACK from `server:port` to `client`.
    public func tcpAccepted(server: IPAddress, client: IPAddress, port: UInt16, at t: Timestamp) {
        // The server accepted: an edge to an interactive remote-access service.
        guard let service = rules.edgeServices[port], considered(client, server) else { return }
        edge(source: client, target: server, port: port, service: service, at: t)
    }

    public func flowEnded(_ flow: FlowRecord, reason: FlowEndReason) {
        // Midstream sessions (handshake before the capture) still make an edge once they carried data both ways.
        guard flow.key.ipProtocol == IPProtocol.tcp, flow.isEstablished,
              let service = rules.edgeServices[flow.responderPort], considered(flow.originator, flow.responder) else { return }
        edge(source: flow.originator, target: flow.responder, port: flow.responderPort, service: service, at: flow.firstSeen)
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

    func reached(source: IPAddress, target: IPAddress, at t: Timestamp) {
        guard !isAdminHost(source), !isDomainController(source), !isBackupServer(source) else { return }
        var h = host(source, t)
        let horizon = t - .seconds(rules.fanOutWindow)
        h.reached.removeAll { $0.time < horizon }
        if let i = h.reached.firstIndex(where: { $0.target == target }) {
            h.reached[i].time = t
        } else if h.reached.count < max(64, rules.fanOutDistinctHosts * 2) {
            h.reached.append((target, t))
        }
        let distinct = h.reached.count
        hosts[source] = h
        if distinct >= rules.fanOutDistinctHosts {
            let targets = h.reached.map(\.target)
            fireHost(source, rule: "lateral_movement.fan_out", at: t) {
                Alert(timestamp: t, category: .lateralMovement, ruleID: "lateral_movement.fan_out",
                      ruleName: "Fan-out to many internal hosts on administrative ports", ruleDescription: Self.describe("lateral_movement.fan_out"),
                      techniques: [.remoteServices], tactics: [.discovery],
                      severity: .medium, riskScore: 60,
                      message: "\(source) connected to \(distinct) internal hosts on administrative ports within \(Int(rules.fanOutWindow)) s",
                      source: Endpoint(ip: source), relatedIPs: [source] + targets.prefix(32),
                      details: [("targets", .array(targets.prefix(64).map { .ip($0) })), ("distinct_targets", .int(Int64(distinct))),
                                ("window_seconds", .double(rules.fanOutWindow))])
            }
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
        let technique: Technique
        switch service {
        case "rdp": technique = .remoteDesktopProtocol
        case "winrm": technique = .winRM
        default: technique = .ssh
        }
        let pk = PairKey(source: source, target: target)
        pairs[pk] = pair(pk, t)
        pairs[pk]?.ports.insert(port)
        firePair(pk, rule: "lateral_movement.new_\(service)_edge", at: t) {
            Alert(timestamp: t, category: .lateralMovement, ruleID: "lateral_movement.new_\(service)_edge",
                  ruleName: "First-seen \(service.uppercased()) connection between internal hosts", ruleDescription: Self.describe("lateral_movement.new_\(service)_edge"),
                  techniques: [technique], severity: .low, riskScore: 35,
                  message: "\(source) opened a \(service.uppercased()) session to \(target):\(port), not seen before",
                  source: Endpoint(ip: source), destination: Endpoint(ip: target, port: port), ipProtocol: IPProtocol.tcp,
                  details: [("service", .string(service)), ("targets", .array([.ip(target)]))])
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
        var s = pair(key, t)
        s.ports.insert(ep.serverPort)
        switch fact {
        case .treeConnect(let path):
            let share = SMBAnalyzer.shareName(path)
            if SMBAnalyzer.isAdminShare(share) {
                s.adminShares.insert(share)
                if s.adminShareFirst == nil { s.adminShareFirst = t }
                scheduleShareAlert(key, &s)
            } else if share != "IPC$" {
                s.dataShares.insert(share)
            }
        case .open(let share, let name, let isPipe, let writeAccess):
            if isPipe {
                s.note(\.pipes, name)
                if SMBAnalyzer.isRemoteExecutionPipe(name) {
                    pairs[key] = s
                    execution(key, kind: .service, call: "pipe \(name)", at: t)
                    return
                }
            } else if SMBAnalyzer.isAdminShare(share) {
                s.note(\.files, "\(share)\\\(name)")
                if writeAccess { adminWrite(&s, key, share: share, file: name, at: t) }
            }
        case .write(let share, let name):
            if SMBAnalyzer.isAdminShare(share) { adminWrite(&s, key, share: share, file: name, at: t) }
        case .authentication(let a):
            if !a.user.isEmpty { s.note(\.users, a.domain.isEmpty ? a.user : "\(a.domain)\\\(a.user)", limit: 8) }
            pairs[key] = s
            if a.success == false { authFailure(a, ep, at: t) }
            return
        case .rpcBind(let iface):
            if iface.name == "IWbemLevel1Login" || iface.name == "IWbemServices" {
                s.note(\.calls, "\(iface.name!).bind")
                pairs[key] = s
                execution(key, kind: .wmi, call: "\(iface.name!) bind", at: t)
                return
            }
        case .rpcCall(let iface, let opnum, _):
            guard let iface else { break }
            let op = iface.operationName(opnum)
            s.note(\.calls, op, limit: 32)
            pairs[key] = s
            switch iface.effect(of: opnum) {
            case .serviceCreateOrStart?: execution(key, kind: .service, call: op, at: t)
            case .atJob?: execution(key, kind: .atJob, call: op, at: t)
            case .scheduledTask?: execution(key, kind: .task, call: op, at: t)
            case .wmiExec?: execution(key, kind: .wmi, call: op, at: t)
            case .replication?: dcsync(key, call: op, at: t)
            case .logClear?: logClear(key, call: op, at: t)
            case .shareEnumeration?:
                if rules.shareEnumerationEnabled && pairs[key]?.shareEnumeration == nil {
                    pairs[key]?.shareEnumeration = t
                    pendingShareAlerts.append(key)
                }
            case nil: break
            }
            return
        case .dcomActivation(let className):
            s.dcomActivation = t
            s.note(\.dcomClasses, className ?? "unknown class")
            pairs[key] = s
            if className == "WbemLevel1Login" {
                execution(key, kind: .wmi, call: "ISystemActivator.RemoteCreateInstance(WbemLevel1Login)", at: t)
            } else {
                dcom(key, className: className, at: t)
            }
            return
        case .wmiProcessCreate:
            s.note(\.calls, "IWbemServices.ExecMethod(Win32_Process)")
            pairs[key] = s
            execution(key, kind: .wmi, call: "IWbemServices.ExecMethod(Win32_Process)", at: t)
            return
        case .encryptedSMB, .kerberosServer:
            break
        }
        pairs[key] = s
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

    func dcsync(_ key: PairKey, call: String, at t: Timestamp) {
        guard !isDomainController(key.source), let s = pairs[key] else { return }
        firePair(key, rule: "lateral_movement.dcsync", at: t) {
            pairAlert(key, s, at: t, rule: "lateral_movement.dcsync", name: "Directory replication requested by a non-domain-controller",
                      techniques: [.dcSync], severity: .critical, risk: 95,
                      message: "\(key.source), not a known domain controller, called \(call) on \(key.target)")
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

    func authFailure(_ a: AuthenticationAttempt, _ ep: SessionEndpoints, at t: Timestamp) {
        let source = ep.client
        var h = host(source, t)
        let horizon = t - .seconds(rules.authWindow)
        h.failures.removeAll { $0.time < horizon }
        if h.failures.count < 1024 { h.failures.append((a.user.lowercased(), t, a.method)) }
        if h.targetsOfFailures.count < 64 { h.targetsOfFailures.insert(ep.server) }
        hosts[source] = h
        var perUser: [String: Int] = [:]
        for f in h.failures { perUser[f.user, default: 0] += 1 }
        let methods = Set(h.failures.map(\.method.rawValue)).sorted()
        let targets = h.targetsOfFailures.sorted()  // sorted: replays must give identical events
        if perUser.count >= rules.sprayDistinctUsers {
            let users = perUser.keys.sorted()
            fireHost(source, rule: "lateral_movement.password_spray", at: t) {
                Alert(timestamp: t, category: .lateralMovement, ruleID: "lateral_movement.password_spray",
                      ruleName: "Password spraying: many accounts failing from one source", ruleDescription: Self.describe("lateral_movement.password_spray"),
                      techniques: [.passwordSpraying],
                      severity: .high, riskScore: 75,
                      message: "\(users.count) accounts failed to authenticate (\(methods.joined(separator: ", "))) from \(source) within \(Int(rules.authWindow)) s",
                      source: Endpoint(ip: source), destination: targets.count == 1 ? Endpoint(ip: targets[0], port: ep.serverPort) : nil,
                      relatedIPs: [source] + targets, relatedUsers: Array(users.prefix(64)),
                      details: [("users", .array(users.prefix(64).map { .string($0) })), ("failures", .int(Int64(h.failures.count))),
                                ("methods", .array(methods.map { .string($0) })), ("targets", .array(targets.map { .ip($0) }))])
            }
        }
        let user = a.user.lowercased()
        if let n = perUser[user], n >= rules.bruteForceFailures {
            fireHost(source, rule: "lateral_movement.brute_force:\(user)", at: t) {
                Alert(timestamp: t, category: .lateralMovement, ruleID: "lateral_movement.brute_force",
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
            return "An interactive remote-administration session between two internal hosts that never talked over that service during the learning period."
        case "lateral_movement.admin_share": return "An internal host opens (or writes to) an administrative share (ADMIN$, C$, IPC$ with file access) on another host."
        case "lateral_movement.share_enumeration": return "An internal host lists another host's shares over SRVSVC without using any of them."
        case "lateral_movement.tool_transfer_execution": return "A write to an administrative share followed by remote execution (service, task, at job, WMI) on the same host: the PsExec pattern."
        case "lateral_movement.remote_service": return "Remote service creation or start over the SVCCTL RPC interface."
        case "lateral_movement.remote_at_job": return "A job scheduled remotely over the ATSVC RPC interface."
        case "lateral_movement.remote_scheduled_task": return "A task registered remotely over the Task Scheduler (ITaskSchedulerService) RPC interface."
        case "lateral_movement.wmi_exec": return "Remote process creation through WMI (IWbemServices ExecMethod over DCOM)."
        case "lateral_movement.dcom_exec": return "Remote activation of a DCOM object that can run commands (MMC20.Application, ShellWindows, …)."
        case "lateral_movement.dcsync": return "Directory replication (DRSUAPI GetNCChanges) requested by a host that is not a known domain controller."
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

    func firePair(_ key: PairKey, rule: String, at t: Timestamp, _ make: () -> Alert) {
        guard pairs[key] != nil else { return }
        if suppressed(pairs[key]?.fired[rule], t) { counters.suppressed &+= 1; return }
        pairs[key]?.fired[rule] = t
        counters.alerts &+= 1
        emitter.emit(make())
    }

    func fireHost(_ source: IPAddress, rule: String, at t: Timestamp, _ make: () -> Alert) {
        guard hosts[source] != nil else { return }
        if suppressed(hosts[source]?.fired[rule], t) { counters.suppressed &+= 1; return }
        hosts[source]?.fired[rule] = t
        // Per-account brute-force keys could grow with the accounts tried: keep the most recent 256.
        if let n = hosts[source]?.fired.count, n > 256, var f = hosts[source]?.fired {
            _ = LateralMovementDetector.evictOldest(&f, keep: 192) { $0 }
            hosts[source]?.fired = f
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

    func pair(_ key: PairKey, _ t: Timestamp) -> PairState {
        if var s = pairs[key] { s.lastSeen = t; return s }
        if pairs.count >= rules.maxPairs {
            counters.pairsEvicted &+= UInt64(LateralMovementDetector.evictOldest(&pairs, keep: rules.maxPairs * 7 / 8) { $0.lastSeen })
            let live = Set(pairs.keys)
            pendingShareAlerts.removeAll { !live.contains($0) }
        }
        return PairState(lastSeen: t)
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
