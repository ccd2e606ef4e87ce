/// Calls into a fixed list of objects without reference counting, for paths that run per packet or per
/// event.
///
/// Why this exists: calling through an object or existential loaded from an array makes Swift retain and
/// release it around every call (the array could change during the call), one atomic pair per object per
/// call, and an object referenced weakly anywhere takes the runtime's slower side-table path for both.
/// Here the objects are kept as `Unmanaged` references in a plain buffer, so a call loads a pointer and
/// makes one virtual call (the technique `PacketConsumer` uses for libpcap's callback). The objects are
/// typically small typed boxes that open an existential once, at set-up, so each calls its concrete type.
/// Non-copyable, so the owner reads it in place (no reference count either) and the buffer is freed
/// exactly once; it holds the objects, so none is freed while it lives.
public struct UnretainedCalls<Box: AnyObject>: ~Copyable {
    /// Owns the objects the buffer refers to.
    @usableFromInline let objects: [Box]
    @usableFromInline let refs: UnsafeMutableBufferPointer<Unmanaged<Box>>

    public init(_ objects: [Box]) {
        self.objects = objects
        refs = .allocate(capacity: objects.count)
        for (i, b) in objects.enumerated() { refs[i] = .passUnretained(b) }
    }

    deinit { refs.deallocate() }

    /// The list with `box` added at the end, for owners that gain objects one at a time at set-up
    /// (it copies the list).
    public func appending(_ box: Box) -> UnretainedCalls<Box> { UnretainedCalls(objects + [box]) }

    @inlinable public var count: Int { refs.count }
    @inlinable public var isEmpty: Bool { refs.isEmpty }

    /// `body` with the `i`th object, unretained.
    @inlinable @inline(__always)
    public func with<R>(_ i: Int, _ body: (Box) -> R) -> R { refs[i]._withUnsafeGuaranteedRef(body) }

    /// `body` with each object, in order, unretained.
    @inlinable @inline(__always)
    public func forEach(_ body: (Box) -> Void) {
        for r in refs { r._withUnsafeGuaranteedRef(body) }
    }
}
