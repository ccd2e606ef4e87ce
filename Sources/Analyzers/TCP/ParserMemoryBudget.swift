/// One worker's bound on the bytes its stream parsers keep between segments (TLS and HTTP heads,
/// SMB/DCE-RPC/Kerberos messages, DNS-over-TCP messages), shared by every analyser of that worker.
///
/// Per-flow limits alone do not bound a worker: 500k flows that each open with a partial record would
/// each keep a buffer. Buffers are `ParserBuffer`s, charged here for their real footprint (storage
/// capacity plus object overhead) while they exist; when a charge would pass the limit, the parse of
/// that flow direction gives up (`refusals`) and the flow is still reported.
public final class ParserMemoryBudget {
    public static let defaultLimit = 64 << 20
    public let limit: Int
    /// Bytes charged by live buffers.
    public private(set) var used = 0
    public private(set) var peak = 0
    /// Buffers that could not grow (or be made): a parse gave up.
    public private(set) var refusals: UInt64 = 0

    public init(limit: Int = ParserMemoryBudget.defaultLimit) { self.limit = max(0, limit) }

    /// Takes `n` bytes if they fit.
    func charge(_ n: Int) -> Bool {
        guard n <= limit - used else {
            refusals &+= 1
            return false
        }
        used += n
        if used > peak { peak = used }
        return true
    }

    /// Takes `n` bytes the allocator added beyond what was asked for (rounding): already spent, so not refused.
    func chargeUnchecked(_ n: Int) {
        used += n
        if used > peak { peak = used }
    }

    func release(_ n: Int) { used -= n }
}

/// Bytes a parser keeps between segments of one direction, charged to the worker's `ParserMemoryBudget`
/// for as long as its storage exists (the charge goes back when the storage is freed, so no drop path can
/// leak it). One allocation per buffer, sized from what it holds and grown geometrically.
/// A handle: a parser owns its buffer and never copies it.
struct ParserBuffer {
    private var storage: ParserBufferStorage

    /// A buffer holding `data`, or nil (counted) when the budget cannot take it.
    init?(budget: ParserMemoryBudget, holding data: UnsafeRawBufferPointer) {
        guard let s = ParserBufferStorage.make(budget: budget, capacity: data.count, copying: UnsafeRawBufferPointer(start: nil, count: 0)) else { return nil }
        storage = s
        storage.append(data)
    }

    var count: Int { storage.header.count }
    subscript(i: Int) -> UInt8 {
        precondition(i >= 0 && i < count)
        return storage.withUnsafeMutablePointerToElements { $0[i] }
    }

    /// Appends `data`; false (nothing appended, counted) when the budget refuses the growth.
    mutating func append(_ data: UnsafeRawBufferPointer) -> Bool {
        let need = count + data.count
        if need > storage.capacity {
            let grown = withUnsafeBytes { held in
                ParserBufferStorage.make(budget: storage.header.budget, capacity: max(need, storage.capacity * 2), copying: held)
            }
            guard let bigger = grown else { return false }
            storage = bigger
        }
        storage.append(data)
        return true
    }

    func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try storage.withUnsafeMutablePointerToElements { try body(UnsafeRawBufferPointer(start: $0, count: storage.header.count)) }
    }
}

final class ParserBufferStorage: ManagedBuffer<ParserBufferStorage.Header, UInt8> {
    struct Header {
        let budget: ParserMemoryBudget
        var count: Int
        var charged: Int
    }

    /// The object header and fields the allocator adds to the bytes.
    static let overhead = 48

    static func make(budget: ParserMemoryBudget, capacity: Int, copying held: UnsafeRawBufferPointer) -> ParserBufferStorage? {
        guard budget.charge(overhead + capacity) else { return nil }
        let s = unsafeDowncast(create(minimumCapacity: capacity) { _ in Header(budget: budget, count: 0, charged: overhead + capacity) },
                               to: ParserBufferStorage.self)
        // The allocator may round up: that memory is spent too.
        let extra = s.capacity - capacity
        if extra > 0 {
            budget.chargeUnchecked(extra)
            s.header.charged += extra
        }
        s.append(held)
        return s
    }

    func append(_ data: UnsafeRawBufferPointer) {
        guard !data.isEmpty else { return }
        withUnsafeMutablePointers { h, e in
            UnsafeMutableRawPointer(e + h.pointee.count).copyMemory(from: data.baseAddress!, byteCount: data.count)
            h.pointee.count += data.count
        }
    }

    deinit { header.budget.release(header.charged) }
}
