import CSensorShims
import Synchronization

/// Lets either side of one offline fanout ring sleep until the other has made enough progress, instead
/// of spinning: `replay --workers N` runs N + 2 busy threads (reader, workers, host stage), more than a
/// small machine has cores, and a thread that yields or naps in a loop takes the core a worker needs
/// (and thousands of context switches a second).
///
/// Each side spins briefly, then announces what it waits for (the position the other side must reach)
/// and sleeps on a futex word; the other side looks at that word after each batch it publishes or
/// releases (one fence and one load per batch of records) and wakes the sleeper only when the position is
/// reached, so a sleeper is woken once per large step, not per batch. The reader also wakes sleeping
/// workers outright whenever it publishes every ring (end of a read batch, before it waits, at the end).
/// Sleeps are bounded (`wait`), so a lost race costs at most that much time, never a hang.
///
/// A value holding a pointer (no reference counting on the per-batch path); `FanoutDoorbells` owns the
/// memory.
struct FanoutDoorbell {
    /// Two lines 128 bytes apart: the consumer's sleep word and wake position (written by the consumer
    /// when it goes to sleep, read by the producer per batch), then the producer's.
    let base: UnsafeMutableRawPointer
    static let size = 256

    var consumerSleeping: UnsafeMutablePointer<Atomic<UInt32>> { base.assumingMemoryBound(to: Atomic<UInt32>.self) }
    var consumerWakeAt: UnsafeMutablePointer<Atomic<Int>> { (base + 8).assumingMemoryBound(to: Atomic<Int>.self) }
    var producerSleeping: UnsafeMutablePointer<Atomic<UInt32>> { (base + 128).assumingMemoryBound(to: Atomic<UInt32>.self) }
    var producerWakeAt: UnsafeMutablePointer<Atomic<Int>> { (base + 136).assumingMemoryBound(to: Atomic<Int>.self) }

    /// Spin rounds (CPU pause hints, a few microseconds) before a side sleeps.
    static let spins = 64
    /// The longest sleep: a side looks again after it whatever happened (the reader, which also has
    /// clock records to hand other workers while it waits, retries that often).
    static let wait: Int64 = 1_000_000

    // MARK: Producer (the reader)

    /// After a publish that reached `position`: wakes the consumer when it sleeps and waits for that
    /// position (or at once with `force`).
    @inline(__always) func published(at position: Int, force: Bool) {
        wakeIfWaiting(consumerSleeping, consumerWakeAt, reached: position, force: force)
    }

    /// Sleeps until the consumer has released up to `position` (or `wait` passed), unless `ready`
    /// (checked after the announcement, so a release in between is not missed) already holds.
    func producerSleep(until position: Int, unless ready: () -> Bool) {
        sleep(on: producerSleeping, wakeAt: producerWakeAt, position: position, unless: ready)
    }

    // MARK: Consumer (a worker)

    /// After a release that reached `position`: wakes the producer when it sleeps and waits for that
    /// position (or at once with `force`).
    @inline(__always) func released(at position: Int, force: Bool) {
        wakeIfWaiting(producerSleeping, producerWakeAt, reached: position, force: force)
    }

    /// Sleeps until the producer has published up to `position` (or `wait` passed), unless `ready`.
    func consumerSleep(until position: Int, unless ready: () -> Bool) {
        sleep(on: consumerSleeping, wakeAt: consumerWakeAt, position: position, unless: ready)
    }

    // MARK: Both

    /// This side's progress against the other's sleep: the fence orders the publish or release before
    /// the look at the word (the sleeper fences its announcement before its last look at the ring).
    @inline(__always) func wakeIfWaiting(_ word: UnsafeMutablePointer<Atomic<UInt32>>, _ wakeAt: UnsafeMutablePointer<Atomic<Int>>,
                                         reached position: Int, force: Bool) {
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        guard word.pointee.load(ordering: .relaxed) != 0 else { return }
        if force || position >= wakeAt.pointee.load(ordering: .relaxed) { wake(word) }
    }

    @inline(never) func wake(_ word: UnsafeMutablePointer<Atomic<UInt32>>) {
        // Only the waker clears the word, so one sleep costs at most one wake system call.
        guard word.pointee.exchange(0, ordering: .relaxed) != 0 else { return }
        _ = csensor_futex_wake(UnsafeMutableRawPointer(word).assumingMemoryBound(to: UInt32.self), 1)
    }

    @inline(never) func sleep(on word: UnsafeMutablePointer<Atomic<UInt32>>, wakeAt: UnsafeMutablePointer<Atomic<Int>>,
                              position: Int, unless ready: () -> Bool) {
        wakeAt.pointee.store(position, ordering: .relaxed)
        word.pointee.store(1, ordering: .relaxed)
        // Announcement before the second look; the other side's publish or release before its look at
        // the word: one of the two sees the other.
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        if !ready() {
            _ = csensor_futex_wait(UnsafeMutableRawPointer(word).assumingMemoryBound(to: UInt32.self), 1, Self.wait)
        }
        word.pointee.store(0, ordering: .relaxed)
    }

    /// A short spin before sleeping: true as soon as `ready` holds.
    @inline(__always) static func spin(until ready: () -> Bool) -> Bool {
        for _ in 0..<spins {
            csensor_cpu_relax()
            if ready() { return true }
        }
        return false
    }
}

/// The doorbells of every ring of one fanout, on memory of their own (away from the rings' state).
final class FanoutDoorbells: @unchecked Sendable {
    let memory: UnsafeMutableRawPointer
    let bells: [FanoutDoorbell]

    init(count: Int) {
        let memory = UnsafeMutableRawPointer.allocate(byteCount: count * FanoutDoorbell.size, alignment: 128)
        memory.initializeMemory(as: UInt8.self, repeating: 0, count: count * FanoutDoorbell.size)
        self.memory = memory
        bells = (0..<count).map { i in
            let base = memory + i * FanoutDoorbell.size
            for o in [0, 128] {
                (base + o).bindMemory(to: Atomic<UInt32>.self, capacity: 1).initialize(to: Atomic(0))
                (base + o + 8).bindMemory(to: Atomic<Int>.self, capacity: 1).initialize(to: Atomic(0))
            }
            return FanoutDoorbell(base: base)
        }
    }

    deinit { memory.deallocate() }
}
