import Events
import PacketCore

/// What a stream consumer wants after seeing some bytes.
public enum StreamVerdict: Sendable {
    /// Keep delivering this direction.
    case more
    /// Stop delivering this direction (e.g. the handshake of interest is over).
    case doneWithDirection
    /// Stop delivering both directions of this flow.
    case doneWithFlow
}

/// An application analyser fed with in-order TCP bytes (DNS over TCP, SMB, DCE-RPC, TLS, HTTP, …).
///
/// Consumers keep their own per-flow state in side tables indexed by `slot`, reset in `streamStarted`.
public protocol StreamConsumer: AnyObject {
    var name: String { get }
    /// Asked once per flow at its first payload byte: does this consumer want the flow's streams?
    /// `payload` is that first segment (either direction), for content-based identification.
    func wantsStream(_ flow: FlowRecord, slot: Int32, firstPayload: UnsafeRawBufferPointer, fromOriginator: Bool) -> Bool
    /// In-order bytes of one direction. `data` is valid only during the call (often libpcap's buffer).
    func stream(_ data: UnsafeRawBufferPointer, fromOriginator: Bool, slot: Int32, flows: FlowTable, at time: Timestamp) -> StreamVerdict
    /// Bytes in that direction were lost (capture loss or budget): in-order analysis of it ends here.
    func gap(fromOriginator: Bool, slot: Int32, flows: FlowTable, at time: Timestamp)
    /// The flow ended; release per-slot state.
    func streamEnded(_ flow: FlowRecord, slot: Int32)
    /// Whether the consumer can pick up again after a gap (it realigns on its own message boundaries, as
    /// DCE-RPC and SMB can). Such consumers get `gap` and then the bytes after the hole; others stop there.
    var resumesAfterGap: Bool { get }
    /// Adds this consumer's facts to the flow's vendor object (`spanwatch.smb.*`, `spanwatch.dce_rpc.*`, …); called
    /// before `streamEnded`.
    /// (Named apart from `PacketAnalyzer.contributeFlowFields` so a class can be both without ambiguity.)
    func contributeStreamFields(_ flow: FlowRecord, slot: Int32, into writer: inout JSONWriter)
}

/// A stream consumer with counters of its own for `spanwatch.stats` (written after the reassembly's).
public protocol StreamStatistics {
    func writeStatistics(into writer: inout JSONWriter)
}

extension StreamConsumer {
    public var resumesAfterGap: Bool { false }
    public func contributeStreamFields(_ flow: FlowRecord, slot: Int32, into writer: inout JSONWriter) {}
}

/// The virtual-call base of the reassembler's `stream` calls; only `TypedStreamCallBox` derives from it.
class StreamCallBox {
    func stream(_ data: UnsafeRawBufferPointer, fromOriginator: Bool, slot: Int32, flows: FlowTable, at time: Timestamp) -> StreamVerdict {
        preconditionFailure("abstract")
    }
}

final class TypedStreamCallBox<C: StreamConsumer>: StreamCallBox {
    let consumer: C
    init(_ consumer: C) { self.consumer = consumer }
    override func stream(_ data: UnsafeRawBufferPointer, fromOriginator: Bool, slot: Int32, flows: FlowTable, at time: Timestamp) -> StreamVerdict {
        consumer.stream(data, fromOriginator: fromOriginator, slot: slot, flows: flows, at: time)
    }
}

/// Limits of stream reassembly. Held-byte bounds count real memory: whole 4 KiB pool blocks plus
/// per-direction bookkeeping (`HeldStream.memory`), not payload bytes.
public struct ReassemblyConfiguration: Sendable, Equatable {
    /// Bytes delivered per direction of a flow before it is no longer followed (analysers only need the start).
    public var maxBytesPerDirection: UInt32 = 4 << 20
    /// Memory held per flow (both directions) for out-of-order bytes waiting for a missing segment; also
    /// how far ahead of the expected sequence number a segment may lie to be held.
    public var maxPendingBytesPerFlow: Int = 256 << 10
    /// Distinct held ranges per flow (after coalescing): bounds the bookkeeping a scatter of tiny
    /// segments can cause, and the cost of keeping them sorted (an insertion moves at most this many).
    public var maxHeldSegmentsPerFlow: Int = 1024
    /// Memory held for out-of-order bytes across all flows of a worker (reserved as address space at
    /// start, resident only as used).
    public var maxPendingBytesTotal: Int = 64 << 20
    public init() {}
}

