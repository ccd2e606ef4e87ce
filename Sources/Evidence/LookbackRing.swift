import CSensorShims
import PacketCore
#if canImport(Glibc)
import Glibc
#endif

/// What a scope needs to know about a packet: addresses, ports, protocol.
public struct PacketSummary: Sendable {
    public var timestamp: Timestamp
    public var wireLength: Int32
    public var linkType: LinkType
    public var source: IPAddress
    public var destination: IPAddress
    public var sourcePort: UInt16
    public var destinationPort: UInt16
    public var ipProtocol: UInt8
    public var hasPorts: Bool

    @inlinable public init(_ p: DecodedPacket, linkType: LinkType) {
        timestamp = p.timestamp
        wireLength = Int32(clamping: p.wireLength)
        self.linkType = linkType
        source = p.source
        destination = p.destination
        sourcePort = p.sourcePort
        destinationPort = p.destinationPort
        ipProtocol = p.ipProtocol
        hasPorts = p.hasPorts
    }
}

/// The lookback ring's memory could not be had at start (the sensor refuses to start rather than fail mid-incident).
public struct LookbackRingError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

/// The most recent packets of one worker, in memory, so evidence opened by an alert starts before it.
///
/// Bounded two ways: bytes (one arena reserved at start) and age on the packet clock. Frames are copied
/// in, cut to the snap length (a headers-only ring keeps e.g. 96 bytes per packet and so minimises the
/// personal data it holds). Nothing is allocated per packet and no lock is taken: the ring belongs to its
/// worker. Evictions are counted by cause.
///
/// Layout: the arena is a byte ring of contiguous entries, each a 24-byte header (timestamp, lengths,
/// link type) followed by the frame, 8-byte aligned, as a pcap file lays them out. Header and frame
/// share cache lines, so the per-packet path writes one sequential stream (a separate record array was a
/// second stream: 24 MiB of records for a 64 MiB arena). An entry that does not fit before the end of
/// the arena starts the next lap at offset 0 and the oldest entries are evicted until there is room.
///
/// The ring laps early when the age bound, not the byte bound, is what limits it: once the free space
/// before the oldest entry can hold everything held plus the new frame, the next lap starts at 0. The
/// memory the ring writes then stays about twice the traffic of one age window (on the benchmark
/// capture at most 7.9 MB, usually under 1 MB, so it stays in cache) instead of sweeping the whole
/// arena; the per-packet copy into cold memory was most of the ring's cost. Under traffic that fills
/// the arena within the age window, it behaves as a plain ring of `bytes`.
public final class LookbackRing {
    public struct Counters: Sendable, Equatable {
        public var stored: UInt64 = 0
        public var evictedForSpace: UInt64 = 0
        public var evictedForAge: UInt64 = 0
        /// Frames cut to the snap length.
        public var truncated: UInt64 = 0
        /// Times a lap was moved to keep packets a plain ring would keep (see `relocate`).
        public var relocations: UInt64 = 0
    }

    /// An entry's header in the arena. Nothing decoded is kept: scopes are matched by decoding the stored
    /// frame again when an alert asks (rare), so the per-packet path writes as little as possible.
    struct Header {
        var timestamp: Int64
        var wireLength: UInt32
        var length: UInt32
        var linkType: Int32
        var reserved: UInt32 = 0
    }

    static let headerSize = MemoryLayout<Header>.stride

    /// Arena bytes one entry of `length` frame bytes takes.
    @inline(__always)
    static func entrySize(_ length: Int) -> Int { headerSize + (length + 7) & ~7 }

    /// One stored frame, as `forEach` hands it out.
    public struct Frame {
        public var timestamp: Timestamp
        public var wireLength: Int
        public var linkType: LinkType
        /// Cut to the snap length; valid only during the visit.
        public var bytes: UnsafeRawBufferPointer
    }

    public let byteCapacity: Int
    public let maxAge: Timestamp.Duration
    public let snapLength: Int
    public private(set) var counters = Counters()

