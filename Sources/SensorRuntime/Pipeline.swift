import Analyzers
import Capture
import Events
import Evidence
import HostStage
import PacketCore

/// Plain counters of one pipeline, bumped on the packet path and published once per batch.
public struct PipelineCounters: Sendable, Equatable {
    public var packets: UInt64 = 0
    /// Sum of wire lengths (what `capinfos` calls data size).
    public var bytes: UInt64 = 0
    public var capturedBytes: UInt64 = 0
    /// Packets that were accounted to a flow.
    public var flowPackets: UInt64 = 0
    public var decoded: UInt64 = 0
    public var notIP: UInt64 = 0
    public var truncated: UInt64 = 0
    public var malformed: UInt64 = 0
    public var laterFragments: UInt64 = 0
    public var unsupportedLinkType: UInt64 = 0
    /// Records whose time was outside `Timestamp.validRange` (stamped with the packet clock instead).
    public var timestampsOutOfRange: UInt64 = 0
    public var firstPacket: Timestamp?
    public var lastPacket: Timestamp?
    public init() {}
}

/// One worker's path: decode → flow table → analysers/detectors → events.
///
/// Single-threaded by design (a worker owns its pipeline), so nothing here locks. `process` is the
/// per-packet path: it decodes in place over libpcap's buffer, updates the flow, and calls the analysers;
/// it allocates nothing. Everything periodic (idle expiry, detector windows) runs on packet-clock second
/// boundaries in `tick`, so a replay of a day-long capture behaves as the day did.
public final class Pipeline: PacketConsumer {
    public let flows: FlowTable
    public let emitter: EventEmitter
    public private(set) var analyzers: [any PacketAnalyzer] { didSet { partitionAnalyzers() } }
    /// The analysers the per-packet loop calls (`wantsEveryPacket`), and those told of new flows only.
    /// The per-packet calls are made through `PacketAnalyzerCalls` (no reference counting per call).
    var packetAnalyzers = PacketAnalyzerCalls([])
    var flowStartAnalyzers: [any PacketAnalyzer] = []
    /// Every analyser, for the fields of flow events.
    var flowEventAnalyzers = PacketAnalyzerCalls([])
    var noFlowAnalyzers: [any PacketAnalyzer] = []
    public private(set) var counters = PipelineCounters()
    /// The packet clock: the latest packet time seen (input may be slightly out of order).
    public private(set) var clock: Timestamp = .zero
    var nextTick: Int64 = .min
    var finished = false

    public init(flows: FlowTableConfiguration, emitter: EventEmitter, analyzers: [any PacketAnalyzer] = []) {
        self.flows = FlowTable(configuration: flows)
        self.emitter = emitter
        self.analyzers = analyzers
        super.init()
        partitionAnalyzers()
    }

    func partitionAnalyzers() {
        packetAnalyzers = PacketAnalyzerCalls(analyzers.filter { $0.wantsEveryPacket })
        flowStartAnalyzers = analyzers.filter { $0.wantsFlowStart }
        flowEventAnalyzers = PacketAnalyzerCalls(analyzers)
        noFlowAnalyzers = analyzers.filter { $0.wantsPacketsWithoutFlow }
    }

    public func addAnalyzer(_ a: any PacketAnalyzer) { analyzers.append(a) }

    public override func consume(_ packet: RawPacket) { process(packet) }

