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
///
/// The two sides run on different cores, so what each writes sits on cache lines of its own (`Lines`):
/// the published `tail`, the producer's private indices, the released `head`, the consumer's private
/// indices. Hot paths use the `Producer` and `Consumer` handles, plain values holding pointers: no
/// reference count is touched per record (the object's header line would otherwise bounce between the
/// cores on every retain and release).
public final class SPSCByteRing: @unchecked Sendable {
    /// Bytes of ring memory (a power of two, at least 4 KiB).
    public let capacity: Int
    /// The largest payload one record can carry (a quarter of the ring, so a full-size record always
    /// fits once the consumer catches up, wherever the skip marker falls).
    public let maxRecord: Int
    let buffer: UnsafeMutableRawPointer
    let lines: UnsafeMutableRawPointer
    /// The producer's side (use it from the producing thread only).
    public let producer: Producer
    /// The consumer's side (use it from the consuming thread only).
    public let consumer: Consumer

    @usableFromInline static let headerSize = 8
    @usableFromInline static let skipMarker = UInt32.max

    /// Byte offsets of the state in `lines`, 128 apart (a line and the one the adjacent-line prefetcher
    /// pulls with it).
    enum Lines {
        static let published = 0  // tail, pushed and dropped counters: producer writes, consumer reads
        static let producer = 128
        static let released = 256  // head: consumer writes, producer reads
        static let consumer = 384
        static let size = 512
    }

    /// `capacity` is rounded up to a power of two (minimum 4 KiB).
    public init(capacity requested: Int) {
        var c = 4096
        while c < requested { c <<= 1 }
        capacity = c
        maxRecord = c / 4 - Self.headerSize
        buffer = UnsafeMutableRawPointer.allocate(byteCount: c, alignment: 64)
        buffer.initializeMemory(as: UInt8.self, repeating: 0, count: c)
        lines = UnsafeMutableRawPointer.allocate(byteCount: Lines.size, alignment: 128)
        lines.initializeMemory(as: UInt8.self, repeating: 0, count: Lines.size)
        let published = lines + Lines.published
        let tail = published.bindMemory(to: Atomic<Int>.self, capacity: 1)
        tail.initialize(to: Atomic(0))
        let pushed = (published + 8).bindMemory(to: Atomic<UInt64>.self, capacity: 1)
        pushed.initialize(to: Atomic(0))
        let dropped = (published + 16).bindMemory(to: Atomic<UInt64>.self, capacity: 1)
        dropped.initialize(to: Atomic(0))
        let head = (lines + Lines.released).bindMemory(to: Atomic<Int>.self, capacity: 1)
        head.initialize(to: Atomic(0))
        let ps = (lines + Lines.producer).bindMemory(to: Producer.State.self, capacity: 1)
        ps.initialize(to: Producer.State())
        let cs = (lines + Lines.consumer).bindMemory(to: Consumer.State.self, capacity: 1)
        cs.initialize(to: Consumer.State())
        producer = Producer(buffer: buffer, capacity: c, maxRecord: maxRecord, tail: tail, head: head,
                            pushedAtomic: pushed, droppedAtomic: dropped, state: ps)
        consumer = Consumer(buffer: buffer, capacity: c, tail: tail, head: head, state: cs)
    }

    deinit {
        buffer.deallocate()
        lines.deallocate()
    }

    @inline(__always) @usableFromInline static func align8(_ n: Int) -> Int { (n + 7) & ~7 }

    /// Records dropped so far (any thread).
    public var droppedCount: UInt64 { producer.droppedAtomic.pointee.load(ordering: .relaxed) }
    /// Records pushed so far and published (any thread).
    public var pushedCount: UInt64 { producer.pushedAtomic.pointee.load(ordering: .relaxed) }

    // The producer's and consumer's operations on the ring itself, for callers off the hot path.
    @discardableResult public func push(_ bytes: UnsafeRawBufferPointer) -> Bool { producer.push(bytes) }
    public func write(_ head: UnsafeRawBufferPointer, _ body: UnsafeRawBufferPointer) -> Bool { producer.write(head, body) }
    public func publish() { producer.publish() }
    public func peek() -> UnsafeRawBufferPointer? { consumer.peek() }
    public func pop() { consumer.pop() }
    public func skip() { consumer.skip() }
    public func release() { consumer.release() }
    /// True when nothing is waiting (consumer side).
    public var isEmpty: Bool { consumer.peek() == nil }

    /// The producing thread's handle. Valid while its ring lives.
    public struct Producer {
        @usableFromInline struct State {
            @usableFromInline var tail = 0
            @usableFromInline var cachedHead = 0
            @usableFromInline var pushed: UInt64 = 0
            @usableFromInline var published: UInt64 = 0
            @usableFromInline var dropped: UInt64 = 0
        }
        @usableFromInline let buffer: UnsafeMutableRawPointer
        @usableFromInline let capacity: Int
        @usableFromInline let maxRecord: Int
        @usableFromInline let tail: UnsafeMutablePointer<Atomic<Int>>
        @usableFromInline let head: UnsafeMutablePointer<Atomic<Int>>
        @usableFromInline let pushedAtomic: UnsafeMutablePointer<Atomic<UInt64>>
        @usableFromInline let droppedAtomic: UnsafeMutablePointer<Atomic<UInt64>>
        @usableFromInline let state: UnsafeMutablePointer<State>