/// Counters of what reassembly skipped, published with the worker's statistics.
public struct ReassemblyCounters: Sendable, Equatable {
    public var deliveredBytes: UInt64 = 0
    public var retransmittedBytes: UInt64 = 0
    public var overlapBytes: UInt64 = 0
    public var outOfOrderSegments: UInt64 = 0
    public var gaps: UInt64 = 0
    public var budgetStops: UInt64 = 0
    /// Out-of-order segments not held because a bound was reached (the sum of the three below).
    public var pendingDropped: UInt64 = 0
    /// … because the flow's held memory or window (`maxPendingBytesPerFlow`) was full.
    public var heldFlowLimit: UInt64 = 0
    /// … because the flow held `maxHeldSegmentsPerFlow` separate ranges.
    public var heldSegmentLimit: UInt64 = 0
    /// … because the worker's held memory (`maxPendingBytesTotal`) was full.
    public var heldWorkerLimit: UInt64 = 0
    /// Holes declared because the peer acknowledged data the sensor never saw (capture loss).
    public var ackedHoles: UInt64 = 0
    /// Directions that continued after a gap for consumers that resume.
    public var resumedAfterGap: UInt64 = 0
    public init() {}
}

/// TCP stream reassembly shared by every application analyser (one instance per worker).
///
/// In order per direction: the common in-order segment is handed to consumers straight from libpcap's
/// buffer (no copy). Retransmissions are dropped, overlaps keep the bytes first seen, out-of-order
/// segments are copied into the direction's `HeldStream` (ordered, coalesced, in blocks of the worker's
/// `HeldBlockPool`) until the hole fills, then drained from the front; when a hole cannot fill (a bound,
/// or the flow ends) the direction gets a clean `gap` and is no longer followed. Sequence differences
/// are taken as `Int32(bitPattern:)`; a segment exactly 2^31 away (`Int32.min`) counts as behind, i.e.
/// old data. Works on flows whose handshake was missed (the first segment seen sets the sequence base).
/// Per-flow state is a fixed-size slot array sized to the flow table: nothing is allocated per packet
/// except on the out-of-order path, which is bounded per flow and in total, in real bytes.
/// The worker's `ParserMemoryBudget` lives here, as every stream parser of the worker hangs off it.
public final class StreamReassembler: PacketAnalyzer {
    public let name = "tcp-reassembly"
    public let configuration: ReassemblyConfiguration
    public private(set) var consumers: [any StreamConsumer] = []
    /// `stream` of each consumer through a typed box held unretained: the per-segment calls then cost no
    /// reference counting (see `PacketAnalyzerCalls`; an existential array element is retained and
    /// released around each call, every consumer's, even those the mask skips). The boxes own their consumers.
    private(set) var streamCalls = UnretainedCalls<StreamCallBox>([])
    public private(set) var counters = ReassemblyCounters()

    /// Per-slot, per-direction state (index slot*2 + dir, dir 0 = originator).
    struct Direction {
        var next: UInt32 = 0
        var delivered: UInt32 = 0
        var started = false
        var finished = false
        /// After a gap, the next segment seen sets `next` (like a midstream start).
        var resync = false
        /// Bit i: consumer i still wants this direction.
        var mask: UInt8 = 0
    }
    struct Slot {
        var generation: UInt32 = 0
        /// Bit i: consumer i follows this flow. 0 with `decided` = nobody does.
        var consumerMask: UInt8 = 0
        var decided = false
    }
    var slots: UnsafeMutablePointer<Slot>
    var directions: UnsafeMutablePointer<Direction>
    let capacity: Int
    /// Held out-of-order bytes, by direction index (slot*2 + dir); only directions with a hole.
    var pending: [Int: HeldStream] = [:]
    let pool: HeldBlockPool
    /// Real memory held across all flows (`HeldStream.memory` summed).
    public private(set) var heldBytes = 0
    public private(set) var heldBytesPeak = 0
    /// The bound on every stream parser's buffers in this worker (handed to consumers when they are made).
    public let parserBudget: ParserMemoryBudget
    /// The worker's file hashing (HTTP bodies, SMB reads and writes), handed to consumers like the
    /// budget; nil when files are off.
    public var fileHashing: FileHashing?

