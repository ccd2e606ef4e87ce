#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Limits and timeouts of a flow table. Times are on the packet clock.
public struct FlowTableConfiguration: Sendable, Equatable {
    /// Hard capacity: at most this many flows are tracked; beyond it the stalest flow is evicted and counted.
    public var capacity: Int = 262_144
    /// What `flows.max` and `--max-flows` accept. The top, 2^24 flows, reserves 2.9 GB of address space
    /// for the table (172 bytes a flow) and 0.9 GB for the analysers' per-slot tables, paged in only as
    /// flows arrive: room for a busy link per worker, while a typo of a few digits is refused instead of
    /// reserving more address space than the host has.
    public static let capacityRange: ClosedRange<Int> = 1024...16_777_216
    /// Idle timeouts per transport and TCP state.
    public var tcpTimeout: Timestamp.Duration = .seconds(300)
    public var tcpClosedTimeout: Timestamp.Duration = .seconds(5)
    public var udpTimeout: Timestamp.Duration = .seconds(60)
    public var otherTimeout: Timestamp.Duration = .seconds(60)
    /// Long flows are reported every `activeTimeout` (and their counters restart); 0 turns it off.
    public var activeTimeout: Timestamp.Duration = .seconds(1800)

    public init() {}
}

/// Counters of the flow table itself, published by the pipeline once per batch.
public struct FlowTableCounters: Sendable, Equatable {
    public var created: UInt64 = 0
    public var ended: UInt64 = 0
    public var evicted: UInt64 = 0
    public var activeTimeouts: UInt64 = 0
    public init() {}
}

/// A bounded, single-owner table of bidirectional flows.
///
/// Like Suricata's af-packet workers, each capture worker owns one table, so the per-packet path takes no
/// lock. Storage is allocated once at start: a slot array of `FlowRecord`s, an open-addressing index
/// (linear probing, backward-shift deletion, no tombstones) and four intrusive LRU lists — open TCP,
/// finished TCP, UDP, other — so idle expiry only ever looks at list heads and capacity eviction picks
/// the stalest head. Nothing on the packet path allocates.
///
/// The lists are ordered by `listTime`, the packet clock when a flow was last moved to its tail. A flow
/// is moved at most once per second of packet clock (moving touches two neighbours' cache lines, which
/// per packet would cost more than the rest of the update); expiry at a head checks the flow's real last
/// activity and re-queues it if it is still live.
public final class FlowTable {
    public let configuration: FlowTableConfiguration
    public let capacity: Int
    @usableFromInline let slots: UnsafeMutablePointer<FlowRecord>
    /// The index in use: a power-of-two prefix of one of two preallocated arrays. It doubles (rehashing
    /// into the other array) as flows arrive, so a table sized for a busy link keeps a small, cache-
    /// resident index while it holds few flows; the arrays are reserved up front (lazy zero pages), so
    /// growing allocates nothing.
    @usableFromInline var buckets: UnsafeMutablePointer<UInt64>
    @usableFromInline var bucketMask: Int
    let bucketArrays: (UnsafeMutablePointer<UInt64>, UnsafeMutablePointer<UInt64>)
    let maxBuckets: Int
    public private(set) var indexGrowths = 0
    @usableFromInline let freeSlots: UnsafeMutablePointer<Int32>
    /// Slots returned by ended flows (a stack), and the first slot never used yet.
    @usableFromInline var freeCount: Int
    @usableFromInline var neverUsed: Int = 0
    @usableFromInline var heads: (Int32, Int32, Int32, Int32) = (-1, -1, -1, -1)
    @usableFromInline var tails: (Int32, Int32, Int32, Int32) = (-1, -1, -1, -1)
    @usableFromInline let timeouts: (Int64, Int64, Int64, Int64)
    @usableFromInline let activeTimeout: Int64
    public private(set) var counters = FlowTableCounters()
    /// The table's packet clock: the latest packet time it has seen.
    public private(set) var clock: Timestamp = .zero
    static let relinkInterval: Int64 = 1_000_000_000

    /// Expiry lists.
    enum ListClass: UInt8 { case tcpOpen = 0, tcpFinished = 1, udp = 2, other = 3 }