    /// The per-packet path.
    @inline(__always)
    public func process(_ raw: RawPacket) {
        counters.packets &+= 1
        counters.bytes &+= UInt64(raw.wireLength)
        counters.capturedBytes &+= UInt64(raw.capturedLength)
        var time = raw.timestamp
        if raw.timestampOutOfRange { time = outOfRange() }
        if counters.firstPacket == nil { counters.firstPacket = time }
        counters.lastPacket = time
        var p = DecodedPacket()
        p.timestamp = time
        p.wireLength = raw.wireLength
        p.capturedLength = raw.capturedLength
        let outcome = PacketDecoder.decode(raw.bytes, linkType: raw.linkType, into: &p)
        switch outcome {
        case .ok: counters.decoded &+= 1
        case .notIP: counters.notIP &+= 1
        case .truncated: counters.truncated &+= 1
        case .malformed: counters.malformed &+= 1
        case .laterFragment: counters.laterFragments &+= 1
        case .unsupportedLinkType: counters.unsupportedLinkType &+= 1
        }
        if time.nanoseconds > clock.nanoseconds {
            clock = time
            if clock.nanoseconds >= nextTick { tick() }
        }
        // A damaged transport header whose ports were readable still belongs to its flow.
        guard outcome == .ok || p.hasPorts else {
            if p.ipVersion != 0 && !noFlowAnalyzers.isEmpty { withoutFlow(p, raw) }
            return
        }
        counters.flowPackets &+= 1
        let u = flows.update(p) { r, reason, slot in self.endFlow(r, reason, slot) }
        if u.isNew && !flowStartAnalyzers.isEmpty { startFlow(u.slot, p.timestamp) }
        if !packetAnalyzers.isEmpty {
            let ctx = PacketContext(packet: p, frame: raw.bytes, linkType: raw.linkType, slot: u.slot,
                                    fromOriginator: u.fromOriginator, isNewFlow: u.isNew)
            packetAnalyzers.packet(ctx, flows: flows)
        }
    }

    /// A record whose time capture refused: it is analysed at the packet clock's current time.
    ///
    /// Kept rather than skipped, so a forged or corrupt time cannot hide a packet's content from the
    /// analysers; stamped with the clock rather than clamped to a bound of the range, so one such record
    /// does not move the clock to 2116 (expiring every flow at once) or back to 1970.
    @inline(never)
    func outOfRange() -> Timestamp {
        counters.timestampsOutOfRange &+= 1
        return clock
    }

    /// An IP packet that makes no flow (rare): to the analysers that asked for such packets.
    @inline(never)
    func withoutFlow(_ p: DecodedPacket, _ raw: RawPacket) {
        let ctx = PacketContext(packet: p, frame: raw.bytes, linkType: raw.linkType, slot: -1, fromOriginator: false, isNewFlow: false)
        for a in noFlowAnalyzers { a.packetWithoutFlow(ctx) }
    }

    @inline(never)
    func startFlow(_ slot: Int32, _ time: Timestamp) {
        let r = flows[slot]
        for a in flowStartAnalyzers { a.flowStarted(r, slot: slot, at: time) }
    }

    func endFlow(_ r: FlowRecord, _ reason: FlowEndReason, _ slot: Int32) {
        if emitter.flowEventsEnabled {
            emitter.emitFlow(r, reason: reason, extra: { w in
                flowEventAnalyzers.contributeFlowFields(r, slot: slot, into: &w)
            }, vendor: { w in
                flowEventAnalyzers.contributeVendorFields(r, slot: slot, into: &w)
            })
        }
        for a in analyzers { a.flowEnded(r, reason: reason, slot: slot) }
    }

    @inline(never)
    func tick() {
        nextTick = (clock.seconds &+ 1) &* 1_000_000_000
        flows.expire(now: clock) { r, reason, slot in self.endFlow(r, reason, slot) }
        for a in analyzers { a.tick(clock) }
    }

    /// Moves the packet clock forward with no packet (live capture on a quiet link: the wall clock is the
    /// packet clock there), so idle flows still time out and detector windows still close.
    public func advanceClock(to t: Timestamp) {
        guard t.nanoseconds > clock.nanoseconds else { return }
        clock = t
        if clock.nanoseconds >= nextTick { tick() }
    }