    public init(flowCapacity: Int, configuration: ReassemblyConfiguration = ReassemblyConfiguration(),
                parserBudget: ParserMemoryBudget = ParserMemoryBudget()) {
        self.configuration = configuration
        self.parserBudget = parserBudget
        pool = HeldBlockPool(maxBytes: configuration.maxPendingBytesTotal)
        capacity = max(16, flowCapacity)
        // Zero-filled, paged in on use: an all-zero Slot / Direction is a slot no flow has used (flow
        // generations start at 1), so a large flow capacity costs nothing until flows arrive.
        slots = ZeroFilledMemory.allocate(Slot.self, count: capacity)
        directions = ZeroFilledMemory.allocate(Direction.self, count: capacity * 2)
    }

    deinit {
        ZeroFilledMemory.deallocate(slots)
        ZeroFilledMemory.deallocate(directions)
    }

    /// Adds a consumer (at most 8 per worker).
    public func add(_ consumer: any StreamConsumer) {
        precondition(consumers.count < 8, "at most 8 stream consumers")
        consumers.append(consumer)
        streamCalls = streamCalls.appending(Self.box(consumer))
    }

    /// Opens the existential once, at set-up, so the box calls the concrete type.
    private static func box<C: StreamConsumer>(_ c: C) -> StreamCallBox { TypedStreamCallBox(c) }

    public var packetTransports: PacketTransports { .tcp }

    public func packet(_ context: PacketContext, flows: FlowTable) {
        guard context.packet.ipProtocol == IPProtocol.tcp, !consumers.isEmpty else { return }
        let s = Int(context.slot)
        guard s < capacity else { return }
        let generation = flows.generation(slot: context.slot)
        if slots[s].generation != generation {
            slots[s] = Slot(generation: generation)
            directions[s * 2] = Direction()
            directions[s * 2 + 1] = Direction()
        }
        if slots[s].decided && slots[s].consumerMask == 0 { return }
        let d = s * 2 + (context.fromOriginator ? 0 : 1)
        // The peer acknowledging beyond a hole in the other direction: those bytes were sent and received
        // but not captured, so the hole will never fill. Declare the gap now instead of waiting for budgets.
        if context.packet.tcpFlags.contains(.ack) {
            let o = d ^ 1
            // Cheap comparison first: in-order traffic never acknowledges past `next`.
            if directions[o].started && !directions[o].finished
                && Int32(bitPattern: context.packet.tcpAcknowledgement &- directions[o].next) > 0 && !pending.isEmpty,
               let held = pending[o], !held.isEmpty {
                counters.ackedHoles &+= 1
                signalGap(d: o, slot: context.slot, flows: flows, time: context.packet.timestamp)
            }
        }
        if directions[d].finished { return }
        var seq = context.packet.tcpSequence
        if context.packet.tcpFlags.contains(.syn) {
            directions[d].next = seq &+ 1
            directions[d].started = true
            seq &+= 1
        }
        let payload = context.payload
        // Only what was captured can be delivered; a snap-length cut is a gap.
        let claimed = max(0, context.packet.payloadLength)
        guard claimed > 0 else { return }
        if !slots[s].decided {
            slots[s].decided = true
            let flow = flows[context.slot]
            var mask: UInt8 = 0
            for (i, c) in consumers.enumerated() where c.wantsStream(flow, slot: context.slot, firstPayload: payload, fromOriginator: context.fromOriginator) {
                mask |= 1 << UInt8(i)
            }
            slots[s].consumerMask = mask
            directions[s * 2].mask = mask
            directions[s * 2 + 1].mask = mask
            if mask == 0 { return }
        }
        if !directions[d].started || directions[d].resync {
            directions[d].next = seq
            directions[d].started = true
            directions[d].resync = false
        }
        let next = directions[d].next
        let rel = Int32(bitPattern: seq &- next)
        if rel == 0 {
            deliver(payload, claimed: claimed, d: d, slot: context.slot, flows: flows, time: context.packet.timestamp)
            drainPending(d: d, slot: context.slot, flows: flows, time: context.packet.timestamp)
        } else if rel < 0 {
            // `magnitude`: at Int32.min the negation would overflow.
            let overlap = Int(rel.magnitude)
            if overlap >= claimed {
                counters.retransmittedBytes &+= UInt64(claimed)
            } else {
                counters.overlapBytes &+= UInt64(overlap)
                let tail = overlap < payload.count ? UnsafeRawBufferPointer(rebasing: payload[overlap...]) : UnsafeRawBufferPointer(start: nil, count: 0)
                deliver(tail, claimed: claimed - overlap, d: d, slot: context.slot, flows: flows, time: context.packet.timestamp)
                drainPending(d: d, slot: context.slot, flows: flows, time: context.packet.timestamp)
            }
        } else {
            storeOutOfOrder(payload, rel: Int(rel), d: d, slot: context.slot, flows: flows, time: context.packet.timestamp)
        }
    }

