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
/// Bounded three ways: bytes (one arena allocated at start), age on the packet clock, and a record
/// count (one record array allocated at start). Frames are copied in, cut to the snap length (a
/// headers-only ring keeps e.g. 96 bytes per packet and so minimises the personal data it holds). The
/// arena is a byte ring of contiguous frames: a frame that does not fit before the end wraps to offset
/// 0, and the oldest frames are evicted until there is room. Nothing is allocated per packet and no
/// lock is taken: the ring belongs to its worker. Evictions are counted by cause.
public final class LookbackRing {
    public struct Counters: Sendable, Equatable {
        public var stored: UInt64 = 0
        public var evictedForSpace: UInt64 = 0
        public var evictedForAge: UInt64 = 0
        public var evictedForCount: UInt64 = 0
        /// Frames cut to the snap length.
        public var truncated: UInt64 = 0
    }

    /// 24 bytes per packet: the ring keeps frames and their pcap header, nothing decoded. Scopes are
    /// matched by decoding the stored frame again when an alert asks (rare), so the per-packet path
    /// writes as little memory as possible.
    struct Record {
        var timestamp: Int64
        var wireLength: UInt32
        var linkType: Int32
        var offset: UInt32
        var length: UInt32
    }

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
    public let recordCapacity: Int
    public private(set) var counters = Counters()

    let arena: UnsafeMutableRawPointer
    let records: UnsafeMutablePointer<Record>
    /// Index of the oldest record, and how many there are.
    var head = 0
    public private(set) var count = 0
    var writeOffset = 0

    /// - Parameters:
    ///   - bytes: arena size; at least one full snap length.
    ///   - maxAge: packets older than the newest by more than this are dropped.
    ///   - snapLength: bytes kept per frame.
    ///   - maxPackets: record slots (default: one per 64 arena bytes, 24 bytes each; a flood of smaller
    ///     frames is then bounded by count rather than bytes, and counted).
    public init(bytes: Int, maxAge: Timestamp.Duration, snapLength: Int, maxPackets: Int? = nil) throws(LookbackRingError) {
        self.snapLength = max(1, snapLength)
        byteCapacity = min(max(bytes, self.snapLength), Int(UInt32.max))
        self.maxAge = maxAge
        recordCapacity = max(16, maxPackets ?? byteCapacity / 64)
        let arena = try Self.reserve(byteCapacity)
        do {
            records = try Self.reserve(recordCapacity * MemoryLayout<Record>.stride).bindMemory(to: Record.self, capacity: recordCapacity)
        } catch {
            munmap(arena, Self.mappedSize(byteCapacity))
            throw error
        }
        self.arena = arena
    }

    deinit {
        munmap(UnsafeMutableRawPointer(records), Self.mappedSize(recordCapacity * MemoryLayout<Record>.stride))
        munmap(arena, Self.mappedSize(byteCapacity))
    }

    /// Anonymous memory reserved at start and committed by use. The reservation fails at start when the
    /// kernel will not grant it (strict overcommit, address-space limits), so a sensor that cannot have
    /// its ring says so before capturing. Pages are not touched here: measured on the benchmark capture,
    /// pre-touching 88 MiB (arena and records) cost the pipeline +15% CPU (+23% with `MADV_HUGEPAGE`,
    /// whose synchronous compaction stalls), against +8% for letting the first fill fault the pages in
    /// (transparent huge pages, where enabled, then cover them 2 MiB at a time). Size `MemoryMax=` for
    /// the full ring: it is all resident once traffic has filled it.
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

    /// Copies one frame in. The per-packet path: a memcpy and a record store.
    @inline(__always)
    public func append(timestamp: Timestamp, wireLength: Int, linkType: LinkType, frame: UnsafeRawBufferPointer) {
        let length = min(frame.count, snapLength)
        if length < frame.count { counters.truncated &+= 1 }
        // Age bound (packet clock; input may be slightly out of order, so compare with this packet).
        let oldestAllowed = timestamp.nanoseconds &- maxAge.nanoseconds
        while count > 0 && records[head].timestamp < oldestAllowed {
            dropOldest(); counters.evictedForAge &+= 1
        }
        if count == recordCapacity { dropOldest(); counters.evictedForCount &+= 1 }
        if writeOffset + length > byteCapacity {
            // Wrap: everything from here to the end is the oldest data in ring order.
            while count > 0 && Int(records[head].offset) >= writeOffset { dropOldest(); counters.evictedForSpace &+= 1 }
            writeOffset = 0
        }
        while count > 0 && Int(records[head].offset) >= writeOffset && Int(records[head].offset) < writeOffset + length {
            dropOldest(); counters.evictedForSpace &+= 1
        }
        if count == 0 { writeOffset = 0 }
        if length > 0, let base = frame.baseAddress {
            (arena + writeOffset).copyMemory(from: base, byteCount: length)
        }
        var slot = head + count
        if slot >= recordCapacity { slot -= recordCapacity }
        (records + slot).initialize(to: Record(timestamp: timestamp.nanoseconds, wireLength: UInt32(clamping: wireLength), linkType: linkType.rawValue,
                                              offset: UInt32(truncatingIfNeeded: writeOffset), length: UInt32(truncatingIfNeeded: length)))
        count += 1
        writeOffset += length
        counters.stored &+= 1
    }

    @inline(__always)
    func dropOldest() {
        head += 1
        if head == recordCapacity { head = 0 }
        count -= 1
    }

    /// Visits stored packets oldest first (alerts are rare; this is not the packet path).
    public func forEach(_ body: (Frame) throws -> Void) rethrows {
        var i = head
        for _ in 0..<count {
            let r = records[i]
            try body(Frame(timestamp: Timestamp(nanoseconds: r.timestamp), wireLength: Int(r.wireLength), linkType: LinkType(rawValue: r.linkType),
                           bytes: UnsafeRawBufferPointer(start: arena + Int(r.offset), count: Int(r.length))))
            i += 1
            if i == recordCapacity { i = 0 }
        }
    }

    /// Bytes of frame data currently held.
    public var storedBytes: Int {
        var n = 0
        forEach { n += $0.bytes.count }
        return n
    }

    public var oldest: Timestamp? { count > 0 ? Timestamp(nanoseconds: records[head].timestamp) : nil }
}