    /// Result of accounting one packet.
    public struct Update: Sendable {
        /// Slot of the flow: stable for the flow's life, an index for analysers' side tables.
        public var slot: Int32
        /// The packet travels from originator to responder.
        public var fromOriginator: Bool
        /// This packet created the flow.
        public var isNew: Bool
    }

    /// Memory the table holds, per flow of capacity (slot plus its share of the index).
    public var bytesPerFlow: Int {
        MemoryLayout<FlowRecord>.stride + maxBuckets * MemoryLayout<UInt64>.stride / capacity + MemoryLayout<Int32>.stride
    }

    public var activeFlows: Int { neverUsed - freeCount }

    public init(configuration: FlowTableConfiguration = FlowTableConfiguration()) {
        self.configuration = configuration
        let cap = max(16, configuration.capacity)
        capacity = cap
        var nb = 16
        while nb < cap * 2 { nb <<= 1 }
        maxBuckets = nb
        bucketMask = min(nb, 16_384) - 1
        // Zero-filled, paged in on use: a table sized for a busy link costs no start-up time and no
        // resident memory until flows arrive. An all-zero FlowRecord is a valid value (every field is a
        // plain integer, Bool or zero-raw-value enum).
        bucketArrays = (ZeroFilledMemory.allocate(UInt64.self, count: nb), ZeroFilledMemory.allocate(UInt64.self, count: nb))
        buckets = bucketArrays.0
        slots = ZeroFilledMemory.allocate(FlowRecord.self, count: cap)
        freeSlots = .allocate(capacity: cap)
        freeCount = 0
        timeouts = (configuration.tcpTimeout.nanoseconds, configuration.tcpClosedTimeout.nanoseconds,
                    configuration.udpTimeout.nanoseconds, configuration.otherTimeout.nanoseconds)
        activeTimeout = configuration.activeTimeout.nanoseconds
    }

    deinit {
        ZeroFilledMemory.deallocate(slots)
        ZeroFilledMemory.deallocate(bucketArrays.0)
        ZeroFilledMemory.deallocate(bucketArrays.1)
        freeSlots.deallocate()
    }

    /// The flow in a slot (valid while the flow lives).
    @inlinable public subscript(slot: Int32) -> FlowRecord {
        get { slots[Int(slot)] }
    }

    /// The generation of the flow in a slot, without copying its record (per-packet side-table checks).
    @inlinable public func generation(slot: Int32) -> UInt32 { slots[Int(slot)].generation }
    /// Wire bytes of the flow in `slot` so far, both directions, without copying its record.
    @inlinable public func bytes(slot: Int32) -> UInt64 { slots[Int(slot)].bytesA &+ slots[Int(slot)].bytesB }

    /// Lets an analyser set the application protocol tag of a live flow.
    @inlinable public func setAppProtocol(_ value: UInt8, slot: Int32) { slots[Int(slot)].appProtocol = value }

    // MARK: - Lists

    func head(_ c: Int) -> Int32 {
        switch c { case 0: return heads.0; case 1: return heads.1; case 2: return heads.2; default: return heads.3 }
    }
    func setHead(_ c: Int, _ v: Int32) {
        switch c { case 0: heads.0 = v; case 1: heads.1 = v; case 2: heads.2 = v; default: heads.3 = v }
    }
    func tail(_ c: Int) -> Int32 {
        switch c { case 0: return tails.0; case 1: return tails.1; case 2: return tails.2; default: return tails.3 }
    }
    func setTail(_ c: Int, _ v: Int32) {
        switch c { case 0: tails.0 = v; case 1: tails.1 = v; case 2: tails.2 = v; default: tails.3 = v }
    }
    func timeout(_ c: Int) -> Int64 {
        switch c { case 0: return timeouts.0; case 1: return timeouts.1; case 2: return timeouts.2; default: return timeouts.3 }
    }

    func unlink(_ s: Int32) {
        let c = Int(slots[Int(s)].listClass)
        let p = slots[Int(s)].prev, n = slots[Int(s)].next
        if p >= 0 { slots[Int(p)].next = n } else { setHead(c, n) }
        if n >= 0 { slots[Int(n)].prev = p } else { setTail(c, p) }
    }