    /// Hands in-order bytes to the consumers following the flow; `claimed` > captured means a snap-length gap.
    func deliver(_ data: UnsafeRawBufferPointer, claimed: Int, d: Int, slot: Int32, flows: FlowTable, time: Timestamp) {
        let s = d / 2
        let fromOriginator = d % 2 == 0
        var bytes = data
        let budgetLeft = Int(configuration.maxBytesPerDirection) - Int(directions[d].delivered)
        var overBudget = false
        if bytes.count > budgetLeft {
            bytes = UnsafeRawBufferPointer(rebasing: bytes[..<max(0, budgetLeft)])
            overBudget = true
        }
        if !bytes.isEmpty {
            counters.deliveredBytes &+= UInt64(bytes.count)
            directions[d].delivered &+= UInt32(bytes.count)
            // Each consumer the mask names, in order.
            var left = directions[d].mask
            while left != 0 {
                let i = left.trailingZeroBitCount
                left &= left &- 1
                let bit: UInt8 = 1 << UInt8(i)
                switch streamCalls.with(i, { $0.stream(bytes, fromOriginator: fromOriginator, slot: slot, flows: flows, at: time) }) {
                case .more: break
                case .doneWithDirection:
                    directions[d].mask &= ~bit
                case .doneWithFlow:
                    directions[s * 2].mask &= ~bit
                    directions[s * 2 + 1].mask &= ~bit
                }
            }
            for k in 0..<2 where directions[s * 2 + k].mask == 0 && !directions[s * 2 + k].finished {
                directions[s * 2 + k].finished = true
                releasePending(slot, direction: k)
            }
            if directions[d].finished { return }
        }
        directions[d].next &+= UInt32(truncatingIfNeeded: claimed)
        if overBudget {
            counters.budgetStops &+= 1
            directions[d].finished = true
            releasePending(slot, direction: d % 2)
        } else if claimed > data.count {
            // A snap-length cut: `next` already passed the missing bytes, so resuming consumers go on in order.
            signalGap(d: d, slot: slot, flows: flows, time: time, skipToHeld: false)
        }
    }

