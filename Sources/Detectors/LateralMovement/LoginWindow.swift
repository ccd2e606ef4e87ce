import PacketCore

/// One source's short interactive-login sessions within the login window, with the counts the SSH/RDP
/// brute-force and spray rules read (sessions per service, per service and server, servers per
/// service), kept up to date as sessions come, expire and are pushed out.
///
/// Why: a host decides how many short sessions it opens, so what one costs must not grow with the
/// sessions already held (up to `LateralMovementDetector.loginCap`). Two orders are kept: arrival, for
/// the cap (the earliest to arrive goes), and time, for expiry (flows end out of packet-time order, so
/// the expired sessions are a prefix of the time order only). Both are lists over one slab of sessions:
/// arrival a linked list (removal anywhere is O(1)), time a sorted array whose entries for sessions
/// already pushed out are skipped at its front and dropped in batches.
struct LoginWindow {
    struct Login {
        var server: IPAddress
        var service: String
        var time: Timestamp
    }
    struct ServiceServer: Hashable {
        var service: String
        var server: IPAddress
    }

    private struct Node {
        var login: Login
        var previous = -1, next = -1
        /// Bumped when the slot is freed, so a time-order entry of the slot's earlier session is stale.
        var generation: UInt32 = 0
    }
    private var nodes: [Node] = []
    private var freeSlots: [Int] = []
    private var oldestArrival = -1, newestArrival = -1
    /// Sessions by time (same times in arrival order) from `timeHead` on; stale entries are skipped.
    private var byTime: [(time: Timestamp, slot: Int, generation: UInt32)] = []
    private var timeHead = 0

    private(set) var count = 0
    private var perService: [String: Int] = [:]
    private var perServiceServer: [ServiceServer: Int] = [:]
    private var serversPerService: [String: Int] = [:]

    init() {}

    func sessions(_ service: String) -> Int { perService[service] ?? 0 }
    func sessions(_ service: String, to server: IPAddress) -> Int { perServiceServer[ServiceServer(service: service, server: server)] ?? 0 }
    func servers(_ service: String) -> Int { serversPerService[service] ?? 0 }
    /// The servers `service` sessions went to, sorted (replays must give identical events).
    func sortedServers(_ service: String) -> [IPAddress] { perServiceServer.keys.filter { $0.service == service }.map(\.server).sorted() }

    /// The sessions held, in arrival order.
    var inArrivalOrder: [Login] {
        var out: [Login] = []
        out.reserveCapacity(count)
        var i = oldestArrival
        while i >= 0 { out.append(nodes[i].login); i = nodes[i].next }
        return out
    }

    /// Drops the sessions that ended before `horizon`.
    mutating func expire(before horizon: Timestamp) {
        while timeHead < byTime.count, byTime[timeHead].time < horizon {
            let e = byTime[timeHead]
            timeHead += 1
            if nodes[e.slot].generation == e.generation { remove(e.slot) }
        }
        compactTimeOrder()
    }

    /// Drops the session that arrived first.
    mutating func removeOldestArrival() {
        if oldestArrival >= 0 { remove(oldestArrival) }
        compactTimeOrder()
    }

    /// The sessions in arrival order, as `inArrivalOrder` gave them (a checkpoint): sorted once by time.
    init(arrivalOrder logins: [Login]) {
        for l in logins { link(l) }
        byTime = nodes.indices.map { (nodes[$0].login.time, $0, nodes[$0].generation) }
        byTime.sort { ($0.time, $0.slot) < ($1.time, $1.slot) }
    }

    mutating func append(_ l: Login) {
        let slot = link(l)
        // Behind every entry no later than it (flows end out of time order, so binary search).
        var lo = timeHead, hi = byTime.count
        while lo < hi {
            let mid = lo + (hi - lo) / 2
            if byTime[mid].time > l.time { hi = mid } else { lo = mid + 1 }
        }
        byTime.insert((l.time, slot, nodes[slot].generation), at: lo)
    }

    /// Puts `l` at the end of the arrival order and counts it.
    @discardableResult
    private mutating func link(_ l: Login) -> Int {
        let slot: Int
        if let s = freeSlots.popLast() {
            nodes[s].login = l
            slot = s
        } else {
            nodes.append(Node(login: l))
            slot = nodes.count - 1
        }
        nodes[slot].previous = newestArrival
        nodes[slot].next = -1
        if newestArrival >= 0 { nodes[newestArrival].next = slot } else { oldestArrival = slot }
        newestArrival = slot
        count += 1
        perService[l.service, default: 0] += 1
        let key = ServiceServer(service: l.service, server: l.server)
        if perServiceServer[key, default: 0] == 0 { serversPerService[l.service, default: 0] += 1 }
        perServiceServer[key, default: 0] += 1
        return slot
    }

    private mutating func remove(_ slot: Int) {
        let n = nodes[slot]
        if n.previous >= 0 { nodes[n.previous].next = n.next } else { oldestArrival = n.next }
        if n.next >= 0 { nodes[n.next].previous = n.previous } else { newestArrival = n.previous }
        nodes[slot].generation &+= 1
        freeSlots.append(slot)
        count -= 1
        perService.decrementCount(n.login.service)
        if perServiceServer.decrementCount(ServiceServer(service: n.login.service, server: n.login.server)) {
            serversPerService.decrementCount(n.login.service)
        }
    }

    /// Drops the passed and stale time-order entries once they outnumber the live ones.
    private mutating func compactTimeOrder() {
        guard byTime.count - count > max(count, 32) else { return }
        byTime = byTime[timeHead...].filter { nodes[$0.slot].generation == $0.generation }
        timeHead = 0
    }
}
