/// Facts an analyser keeps about one flow, tagged with the flow's generation so a reused slot is never
/// mistaken for the flow that held it before.
public protocol SlotFacts {
    var generation: UInt32 { get }
}

/// The per-flow facts of a content-chosen stream analyser (TLS, HTTP), with the bounded hello/head
/// buffers of the directions still being read.
///
/// Why one type: both analysers follow the same life cycle, and it is easy to get subtly wrong. Facts of
/// an ended flow must outlive `streamEnded`/`flowEnded` (detectors that run later in the same flow-end
/// round read them), yet must not leak into the next flow of the slot. So ended slots are queued and
/// purged before the next flow is admitted or at the next tick. Only flows of the analyser's protocol
/// get an entry (a dictionary, not a slot-sized array), so memory follows the TLS/HTTP flows alive.
struct FlowFactStore<Facts: SlotFacts> {
    private var facts: [Int32: Facts] = [:]
    private var heads: [Int32: (StreamHead, StreamHead)] = [:]
    private var ended: [Int32] = []

    /// The facts of the live (or just-ended) flow in `slot`, if its generation matches.
    func facts(slot: Int32, generation: UInt32) -> Facts? {
        guard let f = facts[slot], f.generation == generation else { return nil }
        return f
    }

    /// Calls `body` with the facts of the live (or just-ended) flow in `slot` where they are stored:
    /// reading them out (`facts(slot:generation:)`) copies every buffer they hold.
    mutating func withFacts<R>(slot: Int32, generation: UInt32, _ body: (inout Facts) -> R) -> R? {
        guard let i = facts.index(forKey: slot) else { return nil }
        return { (f: inout Facts) in f.generation == generation ? body(&f) : nil }(&facts.values[i])
    }

    /// The slot's current entry, whatever its generation (the analyser's own bookkeeping).
    subscript(slot: Int32) -> Facts? {
        get { facts[slot] }
        _modify { yield &facts[slot] }
    }

    /// Calls `body` with the slot's entry where it is stored, whatever its generation; nil without one.
    /// (Through the subscript, `store[slot]!.x = …` may copy the whole entry out and back.)
    mutating func update<R>(slot: Int32, _ body: (inout Facts) -> R) -> R? {
        guard let i = facts.index(forKey: slot) else { return nil }
        return body(&facts.values[i])
    }

    /// Whether the slot has an entry (without copying it out, as reading the subscript would).
    func contains(slot: Int32) -> Bool { facts.index(forKey: slot) != nil }

    /// Whether the slot has an entry that `test` accepts, tested where it is stored.
    mutating func contains(slot: Int32, where test: (inout Facts) -> Bool) -> Bool { update(slot: slot, test) ?? false }

    /// Forgets a slot entirely (a new flow took it).
    mutating func reset(slot: Int32) {
        if facts[slot] != nil { facts[slot] = nil }
        if heads[slot] != nil { heads[slot] = nil }
    }

    /// The partial heads of a flow's two directions, taken out for one parse step.
    mutating func takeHeads(slot: Int32) -> (StreamHead, StreamHead) {
        heads.removeValue(forKey: slot) ?? (StreamHead(), StreamHead())
    }

    /// Keeps the heads for the next segment (the parse needs more bytes).
    mutating func keepHeads(_ pair: (StreamHead, StreamHead), slot: Int32) { heads[slot] = pair }

    /// A gap or a finished direction: partial heads are useless now.
    mutating func dropHeads(slot: Int32) { heads[slot] = nil }

    /// The stream ended: heads go now, facts at the next purge.
    mutating func streamEnded(slot: Int32) {
        heads[slot] = nil
        if facts[slot] != nil { ended.append(slot) }
    }

    /// A flow that never went through the reassembler (QUIC over UDP) ended.
    mutating func flowEnded(slot: Int32, generation: UInt32) {
        if let f = facts[slot], f.generation == generation { ended.append(slot) }
    }

    /// Drops the facts of ended flows (before a new flow is admitted, and at each tick).
    mutating func purgeEnded() {
        guard !ended.isEmpty else { return }
        for s in ended { facts[s] = nil }
        ended.removeAll(keepingCapacity: true)
    }
}