    /// Ends in-order delivery of a direction at a hole. Consumers that resume continue after it: from the
    /// earliest held segment if there is one, else from the next segment that arrives.
    func signalGap(d: Int, slot: Int32, flows: FlowTable, time: Timestamp, skipToHeld: Bool = true) {
        guard !directions[d].finished else { return }
        counters.gaps &+= 1
        let mask = directions[d].mask
        var keep: UInt8 = 0
        for (i, c) in consumers.enumerated() where mask & (1 << UInt8(i)) != 0 {
            c.gap(fromOriginator: d % 2 == 0, slot: slot, flows: flows, at: time)
            if c.resumesAfterGap { keep |= 1 << UInt8(i) }
        }
        directions[d].mask = keep
        guard keep != 0 else {
            directions[d].finished = true
            releasePending(slot, direction: d % 2)
            return
        }
        counters.resumedAfterGap &+= 1
        guard skipToHeld else { return }
        if let earliest = pending[d]?.firstHeld, Int32(bitPattern: earliest &- directions[d].next) > 0 {
            directions[d].next = earliest
            drainPending(d: d, slot: slot, flows: flows, time: time)
        } else {
            releasePending(slot, direction: d % 2)
            directions[d].resync = true
        }
    }

    /// Holds a segment that lies `rel` bytes ahead of the expected sequence number, if the bounds allow;
    /// otherwise the hole is not going to fill within them: a clean gap, counted.
    @inline(never)
    func storeOutOfOrder(_ data: UnsafeRawBufferPointer, rel: Int, d: Int, slot: Int32, flows: FlowTable, time: Timestamp) {
        counters.outOfOrderSegments &+= 1
        // What was not captured cannot be held; the part that was still can.
        guard !data.isEmpty else { return }
        let next = directions[d].next
        let other = pending[d ^ 1]
        var held = pending.removeValue(forKey: d) ?? HeldStream(base: next)
        let offset = Int(Int32(bitPattern: next &- held.base)) + rel
        let before = held.isEmpty ? 0 : held.memory
        var refusal: UInt8 = 0
        if offset < 0 || offset + data.count > configuration.maxPendingBytesPerFlow {
            refusal = 1
        } else {
            let cost = held.cost(offset: offset, count: data.count)
            let grow = cost.blocks * HeldBlockPool.blockSize + (held.isEmpty ? HeldStream.fixedOverhead : 0)
                + (cost.ranges > held.ranges.capacity ? max(cost.ranges, held.ranges.capacity * 2) * MemoryLayout<HeldStream.Range>.stride : 0)
            let flowMemory = before + (other?.memory ?? 0) + grow
            if flowMemory > configuration.maxPendingBytesPerFlow {
                refusal = 1
            } else if cost.ranges + (other?.ranges.count ?? 0) > configuration.maxHeldSegmentsPerFlow {
                refusal = 2
            } else if heldBytes + grow > configuration.maxPendingBytesTotal || cost.blocks > pool.blockCount - pool.blocksInUse {
                refusal = 3
            }
        }
        if refusal != 0 {
            switch refusal {
            case 1: counters.heldFlowLimit &+= 1
            case 2: counters.heldSegmentLimit &+= 1
            default: counters.heldWorkerLimit &+= 1
            }
            counters.pendingDropped &+= 1
            if !held.isEmpty { pending[d] = held }
            signalGap(d: d, slot: slot, flows: flows, time: time)
            return
        }
        let already = held.store(data, offset: offset, pool: pool)
        counters.retransmittedBytes &+= UInt64(already)
        account(held.memory - before)
        pending[d] = held
    }

    func account(_ delta: Int) {
        heldBytes += delta
        if heldBytes > heldBytesPeak { heldBytesPeak = heldBytes }
    }

    /// Delivers the held bytes that are now in order, from the front, as long as the direction is followed.
    func drainPending(d: Int, slot: Int32, flows: FlowTable, time: Timestamp) {
        // Called after every in-order delivery; almost always nothing waits anywhere.
        guard !pending.isEmpty, pending[d] != nil else { return }
        while !directions[d].finished {
            var behind = 0
            let before = pending[d]?.memory ?? 0
            let chunk = pending[d]?.chunk(at: directions[d].next, pool: pool, behind: &behind)
            account((pending[d]?.memory ?? 0) - before)
            counters.retransmittedBytes &+= UInt64(behind)
            // The chunk's block stays allocated until the next `chunk` or release: delivery reads it in place.
            guard let chunk else { break }
            deliver(chunk, claimed: chunk.count, d: d, slot: slot, flows: flows, time: time)
        }
        guard let held = pending[d] else { return }
        if held.isEmpty || directions[d].finished {
            releasePending(slot, direction: d % 2)
        } else {
            let before = held.memory
            pending[d]?.releaseBlocks(before: directions[d].next, pool: pool)
            account((pending[d]?.memory ?? 0) - before)
        }
    }

