import PacketCore

/// The services (server, port, transport, protocol) a network is seen to use, so that a protocol on an
/// odd port that is simply how some server works — an internal application on 8001 every workstation
/// uses, a vendor's appliance — stops being judged once it is known.
///
/// A service is established when it was seen during the learning period (counted from the first
/// session learned), or when at least `establishedClients` distinct clients used it (a 64-bit
/// linear-counting sketch per service: exact enough for thresholds up to ~20). Learned from every
/// judgeable session, on every stage that sees it, so the verdict does not depend on which worker or
/// shard judges the session.
///
/// Clients count as of the stage's last tick, plus the judged session's own client: sessions of one
/// second reach the stage in an order that depends on the number of workers (each expires its flows in
/// its own order), and a count read after every earlier session would differ from a one-worker run's.
///
/// Memory: at most `maxServices` entries (≈ 72 B each); beyond it the stalest eighth is evicted in one
/// go and counted.
struct ServiceBaseline {
    struct Key: Hashable { var server: IPAddress; var port: UInt16; var transport: UInt8; var appProtocol: UInt8 }
    struct Entry {
        var clients: UInt64 = 0
        var learned = false
        var last: Timestamp
        /// `clients` as of the last tick.
        var clientsAtTick: UInt64 = 0
        /// Listed in `changed` (clients grew since the last tick).
        var changed = false
    }

    private(set) var entries: [Key: Entry] = [:]
    private(set) var start: Timestamp?
    private(set) var evictions: UInt64 = 0
    /// Services whose clients grew since the last tick; past `maxServices` of them (services evicted and
    /// seen again within the second), the tick updates every entry instead.
    private var changed: [Key] = []
    private var changedAll = false

    /// Records that `flow`'s client used its service.
    mutating func learn(_ flow: FlowRecord, learningPeriod: Double, maxServices: Int) {
        let key = Key(server: flow.responder, port: flow.responderPort, transport: flow.key.ipProtocol, appProtocol: flow.appProtocol)
        let t = flow.segmentStart
        if start == nil { start = t }
        let learning = learningPeriod > 0 && (t - (start ?? t)).secondsDouble < learningPeriod
        if entries[key] == nil && entries.count >= maxServices {
            let victims = entries.sorted { $0.value.last < $1.value.last }.prefix(max(1, maxServices / 8))
            for (k, _) in victims { entries[k] = nil }
            evictions &+= UInt64(victims.count)
        }
        var e = entries[key] ?? Entry(last: flow.lastSeen)
        let grown = e.clients | Self.sketchBit(flow.originator)
        if grown != e.clients && !e.changed {
            e.changed = true
            if changed.count < maxServices { changed.append(key) } else { changedAll = true }
        }
        e.clients = grown
        if learning { e.learned = true }
        if flow.lastSeen > e.last { e.last = flow.lastSeen }
        entries[key] = e
    }

    /// Whether `flow`'s service is established (learned, or used by enough distinct clients).
    func isEstablished(_ flow: FlowRecord, establishedClients: Int) -> Bool {
        let key = Key(server: flow.responder, port: flow.responderPort, transport: flow.key.ipProtocol, appProtocol: flow.appProtocol)
        guard let e = entries[key] else { return false }
        let clients = e.clientsAtTick | Self.sketchBit(flow.originator)
        return e.learned || (establishedClients > 0 && clients.nonzeroBitCount >= establishedClients)
    }

    /// The stage's tick: this second's clients start to count.
    mutating func tick() {
        if changedAll {
            for i in entries.indices where entries.values[i].changed {
                entries.values[i].clientsAtTick = entries.values[i].clients
                entries.values[i].changed = false
            }
        } else {
            for k in changed {
                guard let i = entries.index(forKey: k) else { continue }
                entries.values[i].clientsAtTick = entries.values[i].clients
                entries.values[i].changed = false
            }
        }
        changed.removeAll(keepingCapacity: true)
        changedAll = false
    }

    /// Forgets services not seen for `horizon` seconds before `now` (learned ones are kept).
    mutating func expire(_ now: Timestamp, horizon: Double) {
        entries = entries.filter { $0.value.learned || (now - $0.value.last).secondsDouble < horizon }
    }

    /// A fixed mix, not Swift's per-process seeded Hasher: the sketches feed scores and alert fields,
    /// which must come out the same on every replay of the same traffic.
    static func mix(_ a: IPAddress) -> UInt64 {
        var h = (a.high &* 0x9E37_79B9_7F4A_7C15) ^ (a.low &* 0xBF58_476D_1CE4_E5B9)
        h ^= h >> 29
        h = h &* 0x94D0_49BB_1331_11EB
        return h >> 58
    }

    /// An address's bit in a 64-bit linear-counting sketch (service clients, port servers).
    @inline(__always) static func sketchBit(_ a: IPAddress) -> UInt64 { 1 << mix(a) }
}

extension IPAddress {
    /// 127.0.0.0/8 or ::1: traffic that never leaves the host.
    var isLoopback: Bool { isIPv6 ? high == 0 && low == 1 : ipv4Value >> 24 == 127 }
}

extension ServiceBaseline {
    func save(_ w: inout StateWriter) {
        w.dictionary(entries) { w, k, e in
            w.ip(k.server)
            w.u16(k.port)
            w.u8(k.transport)
            w.u8(k.appProtocol)
            w.u64(e.clients)
            w.bool(e.learned)
            w.time(e.last)
        }
        w.optional(start) { $0.time($1) }
        w.u64(evictions)
    }

    init(restoring r: inout StateReader, maxServices: Int) throws(StateDecodeError) {
        entries = try r.dictionary(max: maxServices, minBytes: 39) { r throws(StateDecodeError) in
            let key = Key(server: try r.ip(), port: try r.u16(), transport: try r.u8(), appProtocol: try r.u8())
            let clients = try r.u64()
            return (key, Entry(clients: clients, learned: try r.bool(), last: try r.time(), clientsAtTick: clients))
        }
        start = try r.optional { r throws(StateDecodeError) in try r.time() }
        evictions = try r.u64()
    }
}
