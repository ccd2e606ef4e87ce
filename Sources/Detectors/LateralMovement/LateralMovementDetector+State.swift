import Analyzers
import PacketCore

/// The detector's state for a `sensor aggregate` checkpoint: per pair, per source host and per edge
/// tables, learned domain controllers, delayed alerts and the clock. Rules are not part of it;
/// counters are per process.
extension LateralMovementDetector {
    /// Bound of the short lists a pair or host keeps (the detector caps them lower; a longer list is foreign).
    static let stateListCap = 4096

    public func saveState(_ w: inout StateWriter) {
        w.dictionary(pairs) { w, k, s in
            Self.write(&w, k)
            Self.write(&w, s)
        }
        w.dictionary(hosts) { w, a, h in
            w.ip(a)
            Self.write(&w, h)
        }
        w.dictionary(edges) { w, k, t in
            w.ip(k.source)
            w.ip(k.target)
            w.string(k.service)
            w.time(t)
        }
        w.array(learnedControllers) { $0.ip($1) }
        w.array(pendingShareAlerts) { Self.write(&$0, $1) }
        w.optional(firstPacket) { $0.time($1) }
        w.time(now)
    }

    /// Replaces the state with a saved one (on a fresh detector); throws, leaving the detector as it
    /// was, when the bytes are not a state this build and these rules could have written.
    public func restoreState(_ r: inout StateReader) throws(StateDecodeError) {
        let p: [PairKey: PairState] = try r.dictionary(max: rules.maxPairs, minBytes: 50) { r throws(StateDecodeError) in
            (try Self.readPairKey(&r), try Self.readPairState(&r))
        }
        let h: [IPAddress: HostState] = try r.dictionary(max: rules.maxHosts, minBytes: 25) { r throws(StateDecodeError) in
            (try r.ip(), try Self.readHostState(&r))
        }
        let e: [EdgeKey: Timestamp] = try r.dictionary(max: rules.maxEdges, minBytes: 46) { r throws(StateDecodeError) in
            (EdgeKey(source: try r.ip(), target: try r.ip(), service: try r.string()), try r.time())
        }
        let controllers = try r.set(max: 4096, minBytes: 17) { r throws(StateDecodeError) in try r.ip() }
        let pending = try r.array(max: rules.maxPairs, minBytes: 34) { r throws(StateDecodeError) in try Self.readPairKey(&r) }
        let first = try r.optional { r throws(StateDecodeError) in try r.time() }
        let clock = try r.time()
        pairs = p
        hosts = h
        edges = e
        learnedControllers = controllers
        pendingShareAlerts = pending
        firstPacket = first
        now = clock
    }

    static func write(_ w: inout StateWriter, _ k: PairKey) {
        w.ip(k.source)
        w.ip(k.target)
    }

    static func readPairKey(_ r: inout StateReader) throws(StateDecodeError) -> PairKey {
        PairKey(source: try r.ip(), target: try r.ip())
    }

    static func write(_ w: inout StateWriter, _ s: PairState) {
        w.time(s.lastSeen)
        w.array(s.adminShares) { $0.string($1) }
        w.array(s.dataShares) { $0.string($1) }
        w.optional(s.adminShareFirst) { $0.time($1) }
        w.array(s.adminWrites) { w, x in
            w.time(x.time)
            w.string(x.share)
            w.string(x.file)
        }
        for list in [s.pipes, s.files, s.calls, s.users] { w.array(list) { $0.string($1) } }
        w.array(s.ports) { $0.u16($1) }
        w.array(s.dcomClasses) { $0.string($1) }
        w.optional(s.dcomActivation) { $0.time($1) }
        w.optional(s.shareEnumeration) { $0.time($1) }
        w.array(s.signatures) { $0.string($1) }
        w.array(s.netlogonCalls) { $0.time($1) }
        w.optional(s.zerologon) { $0.time($1) }
        writeFired(&w, s.fired)
        w.bool(s.pendingShareAlert)
    }