        /// Copies `bytes` in as one record and publishes it. Returns false (and counts a drop) when the
        /// ring has no room or the record is larger than `maxRecord`.
        @discardableResult
        public func push(_ bytes: UnsafeRawBufferPointer) -> Bool {
            guard write(bytes, UnsafeRawBufferPointer(start: nil, count: 0)) else { return drop() }
            publish()
            return true
        }

        /// Copies `head` then `body` in as one record without publishing it (a batch: call `publish()`
        /// once after several). Returns false, counting nothing, when the record does not fit now, so
        /// a producer that must not lose records (offline replay) can publish, wait and retry.
        @inlinable @inline(__always)
        public func write(_ head: UnsafeRawBufferPointer, _ body: UnsafeRawBufferPointer) -> Bool {
            let payload = head.count + body.count
            guard payload <= maxRecord else { return false }
            let size = SPSCByteRing.headerSize + SPSCByteRing.align8(payload)
            let mask = capacity - 1
            var start = state.pointee.tail
            let offset = start & mask
            let untilEnd = capacity - offset
            let needed = size <= untilEnd ? size : untilEnd + size
            if start + needed - state.pointee.cachedHead > capacity {
                state.pointee.cachedHead = self.head.pointee.load(ordering: .acquiring)
                if start + needed - state.pointee.cachedHead > capacity { return false }
            }
            if size > untilEnd {
                buffer.storeBytes(of: SPSCByteRing.skipMarker, toByteOffset: offset, as: UInt32.self)
                start += untilEnd
            }
            let o = start & mask
            buffer.storeBytes(of: UInt32(payload), toByteOffset: o, as: UInt32.self)
            if head.count > 0 { (buffer + o + SPSCByteRing.headerSize).copyMemory(from: head.baseAddress!, byteCount: head.count) }
            if body.count > 0 { (buffer + o + SPSCByteRing.headerSize + head.count).copyMemory(from: body.baseAddress!, byteCount: body.count) }
            state.pointee.tail = start + size
            state.pointee.pushed &+= 1
            return true
        }

        /// Bytes written so far (a monotonic position: published or not).
        @inlinable @inline(__always)
        public var position: Int { state.pointee.tail }

        /// The consumer's position when this side last looked (what `write` knows to be free).
        @inlinable @inline(__always)
        public var seenReleased: Int { state.pointee.cachedHead }

        /// Records written since the last `publish`.
        @inlinable @inline(__always)
        public var unpublished: UInt64 { state.pointee.pushed &- state.pointee.published }

        /// Makes every record written so far visible to the consumer (one release store).
        @inlinable @inline(__always)
        public func publish() {
            tail.pointee.store(state.pointee.tail, ordering: .releasing)
            state.pointee.published = state.pointee.pushed
            pushedAtomic.pointee.store(state.pointee.pushed, ordering: .relaxed)
        }

        @inline(never) func drop() -> Bool {
            state.pointee.dropped &+= 1
            droppedAtomic.pointee.store(state.pointee.dropped, ordering: .relaxed)
            return false
        }
    }

    /// The consuming thread's handle. Valid while its ring lives.
    public struct Consumer {
        @usableFromInline struct State {
            @usableFromInline var head = 0
            @usableFromInline var cachedTail = 0
        }
        @usableFromInline let buffer: UnsafeMutableRawPointer
        @usableFromInline let capacity: Int
        @usableFromInline let tail: UnsafeMutablePointer<Atomic<Int>>
        @usableFromInline let head: UnsafeMutablePointer<Atomic<Int>>
        @usableFromInline let state: UnsafeMutablePointer<State>

        /// Bytes consumed so far (a monotonic position: released or not).
        @inlinable @inline(__always)
        public var position: Int { state.pointee.head }

        /// The oldest record's payload, or nil when the ring is empty. Valid until `pop()`.
        @inlinable @inline(__always)
        public func peek() -> UnsafeRawBufferPointer? {
            if state.pointee.head == state.pointee.cachedTail {
                state.pointee.cachedTail = tail.pointee.load(ordering: .acquiring)
                if state.pointee.head == state.pointee.cachedTail { return nil }
            }
            let mask = capacity - 1
            var o = state.pointee.head & mask
            var length = buffer.load(fromByteOffset: o, as: UInt32.self)
            if length == SPSCByteRing.skipMarker {
                state.pointee.head += capacity - o
                o = 0
                // The record after a skip marker was published with the same release store.
                length = buffer.load(fromByteOffset: 0, as: UInt32.self)
            }
            return UnsafeRawBufferPointer(start: buffer + o + SPSCByteRing.headerSize, count: Int(length))
        }

        /// Releases the record `peek()` returned.
        @inlinable @inline(__always)
        public func pop() {
            skip()
            release()
        }

        /// Moves past the record `peek()` returned without handing its space back yet (a batch: call
        /// `release()` once after several).
        @inlinable @inline(__always)
        public func skip() {
            let o = state.pointee.head & (capacity - 1)
            let length = buffer.load(fromByteOffset: o, as: UInt32.self)
            precondition(length != SPSCByteRing.skipMarker, "skip() without peek()")
            state.pointee.head += SPSCByteRing.headerSize + SPSCByteRing.align8(Int(length))
        }

        /// Hands the space of every record skipped so far back to the producer (one release store).
        @inlinable @inline(__always)
        public func release() {
            head.pointee.store(state.pointee.head, ordering: .releasing)
        }
    }
}