    let arena: UnsafeMutableRawPointer
    /// Offset of the oldest entry.
    var head = 0
    /// Where the next entry goes.
    var writeOffset = 0
    /// The oldest entries are in the previous lap, `head..<lapEnd`; the newer ones in `0..<writeOffset`.
    var wrapped = false
    var lapEnd = 0
    public private(set) var count = 0
    /// Bounds of the timestamps appended since the ring was last empty (a superset of what it holds).
    var newestStored: Int64 = .min
    var oldestStored: Int64 = .max
    /// The highest arena offset written before `writeOffset` last went back (a lap, an emptied ring).
    var highWater = 0
    /// The highest arena offset ever written: the ring's resident memory.
    public var touchedBytes: Int { max(highWater, writeOffset) }

    /// - Parameters:
    ///   - bytes: arena size, headers included; at least one full snap length.
    ///   - maxAge: packets further than this from the newest on the packet clock (either way) are dropped.
    ///   - snapLength: bytes kept per frame.
    public init(bytes: Int, maxAge: Timestamp.Duration, snapLength: Int) throws(LookbackRingError) {
        self.snapLength = max(1, snapLength)
        byteCapacity = max(bytes, Self.entrySize(self.snapLength)) & ~7  // entries are 8-byte aligned, up to the end
        self.maxAge = maxAge
        arena = try Self.reserve(byteCapacity)
    }

    deinit {
        munmap(arena, Self.mappedSize(byteCapacity))
    }