    static func readPairState(_ r: inout StateReader) throws(StateDecodeError) -> PairState {
        let cap = stateListCap
        var s = PairState(lastSeen: try r.time())
        s.adminShares = try r.set(max: cap, minBytes: 4) { r throws(StateDecodeError) in try r.string() }
        s.dataShares = try r.set(max: cap, minBytes: 4) { r throws(StateDecodeError) in try r.string() }
        s.adminShareFirst = try r.optional { r throws(StateDecodeError) in try r.time() }
        s.adminWrites = try r.array(max: cap, minBytes: 16) { r throws(StateDecodeError) in
            (time: try r.time(), share: try r.string(), file: try r.string())
        }
        s.pipes = try readStrings(&r)
        s.files = try readStrings(&r)
        s.calls = try readStrings(&r)
        s.users = try readStrings(&r)
        s.ports = try r.set(max: 65536, minBytes: 2) { r throws(StateDecodeError) in try r.u16() }
        s.dcomClasses = try readStrings(&r)
        s.dcomActivation = try r.optional { r throws(StateDecodeError) in try r.time() }
        s.shareEnumeration = try r.optional { r throws(StateDecodeError) in try r.time() }
        s.signatures = try readStrings(&r)
        s.netlogonCalls = try r.array(max: cap, minBytes: 8) { r throws(StateDecodeError) in try r.time() }
        s.zerologon = try r.optional { r throws(StateDecodeError) in try r.time() }
        s.fired = try readFired(&r)
        s.pendingShareAlert = try r.bool()
        return s
    }

    static func write(_ w: inout StateWriter, _ h: HostState) {
        w.time(h.lastSeen)
        w.array(h.reached) { w, x in
            w.ip(x.target)
            w.u16(x.port)
            w.time(x.first)
            w.time(x.last)
        }
        w.array(h.edges) { w, x in
            w.string(x.service)
            w.ip(x.target)
            w.time(x.time)
        }
        w.array(h.logins.inArrivalOrder) { w, x in
            w.ip(x.server)
            w.string(x.service)
            w.time(x.time)
        }
        w.array(h.failures.live) { w, x in
            w.string(x.user)
            w.time(x.time)
            w.string(x.method.rawValue)
        }
        w.array(h.targetsOfFailures) { $0.ip($1) }
        writeFired(&w, h.fired)
    }

    static func readHostState(_ r: inout StateReader) throws(StateDecodeError) -> HostState {
        let cap = stateListCap
        var h = HostState(lastSeen: try r.time())
        h.reached = try r.array(max: cap, minBytes: 35) { r throws(StateDecodeError) in
            Reach(target: try r.ip(), port: try r.u16(), first: try r.time(), last: try r.time())
        }
        h.edges = try r.array(max: cap, minBytes: 29) { r throws(StateDecodeError) in
            (service: try r.string(), target: try r.ip(), time: try r.time())
        }
        h.logins = LoginWindow(arrivalOrder: try r.array(max: cap, minBytes: 29) { r throws(StateDecodeError) in
            LoginWindow.Login(server: try r.ip(), service: try r.string(), time: try r.time())
        })
        let failures = try r.array(max: cap, minBytes: 16) { r throws(StateDecodeError) in
            let user = try r.string(), time = try r.time()
            guard let method = AuthenticationAttempt.Method(rawValue: try r.string()) else { throw .invalid("authentication method") }
            return AuthFailureWindow.Failure(user: user, time: time, method: method)
        }
        // In time order, same times in the saved order, so each goes on at the end.
        for (_, f) in failures.enumerated().sorted(by: { ($0.element.time, $0.offset) < ($1.element.time, $1.offset) }) {
            h.failures.append(f)
        }
        h.targetsOfFailures = try r.set(max: cap, minBytes: 17) { r throws(StateDecodeError) in try r.ip() }
        h.fired = try readFired(&r)
        return h
    }

    static func readStrings(_ r: inout StateReader) throws(StateDecodeError) -> [String] {
        try r.array(max: stateListCap, minBytes: 4) { r throws(StateDecodeError) in try r.string() }
    }

    static func writeFired(_ w: inout StateWriter, _ fired: [String: Timestamp]) {
        w.dictionary(fired) { w, rule, t in
            w.string(rule)
            w.time(t)
        }
    }

    static func readFired(_ r: inout StateReader) throws(StateDecodeError) -> [String: Timestamp] {
        try r.dictionary(max: stateListCap, minBytes: 12) { r throws(StateDecodeError) in (try r.string(), try r.time()) }
    }
}