    func append(_ s: Int32, to c: Int) {
        slots[Int(s)].listClass = UInt8(c)
        slots[Int(s)].listTime = clock
        let t = tail(c)
        slots[Int(s)].prev = t
        slots[Int(s)].next = -1
        if t >= 0 { slots[Int(t)].next = s } else { setHead(c, s) }
        setTail(c, s)
    }

    static func listClass(for r: FlowRecord) -> Int {
        switch r.key.ipProtocol {
        case IPProtocol.tcp: return r.tcpState.isFinished ? 1 : 0
        case IPProtocol.udp: return 2
        default: return 3
        }
    }

    // MARK: - Packet path

    /// Accounts one decoded packet to its flow, creating the flow if needed. `onEnd` receives any flow
    /// this packet forces out (capacity eviction, TCP port reuse, active-timeout report).
    public func update(_ p: DecodedPacket, onEnd: (FlowRecord, FlowEndReason, Int32) -> Void) -> Update {
        let (key, srcIsA) = FlowKey.make(p)
        let h64 = key.hashValue64
        let tag = UInt32(truncatingIfNeeded: h64 >> 32)
        let now = p.timestamp
        if now > clock { clock = now }
        var i = Int(truncatingIfNeeded: h64) & bucketMask
        var slot: Int32 = -1
        while true {
            let e = buckets[i]
            if e == 0 { break }
            if UInt32(truncatingIfNeeded: e >> 32) == tag {
                let s = Int32(truncatingIfNeeded: e & 0xffff_ffff) - 1
                if slots[Int(s)].key == key { slot = s; break }
            }
            i = (i + 1) & bucketMask
        }

        var isNew = false
        if slot >= 0 {
            // Fields read in place: copying the whole record out costs a 152-byte copy per packet.
            let r = slots + Int(slot)
            if key.ipProtocol == IPProtocol.tcp && r.pointee.tcpState.isFinished && p.tcpFlags.contains(.syn) && !p.tcpFlags.contains(.ack) {
                // A new connection on a finished 4-tuple: report the old one, start afresh.
                end(slot, .reused, onEnd)
                slot = -1
            } else if activeTimeout > 0 && now.nanoseconds &- r.pointee.segmentStart.nanoseconds >= activeTimeout {
                onEnd(r.pointee, .activeTimeout, slot)
                counters.activeTimeouts &+= 1
                let s = Int(slot)
                slots[s].segmentStart = now
                slots[s].packetsA = 0; slots[s].packetsB = 0
                slots[s].bytesA = 0; slots[s].bytesB = 0
                slots[s].payloadBytesA = 0; slots[s].payloadBytesB = 0
            }
        }
        if slot < 0 {
            slot = create(key, tag: tag, h64: h64, srcIsA: srcIsA, p, onEnd)
            isNew = true
        }

        let s = Int(slot)
        let fromA = srcIsA
        let wire = UInt64(p.wireLength)
        let payload = UInt64(max(0, p.payloadLength))
        if fromA {
            slots[s].packetsA &+= 1; slots[s].bytesA &+= wire; slots[s].payloadBytesA &+= payload
        } else {
            slots[s].packetsB &+= 1; slots[s].bytesB &+= wire; slots[s].payloadBytesB &+= payload
        }
        if now > slots[s].lastSeen { slots[s].lastSeen = now }
        slots[s].lastActive = clock
        let oldClass = Int(slots[s].listClass)
        if key.ipProtocol == IPProtocol.tcp {
            advanceTCP(s, fromA: fromA, flags: p.tcpFlags)
        }
        let newClass = key.ipProtocol == IPProtocol.tcp ? (slots[s].tcpState.isFinished ? 1 : 0) : oldClass
        if newClass != oldClass {
            unlink(slot)
            append(slot, to: newClass)
        } else if clock.nanoseconds &- slots[s].listTime.nanoseconds >= FlowTable.relinkInterval {
            if tail(oldClass) != slot {
                unlink(slot)
                append(slot, to: newClass)
            } else {
                slots[s].listTime = clock  // already last: the list stays ordered
            }
        }
        return Update(slot: slot, fromOriginator: fromA == slots[s].originatorIsA, isNew: isNew)
    }

