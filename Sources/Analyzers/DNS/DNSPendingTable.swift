import PacketCore

/// Queries waiting for their response, keyed by (flow slot, flow generation, DNS id).
///
/// Allocated once at start and never grown: a 4-way set-associative table of entries, the question
/// name of each stored inline (256 bytes per entry), and a FIFO ring in insertion (packet-clock)
/// order that drives timeouts. When a set or the ring is full the oldest query is forced out and
/// counted; the analyser reports it as unanswered, so memory stays bounded under floods of
/// unanswered or spoofed queries while every query still yields exactly one event.
final class DNSPendingTable {
    struct Entry {
        var used = false
        var slot: Int32 = -1
        var generation: UInt32 = 0
        var id: UInt16 = 0
        var qtype: UInt16 = 0
        var qclass: UInt16 = 0
        var flags: UInt16 = 0
        var nameLength: Int16 = -1  // -1: the query had no question
        var ipProtocol: UInt8 = 0
        var appProtocol: UInt8 = 0
        var clientIsA = true
        var key = FlowKey.make(DecodedPacket()).key
        var time = Timestamp.zero
        var sequence: UInt32 = 0
    }

    static let ways = 4
    static let nameStride = 256

    let capacity: Int
    let setMask: Int
    let entries: UnsafeMutablePointer<Entry>
    let names: UnsafeMutableRawPointer
    /// FIFO of (entry index, sequence); stale when the entry's sequence moved on.
    let ring: UnsafeMutablePointer<(Int32, UInt32)>
    let ringCapacity: Int
    var ringHead = 0
    var ringCount = 0
    var nextSequence: UInt32 = 1
    private(set) var live = 0

    init(capacity requested: Int) {
        var sets = 1
        while sets * DNSPendingTable.ways < max(64, requested) { sets <<= 1 }
        capacity = sets * DNSPendingTable.ways
        setMask = sets - 1
        // Zero-filled, paged in on use: an all-zero entry is unused (nothing but `used` is read from an
        // unused entry), and ring items are written before they are read.
        entries = ZeroFilledMemory.allocate(Entry.self, count: capacity)
        names = .allocate(byteCount: capacity * DNSPendingTable.nameStride, alignment: 8)
        ringCapacity = capacity * 2
        ring = ZeroFilledMemory.allocate((Int32, UInt32).self, count: ringCapacity)
    }

    deinit {
        ZeroFilledMemory.deallocate(entries)
        names.deallocate()
        ZeroFilledMemory.deallocate(ring)
    }

    @inline(__always)
    func set(slot: Int32, generation: UInt32, id: UInt16) -> Int {
        var h = UInt64(UInt32(bitPattern: slot)) &* 0x9E37_79B9_7F4A_7C15
        h ^= (UInt64(id) << 32 | UInt64(generation)) &* 0xC2B2_AE3D_27D4_EB4F
        h ^= h >> 29
        return Int(truncatingIfNeeded: h) & setMask
    }

    /// The entry waiting for this (flow, id), if any.
    func find(slot: Int32, generation: UInt32, id: UInt16) -> Int? {
        let base = set(slot: slot, generation: generation, id: id) * DNSPendingTable.ways
        for i in base..<(base + DNSPendingTable.ways) {
            let e = entries[i]
            if e.used && e.slot == slot && e.generation == generation && e.id == id { return i }
        }
        return nil
    }

    func name(_ i: Int) -> UnsafeRawBufferPointer {
        let n = max(0, Int(entries[i].nameLength))
        return UnsafeRawBufferPointer(start: names + i * DNSPendingTable.nameStride, count: n)
    }

    /// A free entry for a new query. Calls `forceOut` with an entry that had to make room (the oldest
    /// of the set, or the oldest in the ring); the caller reports and frees it before reuse.
    func reserve(slot: Int32, generation: UInt32, id: UInt16, forceOut: (Int) -> Void) -> Int {
        if ringCount == ringCapacity { popOldest(forceOut) }
        let base = set(slot: slot, generation: generation, id: id) * DNSPendingTable.ways
        var oldest = base
        for i in base..<(base + DNSPendingTable.ways) {
            if !entries[i].used { return i }
            if entries[i].time < entries[oldest].time { oldest = i }
        }
        forceOut(oldest)
        return oldest
    }

    /// Stores the query in a reserved entry and queues it for timeout.
    func insert(_ i: Int, _ entry: Entry, name: UnsafeRawBufferPointer?) {
        var e = entry
        e.used = true
        e.sequence = nextSequence
        nextSequence &+= 1
        if let name {
            let n = min(name.count, DNSPendingTable.nameStride)
            if n > 0 { (names + i * DNSPendingTable.nameStride).copyMemory(from: name.baseAddress!, byteCount: n) }
            e.nameLength = Int16(n)
        } else {
            e.nameLength = -1
        }
        entries[i] = e
        live += 1
        ring[(ringHead + ringCount) % ringCapacity] = (Int32(i), e.sequence)
        ringCount += 1
    }

    func remove(_ i: Int) {
        guard entries[i].used else { return }
        entries[i].used = false
        entries[i].sequence = 0
        live -= 1
    }

    /// Drops stale ring items at the head; then hands the oldest live entry to `forceOut`.
    func popOldest(_ forceOut: (Int) -> Void) {
        while ringCount > 0 {
            let (i, seq) = ring[ringHead]
            ringHead = (ringHead + 1) % ringCapacity
            ringCount -= 1
            if entries[Int(i)].used && entries[Int(i)].sequence == seq {
                forceOut(Int(i))
                return
            }
        }
    }

    /// Hands every entry older than `deadline` (in insertion order) to `expire`.
    func expire(before deadline: Timestamp, _ expire: (Int) -> Void) {
        while ringCount > 0 {
            let (i, seq) = ring[ringHead]
            let e = entries[Int(i)]
            if e.used && e.sequence == seq {
                guard e.time < deadline else { return }
                expire(Int(i))
            }
            ringHead = (ringHead + 1) % ringCapacity
            ringCount -= 1
        }
    }
}
