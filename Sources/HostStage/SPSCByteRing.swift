import Synchronization

/// A bounded single-producer/single-consumer ring of variable-length byte records.
///
/// One worker thread pushes, one aggregator thread pops; neither locks nor allocates after `init`.
/// Indices are monotonic byte counts (`tail` written only by the producer, `head` only by the consumer);
/// the producer publishes a record with a release store of `tail` after writing its bytes, and the
/// consumer acquires `tail` before reading them (and symmetrically for `head`, so the producer never
/// overwrites bytes still being read). Each side caches the other's index and reloads it only when the
/// cached value says the ring is full (producer) or empty (consumer), so the common case costs one
/// atomic store per push or pop.
///
/// Layout: every record starts on an 8-byte boundary with an 8-byte header (`UInt32` payload length,
/// 4 bytes padding) followed by the payload, rounded up to 8. A record never wraps: when it does not fit
/// before the end of the buffer, the producer writes a skip marker (length `UInt32.max`) there and starts
/// the record at offset 0. A push that finds no room is dropped and counted (`dropped`): the producer
/// must never wait for the consumer, since it is a capture thread that would then lose packets instead.
/// Offline (replay with several workers) nothing may be lost, so producers there use `write` (which
/// refuses without counting) and wait; `write`/`publish` and `skip`/`release` also batch the atomic stores.
public final class SPSCByteRing: @unchecked Sendable {
    /// Bytes of ring memory (a power of two, at least 4 KiB).
    public let capacity: Int
    /// The largest payload one record can carry (a quarter of the ring, so a full-size record always
    /// fits once the consumer catches up, wherever the skip marker falls).
    public let maxRecord: Int
    let mask: Int
    let buffer: UnsafeMutableRawPointer
    let tail = Atomic<Int>(0)
    let head = Atomic<Int>(0)
    // Producer-side state (only the producer thread touches these).
    var producerTail = 0
    var cachedHead = 0
    /// Records dropped because the ring was full (producer side; read it from the producer thread or
    /// through `droppedCount` from any thread).
    let droppedAtomic = Atomic<UInt64>(0)
    let pushedAtomic = Atomic<UInt64>(0)
    var dropped: UInt64 = 0
    var pushed: UInt64 = 0
    // Consumer-side state.
    var consumerHead = 0
    var cachedTail = 0

    static let headerSize = 8
    static let skipMarker = UInt32.max

    /// `capacity` is rounded up to a power of two (minimum 4 KiB).
    public init(capacity requested: Int) {
        var c = 4096
        while c < requested { c <<= 1 }
        capacity = c
        mask = c - 1
        maxRecord = c / 4 - Self.headerSize
        buffer = UnsafeMutableRawPointer.allocate(byteCount: c, alignment: 64)
        buffer.initializeMemory(as: UInt8.self, repeating: 0, count: c)
    }

    deinit { buffer.deallocate() }

    @inline(__always) static func align8(_ n: Int) -> Int { (n + 7) & ~7 }

    // MARK: Producer

    /// Copies `bytes` in as one record. Returns false (and counts a drop) when the ring has no room or
    /// the record is larger than `maxRecord`.
    @discardableResult
    public func push(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard write(bytes, UnsafeRawBufferPointer(start: nil, count: 0)) else { return drop() }
        publish()
        return true
    }

    /// Copies `head` then `body` in as one record without publishing it (a batch: call `publish()`
    /// once after several). Returns false, counting nothing, when the record does not fit now, so
    /// a producer that must not lose records (offline replay) can publish, wait and retry.
    @inline(__always)
    public func write(_ head: UnsafeRawBufferPointer, _ body: UnsafeRawBufferPointer) -> Bool {
        let payload = head.count + body.count
        guard payload <= maxRecord else { return false }
        let size = Self.headerSize + Self.align8(payload)
        var start = producerTail
        let offset = start & mask
        let untilEnd = capacity - offset
        let needed = size <= untilEnd ? size : untilEnd + size
        if producerTail + needed - cachedHead > capacity {
            cachedHead = self.head.load(ordering: .acquiring)
            if producerTail + needed - cachedHead > capacity { return false }
        }
        if size > untilEnd {
            buffer.storeBytes(of: Self.skipMarker, toByteOffset: offset, as: UInt32.self)
            start += untilEnd
        }
        let o = start & mask
        buffer.storeBytes(of: UInt32(payload), toByteOffset: o, as: UInt32.self)
        if head.count > 0 { (buffer + o + Self.headerSize).copyMemory(from: head.baseAddress!, byteCount: head.count) }
        if body.count > 0 { (buffer + o + Self.headerSize + head.count).copyMemory(from: body.baseAddress!, byteCount: body.count) }
        producerTail = start + size
        pushed &+= 1
        return true
    }

    /// Makes every record written so far visible to the consumer (one release store).
    @inline(__always)
    public func publish() {
        tail.store(producerTail, ordering: .releasing)
        pushedAtomic.store(pushed, ordering: .relaxed)
    }

    @inline(never) func drop() -> Bool {
        dropped &+= 1
        droppedAtomic.store(dropped, ordering: .relaxed)
        return false
    }

    /// Records dropped so far (any thread).
    public var droppedCount: UInt64 { droppedAtomic.load(ordering: .relaxed) }
    /// Records pushed so far (any thread).
    public var pushedCount: UInt64 { pushedAtomic.load(ordering: .relaxed) }

    // MARK: Consumer

    /// The oldest record's payload, or nil when the ring is empty. Valid until `pop()`.
    public func peek() -> UnsafeRawBufferPointer? {
        if consumerHead == cachedTail {
            cachedTail = tail.load(ordering: .acquiring)
            if consumerHead == cachedTail { return nil }
        }
        var o = consumerHead & mask
        var length = buffer.load(fromByteOffset: o, as: UInt32.self)
        if length == Self.skipMarker {
            consumerHead += capacity - o
            o = 0
            // The record after a skip marker was published with the same release store.
            length = buffer.load(fromByteOffset: 0, as: UInt32.self)
        }
        return UnsafeRawBufferPointer(start: buffer + o + Self.headerSize, count: Int(length))
    }

    /// Releases the record `peek()` returned.
    public func pop() {
        skip()
        release()
    }

    /// Moves past the record `peek()` returned without handing its space back yet (a batch: call
    /// `release()` once after several).
    @inline(__always)
    public func skip() {
        let o = consumerHead & mask
        let length = buffer.load(fromByteOffset: o, as: UInt32.self)
        precondition(length != Self.skipMarker, "skip() without peek()")
        consumerHead += Self.headerSize + Self.align8(Int(length))
    }

    /// Hands the space of every record skipped so far back to the producer (one release store).
    @inline(__always)
    public func release() {
        head.store(consumerHead, ordering: .releasing)
    }

    /// True when nothing is waiting (consumer side).
    public var isEmpty: Bool { peek() == nil }
}