    func advanceTCP(_ s: Int, fromA: Bool, flags: TCPFlags) {
        if fromA { slots[s].flagsA.formUnion(flags) } else { slots[s].flagsB.formUnion(flags) }
        let fromOriginator = fromA == slots[s].originatorIsA
        var st = slots[s].tcpState
        if flags.contains(.rst) {
            st = (st == .synSent && !fromOriginator) || st == .rejected ? .rejected : .reset
        } else if flags.contains(.syn) {
            if flags.contains(.ack) {
                if st == .none || st == .synSent { st = .established }
            } else if st == .none {
                st = .synSent
            }
        } else if flags.contains(.fin) {
            if st == .none || st == .established || st == .closing || st == .synSent {
                st = slots[s].flagsA.contains(.fin) && slots[s].flagsB.contains(.fin) ? .closed : .closing
            }
        } else if st == .none && slots[s].packetsA > 0 && slots[s].packetsB > 0 && flags.contains(.ack) {
            // Handshake missed: traffic acknowledged in both directions is a live connection.
            st = .established
        }
        slots[s].tcpState = st
    }

    func create(_ key: FlowKey, tag: UInt32, h64: UInt64, srcIsA: Bool, _ p: DecodedPacket,
                _ onEnd: (FlowRecord, FlowEndReason, Int32) -> Void) -> Int32 {
        if freeCount == 0 && neverUsed == capacity { evictStalest(onEnd) }
        let slot: Int32
        if freeCount > 0 {
            freeCount -= 1
            slot = freeSlots[freeCount]
        } else {
            slot = Int32(neverUsed)
            neverUsed += 1
        }
        let s = Int(slot)
        // Never 0: analysers' zero-filled side tables read generation 0 as "no flow".
        let next = slots[s].generation &+ 1
        let gen = next == 0 ? 1 : next
        // A SYN-ACK first means we missed the SYN: the other side opened the connection.
        var originatorIsA = srcIsA
        if key.ipProtocol == IPProtocol.tcp && p.tcpFlags.contains(.syn) && p.tcpFlags.contains(.ack) { originatorIsA = !srcIsA }
        slots[s] = FlowRecord(key: key, originatorIsA: originatorIsA, tcpState: .none, flagsA: [], flagsB: [], vlan: p.vlan,
                              appProtocol: 0, listClass: 0, firstSeen: p.timestamp, lastSeen: p.timestamp,
                              segmentStart: p.timestamp, packetsA: 0, packetsB: 0, bytesA: 0, bytesB: 0,
                              payloadBytesA: 0, payloadBytesB: 0, lastActive: clock, listTime: clock, prev: -1, next: -1, hash: tag, generation: gen)
        let c: Int
        switch key.ipProtocol {
        case IPProtocol.tcp: c = 0
        case IPProtocol.udp: c = 2
        default: c = 3
        }
        append(slot, to: c)
        var i = Int(truncatingIfNeeded: h64) & bucketMask
        while buckets[i] != 0 { i = (i + 1) & bucketMask }
        buckets[i] = UInt64(tag) << 32 | UInt64(UInt32(slot + 1))
        counters.created &+= 1
        if activeFlows * 2 > bucketMask + 1 && bucketMask + 1 < maxBuckets { growIndex() }
        return slot
    }

    /// Doubles the index: rehashes every entry into the other array, then clears the old prefix so the
    /// spare array is all zeros again for the next growth.
    @inline(never)
    func growIndex() {
        let oldSize = bucketMask + 1
        let newMask = oldSize * 2 - 1
        let target = buckets == bucketArrays.0 ? bucketArrays.1 : bucketArrays.0
        for j in 0..<oldSize {
            let e = buckets[j]
            if e == 0 { continue }
            let s = Int(Int32(truncatingIfNeeded: e & 0xffff_ffff) - 1)
            var i = Int(truncatingIfNeeded: slots[s].key.hashValue64) & newMask
            while target[i] != 0 { i = (i + 1) & newMask }
            target[i] = e
        }
        memset(buckets, 0, oldSize * MemoryLayout<UInt64>.stride)
        buckets = target
        bucketMask = newMask
        indexGrowths += 1
    }