    /// Anonymous memory reserved at start and committed by use. The reservation fails at start when the
    /// kernel will not grant it (strict overcommit, address-space limits), so a sensor that cannot have
    /// its ring says so before capturing. Pages are not touched here: measured on the benchmark capture,
    /// pre-touching 88 MiB (the arena and the record array the ring then had) cost the pipeline +15% CPU
    /// (+23% with `MADV_HUGEPAGE`, whose synchronous compaction stalls), against +8% for letting the first
    /// fill fault the pages in (transparent huge pages, where enabled, then cover them 2 MiB at a time);
    /// the early lap (see the type's notes) now keeps most of the arena untouched unless traffic needs it.
    /// Size `MemoryMax=` for the full ring: it is all resident once traffic has filled it (`touchedBytes`).
    static func reserve(_ bytes: Int) throws(LookbackRingError) -> UnsafeMutableRawPointer {
        let size = mappedSize(bytes)
        guard let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), p != MAP_FAILED else {
            throw LookbackRingError(message: "cannot reserve \(size) bytes of memory for the lookback ring: \(String(cString: strerror(errno)))")
        }
        return p
    }

    static func mappedSize(_ bytes: Int) -> Int {
        let huge = 2 << 20
        return (bytes + huge - 1) / huge * huge
    }

    /// Copies one frame in. The per-packet path: evictions at the head, a header store and a memcpy.
    @inline(__always)
    public func append(timestamp: Timestamp, wireLength: Int, linkType: LinkType, frame: UnsafeRawBufferPointer) {
        let length = min(frame.count, snapLength)
        if length < frame.count { counters.truncated &+= 1 }
        // Age bound on the packet clock, compared with this packet (input may be slightly out of order).
        // Both ways: after the clock steps back (a merged capture, a 32-bit seconds wrap, an NTP step on
        // the capturing host) the entries from before the step are "in the future" and no alert window
        // can reach them; a one-sided bound would keep them, and everything after them, until the clock
        // caught up, turning the ring into a plain byte ring of stale packets.
        let oldestAllowed = timestamp.nanoseconds &- maxAge.nanoseconds
        let newestAllowed = timestamp.nanoseconds &+ maxAge.nanoseconds
        // After a pause longer than the age bound (or a clock step) everything goes at once, without
        // walking the entries: each is a cache miss whose successor is known only from it.
        if count > 0 && (newestStored < oldestAllowed || oldestStored > newestAllowed) {
            counters.evictedForAge &+= UInt64(count)
            count = 0
        }
        while count > 0 {
            let t = header(at: head).pointee.timestamp
            guard t < oldestAllowed || t > newestAllowed else { break }
            dropOldest(); counters.evictedForAge &+= 1
        }
        makeRoom(Self.entrySize(length))
        let h = header(at: writeOffset)
        h.initialize(to: Header(timestamp: timestamp.nanoseconds, wireLength: UInt32(clamping: wireLength), length: UInt32(truncatingIfNeeded: length),
                                linkType: linkType.rawValue))
        if length > 0, let base = frame.baseAddress {
            (arena + writeOffset + Self.headerSize).copyMemory(from: base, byteCount: length)
        }
        writeOffset += Self.entrySize(length)
        if timestamp.nanoseconds > newestStored { newestStored = timestamp.nanoseconds }
        if timestamp.nanoseconds < oldestStored { oldestStored = timestamp.nanoseconds }
        count += 1
        counters.stored &+= 1
    }

    /// Leaves `writeOffset` where `need` bytes are free, evicting the oldest entries as needed.
    @inline(__always)
    func makeRoom(_ need: Int) {
        while true {
            if count == 0 {
                highWater = touchedBytes
                head = 0; writeOffset = 0; wrapped = false
                newestStored = .min; oldestStored = .max
                return
            }
            if wrapped {
                // Free: writeOffset..<head.
                if writeOffset + need <= head || relocate(need) { return }
                dropOldest(); counters.evictedForSpace &+= 1
            } else if writeOffset + need > byteCapacity || head >= writeOffset - head + need {
                // No room before the end, or the free space before the oldest entry holds everything
                // held plus this frame (the age bound is what limits the ring): next lap.
                highWater = touchedBytes
                lapEnd = writeOffset
                writeOffset = 0
                wrapped = true
            } else {
                return
            }
        }
    }

    /// The new lap has reached the oldest entry while the arena still has room for everything held: the
    /// traffic grew after an early lap. Rather than evict packets a plain ring would keep, moves one of
    /// the two laps so that both are contiguous in age order again: the new lap to just after the old
    /// one, or the old lap to the end of the arena. Either copy is at most what the new lap has written
    /// (plus one entry), so the copies cost at most as much again as the traffic that caused them, and
    /// only at such transitions. False when neither fits (the ring is full: evict).
    @inline(never)
    func relocate(_ need: Int) -> Bool {
        let previous = lapEnd - head
        if lapEnd + writeOffset + need <= byteCapacity {
            (arena + lapEnd).copyMemory(from: arena, byteCount: writeOffset)
            writeOffset += lapEnd
            wrapped = false
        } else if previous <= writeOffset + Self.entrySize(snapLength), previous + writeOffset + need <= byteCapacity {
            let destination = byteCapacity - previous
            (arena + destination).copyMemory(from: arena + head, byteCount: previous)
            head = destination
            lapEnd = byteCapacity
        } else {
            return false
        }
        counters.relocations &+= 1
        highWater = max(highWater, lapEnd)
        return true
    }

    @inline(__always)
    func header(at offset: Int) -> UnsafeMutablePointer<Header> {
        (arena + offset).assumingMemoryBound(to: Header.self)
    }

    /// The oldest entry is far from the write position (an age window of traffic, or the whole arena),
    /// so reading its header is a cache miss, and the next one's place is only known from this one's
    /// length: a chain of misses, one per packet. Asking for the new oldest header as soon as its place
    /// is known has it at hand when the next packet checks it.
    @inline(__always)
    func dropOldest() {
        head += Self.entrySize(Int(header(at: head).pointee.length))
        count -= 1
        if wrapped && head == lapEnd { head = 0; wrapped = false }
        csensor_prefetch(arena + head)
    }

    /// Visits stored packets oldest first (alerts are rare; this is not the packet path).
    public func forEach(_ body: (Frame) throws -> Void) rethrows {
        var offset = head
        var inPreviousLap = wrapped
        for _ in 0..<count {
            let h = header(at: offset).pointee
            try body(Frame(timestamp: Timestamp(nanoseconds: h.timestamp), wireLength: Int(h.wireLength), linkType: LinkType(rawValue: h.linkType),
                           bytes: UnsafeRawBufferPointer(start: arena + offset + Self.headerSize, count: Int(h.length))))
            offset += Self.entrySize(Int(h.length))
            if inPreviousLap && offset == lapEnd { offset = 0; inPreviousLap = false }
        }
    }

    /// Bytes of frame data currently held.
    public var storedBytes: Int {
        var n = 0
        forEach { n += $0.bytes.count }
        return n
    }

    public var oldest: Timestamp? { count > 0 ? Timestamp(nanoseconds: header(at: head).pointee.timestamp) : nil }
}
