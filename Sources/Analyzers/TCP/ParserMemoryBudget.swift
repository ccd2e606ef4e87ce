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
/// for as long as the buffer exists (the charge goes back in `deinit`, so no drop path can leak it).
/// Storage grows geometrically from what is held, never reserved ahead.
final class ParserBuffer {
    /// This object, the array's header and the allocator's rounding, per buffer.
    static let overhead = 96
    let budget: ParserMemoryBudget
    private(set) var bytes: [UInt8] = []
    private var charged: Int

    /// A buffer holding `data`, or nil (counted) when the budget cannot take it.
    init?(budget: ParserMemoryBudget, holding data: UnsafeRawBufferPointer) {
        let want = max(data.count, 16)
        guard budget.charge(ParserBuffer.overhead + want) else { return nil }
        self.budget = budget
        bytes.reserveCapacity(want)
        charged = ParserBuffer.overhead + want
        if bytes.capacity > want { budget.chargeUnchecked(bytes.capacity - want); charged += bytes.capacity - want }
        bytes.append(contentsOf: data)
    }

    deinit { budget.release(charged) }

    var count: Int { bytes.count }
    var isEmpty: Bool { bytes.isEmpty }
    subscript(i: Int) -> UInt8 { bytes[i] }

    /// Appends `data`; false (nothing appended, counted) when the budget refuses the growth.
    func append(_ data: UnsafeRawBufferPointer) -> Bool {
        let need = bytes.count + data.count
        if need > bytes.capacity {
            let old = bytes.capacity
            let want = max(need, old * 2, 16)
            guard budget.charge(want - old) else { return false }
            bytes.reserveCapacity(want)
            charged += want - old
            if bytes.capacity > want { budget.chargeUnchecked(bytes.capacity - want); charged += bytes.capacity - want }
        }
        bytes.append(contentsOf: data)
        return true
    }

    func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R { try bytes.withUnsafeBytes(body) }
}