    func releasePending(_ slot: Int32, direction: Int? = nil) {
        guard !pending.isEmpty else { return }
        for k in 0..<2 where direction == nil || direction == k {
            let d = Int(slot) * 2 + k
            guard var held = pending.removeValue(forKey: d) else { continue }
            account(-held.memory)
            held.releaseAll(pool: pool)
        }
    }

    /// Forwards to the consumers following the flow, so their facts land on the flow event (under `spanwatch`).
    public func contributeVendorFields(_ flow: FlowRecord, slot: Int32, into writer: inout JSONWriter) {
        let s = Int(slot)
        guard s < capacity, slots[s].generation == flow.generation else { return }
        let mask = slots[s].consumerMask
        guard mask != 0 else { return }
        for (i, c) in consumers.enumerated() where mask & (1 << UInt8(i)) != 0 {
            c.contributeStreamFields(flow, slot: slot, into: &writer)
        }
    }

    public func flowEnded(_ flow: FlowRecord, reason: FlowEndReason, slot: Int32) {
        guard reason != .activeTimeout else { return }
        let s = Int(slot)
        guard s < capacity, slots[s].generation == flow.generation else { return }
        if slots[s].consumerMask != 0 {
            // Segments still waiting for a hole that never filled: that direction had a gap.
            for k in 0..<2 where pending[s * 2 + k].map({ !$0.isEmpty }) ?? false { counters.gaps &+= 1 }
            let mask = slots[s].consumerMask
            for (i, c) in consumers.enumerated() where mask & (1 << UInt8(i)) != 0 { c.streamEnded(flow, slot: slot) }
        }
        releasePending(slot)
        slots[s] = Slot(generation: flow.generation &+ 1)
        directions[s * 2] = Direction()
        directions[s * 2 + 1] = Direction()
    }
}

extension StreamReassembler {
    /// `spanwatch.stats.reassembly` and `spanwatch.stats.parser_memory`: what reassembly and the stream parsers
    /// skipped, and the memory they hold against their bounds.
    public func writeStatistics(into w: inout JSONWriter) {
        let c = counters
        w.beginObject("reassembly")
        w.field("delivered_bytes", c.deliveredBytes)
        w.field("retransmitted_bytes", c.retransmittedBytes)
        w.field("overlap_bytes", c.overlapBytes)
        w.field("out_of_order_segments", c.outOfOrderSegments)
        w.field("gaps", c.gaps)
        w.field("acked_holes", c.ackedHoles)
        w.field("resumed_after_gap", c.resumedAfterGap)
        w.field("budget_stops", c.budgetStops)
        w.field("pending_dropped", c.pendingDropped)
        w.field("held_flow_limit", c.heldFlowLimit)
        w.field("held_segment_limit", c.heldSegmentLimit)
        w.field("held_worker_limit", c.heldWorkerLimit)
        w.field("held_bytes", heldBytes)
        w.field("held_bytes_peak", heldBytesPeak)
        w.field("held_bytes_limit", configuration.maxPendingBytesTotal)
        w.endObject()
        w.beginObject("parser_memory")
        w.field("bytes", parserBudget.used)
        w.field("peak", parserBudget.peak)
        w.field("limit", parserBudget.limit)
        w.field("refused", parserBudget.refusals)
        w.endObject()
        for c in consumers { (c as? StreamStatistics)?.writeStatistics(into: &w) }
        fileHashing?.writeStatistics(into: &w)
    }
}