    @inline(never)
    func evictStalest(_ onEnd: (FlowRecord, FlowEndReason, Int32) -> Void) {
        var best: Int32 = -1
        for c in 0..<4 {
            let h = head(c)
            if h >= 0 && (best < 0 || slots[Int(h)].lastActive < slots[Int(best)].lastActive) { best = h }
        }
        guard best >= 0 else { return }
        counters.evicted &+= 1
        end(best, .evicted, onEnd)
    }

    /// Reports and removes one flow.
    func end(_ slot: Int32, _ reason: FlowEndReason, _ onEnd: (FlowRecord, FlowEndReason, Int32) -> Void) {
        onEnd(slots[Int(slot)], reason, slot)
        remove(slot)
        counters.ended &+= 1
    }

    func remove(_ slot: Int32) {
        unlink(slot)
        let h64 = slots[Int(slot)].key.hashValue64
        var i = Int(truncatingIfNeeded: h64) & bucketMask
        let wanted = UInt64(UInt32(slot + 1))
        while buckets[i] & 0xffff_ffff != wanted {
            if buckets[i] == 0 { preconditionFailure("flow table index lost slot \(slot)") }
            i = (i + 1) & bucketMask
        }
        // Backward-shift deletion keeps probe chains intact without tombstones.
        var hole = i
        var j = i
        while true {
            j = (j + 1) & bucketMask
            let e = buckets[j]
            if e == 0 { break }
            let s = Int(Int32(truncatingIfNeeded: e & 0xffff_ffff) - 1)
            let ideal = Int(truncatingIfNeeded: slots[s].key.hashValue64) & bucketMask
            // Move e into the hole if its ideal position is not in (hole, j] cyclically.
            let between = hole <= j ? (ideal > hole && ideal <= j) : (ideal > hole || ideal <= j)
            if !between {
                buckets[hole] = e
                hole = j
            }
        }
        buckets[hole] = 0
        freeSlots[freeCount] = slot
        freeCount += 1
    }

    // MARK: - Expiry

    /// Ends every flow idle past its timeout at packet time `now`. Cheap: looks at list heads only.
    ///
    /// The table's time differences wrap (`&-`) rather than saturate: packet times are inside
    /// `Timestamp.validRange`, where every difference is exact, and this is the per-packet path.
    public func expire(now: Timestamp, onEnd: (FlowRecord, FlowEndReason, Int32) -> Void) {
        if now > clock { clock = now }
        for c in 0..<4 {
            let limit = timeout(c)
            while true {
                let h = head(c)
                guard h >= 0, now.nanoseconds &- slots[Int(h)].listTime.nanoseconds >= limit else { break }
                if now.nanoseconds &- slots[Int(h)].lastActive.nanoseconds >= limit {
                    end(h, c == 1 ? .tcpClosed : .idleTimeout, onEnd)
                } else {
                    // Active since it was queued: back to the tail.
                    unlink(h)
                    append(h, to: c)
                }
            }
        }
    }

    /// Ends every flow, oldest last packet first (end of input or shutdown).
    public func flushAll(reason: FlowEndReason = .endOfInput, onEnd: (FlowRecord, FlowEndReason, Int32) -> Void) {
        while true {
            var best: Int32 = -1
            for c in 0..<4 {
                let h = head(c)
                if h >= 0 && (best < 0 || slots[Int(h)].lastActive < slots[Int(best)].lastActive) { best = h }
            }
            guard best >= 0 else { return }
            end(best, reason, onEnd)
        }
    }

    /// Calls `body` for every live flow (for snapshots and tests; not on the packet path).
    public func forEach(_ body: (FlowRecord, Int32) -> Void) {
        for c in 0..<4 {
            var s = head(c)
            while s >= 0 { body(slots[Int(s)], s); s = slots[Int(s)].next }
        }
    }
}