    /// End of input (or shutdown): report every flow, let detectors conclude, write the run's statistics.
    public func finish(reason: FlowEndReason = .endOfInput, emitStats: Bool = true) {
        guard !finished else { return }
        finished = true
        flows.flushAll(reason: reason) { r, reason, slot in self.endFlow(r, reason, slot) }
        for a in analyzers { a.finish(clock) }
        if emitStats {
            // Outputs deliver what they hold first (Kafka waits up to its flush_timeout), so the final
            // statistics show what each of them delivered and lost.
            try? emitter.flushDelivery()
            emitStatistics()
        }
    }

    /// A `spanwatch.stats` event with this pipeline's counters.
    /// `extra` writes more members of `spanwatch.stats` (a live worker's host-fact ring counters).
    public func emitStatistics(captureStats: CaptureStatistics? = nil, worker: Int? = nil,
                               extra: ((inout JSONWriter) -> Void)? = nil) {
        let c = counters
        let fc = flows.counters
        emitter.emit(.stats, at: clock) { w in
            w.beginObject("spanwatch"); w.beginObject("stats")
            if let worker { w.field("worker", worker) }
            w.field("packets", c.packets)
            w.field("bytes", c.bytes)
            w.field("captured_bytes", c.capturedBytes)
            w.field("flow_packets", c.flowPackets)
            // Beside `decode`, not in it: those partition the packets by decode outcome.
            w.field("timestamps_out_of_range", c.timestampsOutOfRange)
            w.beginObject("decode")
            w.field("ok", c.decoded)
            w.field("not_ip", c.notIP)
            w.field("truncated", c.truncated)
            w.field("malformed", c.malformed)
            w.field("later_fragment", c.laterFragments)
            w.field("unsupported_link_type", c.unsupportedLinkType)
            w.endObject()
            w.beginObject("flows")
            w.field("created", fc.created)
            w.field("ended", fc.ended)
            w.field("evicted", fc.evicted)
            w.field("active_timeouts", fc.activeTimeouts)
            w.field("active", flows.activeFlows)
            w.field("capacity", flows.capacity)
            w.field("bytes_per_flow", flows.bytesPerFlow)
            w.endObject()
            w.beginObject("events")
            w.field("emitted", emitter.eventsEmitted)
            w.field("alerts", emitter.alertsEmitted)
            w.endObject()
            // Delivery so far, per output (final figures are in the end-of-run log summary).
            w.beginArray("outputs")
            for sink in emitter.sinks {
                let st = sink.statistics
                w.beginObject()
                w.field("name", sink.name)
                w.field("accepted", st.accepted)
                w.field("delivered", st.delivered)
                w.field("failed", st.failed)
                w.field("spooled", st.spooled)
                w.field("dropped", st.dropped)
                w.field("dropped_alerts", st.droppedAlerts)
                w.field("spool_bytes", st.spoolBytes)
                w.endObject()
            }
            w.endArray()
            if let cs = captureStats {
                w.beginObject("capture")
                w.field("received", cs.received)
                w.field("kernel_dropped", cs.kernelDropped)
                w.field("interface_dropped", cs.interfaceDropped)
                w.endObject()
            }
            if let r = analyzers.first(where: { $0 is StreamReassembler }) as? StreamReassembler { r.writeStatistics(into: &w) }
            for a in analyzers { (a as? HostFactTap)?.writeStatistics(into: &w) }
            extra?(&w)
            for a in analyzers { (a as? EvidenceManager)?.writeStatistics(into: &w) }
            if let f = c.firstPacket { w.field("first_packet", f) }
            if let l = c.lastPacket { w.field("last_packet", l) }
            w.endObject(); w.endObject()
        }
    }
}

/// Kernel-side capture counters (`pcap_stats`), for live sources.
public struct CaptureStatistics: Sendable, Equatable {
    public var received: UInt64
    public var kernelDropped: UInt64
    public var interfaceDropped: UInt64
    public init(received: UInt64, kernelDropped: UInt64, interfaceDropped: UInt64) {
        self.received = received
        self.kernelDropped = kernelDropped
        self.interfaceDropped = interfaceDropped
    }
}
