import Events
import Foundation
import Logging
import PacketCore

extension EventDescriptor {
    /// An evidence file was closed, hashed and logged: links the alert(s) to the file and its hash.
    public static let evidenceCreated = EventDescriptor(kind: .event, categories: ["file"], types: ["creation"], dataset: "spanwatch.evidence")
    /// An alert asked for evidence and a global cap refused it.
    public static let evidenceRefused = EventDescriptor(kind: .event, categories: ["network"], types: ["denied"], dataset: "spanwatch.evidence")
    /// An evidence file reached the end of its retention period and was deleted.
    public static let evidenceDeleted = EventDescriptor(kind: .event, categories: ["file"], types: ["deletion"], dataset: "spanwatch.evidence")
}

/// Targeted evidence capture, one worker's side: its lookback ring and its parts of the open captures.
///
/// A `PacketAnalyzer`, so it sees every packet of every flow, and an alert observer of the worker's
/// `EventEmitter`, so it hears the worker's alerts; both go to the process-wide `EvidenceCoordinator`,
/// which decides once per alert (whichever worker or host-level aggregator raised it) and makes one
/// capture for every worker. This worker joins each new capture (at its tick, and at once for an alert
/// raised on its thread): it writes the scope's packets from its ring, then its live packets in scope
/// until the capture's end on its packet clock (extensions move it) or the shared size cap, to its part.
/// The worker closing a capture's last part merges the parts into the one evidence file.
///
/// Per packet (the common case: no capture open) this is one summary, one ring copy and no allocation;
/// with captures open, two atomic loads and a scope test per capture, and the write for those that match.
public final class EvidenceManager: PacketAnalyzer {
    /// This worker's own counters (its packets and parts); the capture decisions are process-wide, in
    /// `coordinator.counters`.
    public struct Counters: Sendable, Equatable {
        /// Packets the lookback ring kept headers only of, their flow being past `lookback.flow_bytes`.
        public var lookbackHeadersOnly: UInt64 = 0
        /// IP packets without a flow (later fragments, transport header cut before the ports) kept.
        public var packetsWithoutFlow: UInt64 = 0
        /// Packets written to this worker's parts.
        public var packetsWritten: UInt64 = 0
        /// Captures this worker wrote a part of.
        public var partsJoined: UInt64 = 0
    }

    public typealias CloseReason = EvidenceCloseReason

    public let name = "evidence"
    public let coordinator: EvidenceCoordinator
    public var store: EvidenceStore { coordinator.store }
    public var triggers: [EvidenceTrigger] { coordinator.triggers }
    public let ring: LookbackRing
    /// This worker's index in the coordinator.
    public let worker: Int
    var local = Counters()
    let emitter: EventEmitter
    let logger: Logger
    let snapLength: Int
    /// `lookback.flow_bytes`, or `UInt64.max` when off.
    let flowCutoff: UInt64
    var parts: [EvidencePart] = []
    /// The coordinator's generation this worker has joined every capture of.
    var seenGeneration: UInt64 = 0
    var clock: Timestamp = .zero
    var finished = false
    var nextRetentionCheck: Double = 0

    /// A worker's manager on the process's coordinator (every worker of a `sensor run` shares one).
    public init(coordinator: EvidenceCoordinator, emitter: EventEmitter, logger: Logger) throws(LookbackRingError) {
        self.coordinator = coordinator
        self.emitter = emitter
        self.logger = logger
        let c = coordinator.store.configuration
        snapLength = c.snapLength
        flowCutoff = c.lookbackFlowBytes > 0 ? UInt64(c.lookbackFlowBytes) : .max
        ring = try LookbackRing(bytes: c.lookbackBytes, maxAge: .seconds(c.lookbackSeconds), snapLength: c.snapLength)
        worker = coordinator.register()
    }

    /// One worker on a coordinator of its own (replay).
    public convenience init(store: EvidenceStore, triggers: [EvidenceTrigger], emitter: EventEmitter, logger: Logger) throws(LookbackRingError) {
        try self.init(coordinator: EvidenceCoordinator(store: store, triggers: triggers, logger: logger), emitter: emitter, logger: logger)
    }

    /// Registers with the emitter so alerts reach `alertRaised`.
    ///
    /// `unowned`, not `weak`: a weak reference gives the manager a side-table reference count, which
    /// makes every retain/release of it (the pipeline does one per packet) take the slow atomic path;
    /// measured at ~15% of the whole pipeline. The manager lives as long as the pipeline that owns it
    /// and its emitter.
    public func observeAlerts(of emitter: EventEmitter) {
        emitter.alertObservers.append { [unowned self] alert in self.alertRaised(alert) }
    }

    /// Captures decided and not yet merged, process-wide (for tests and statistics).
    public var openCaptures: Int { coordinator.openCaptures }

    public var counters: Counters { local }

    // MARK: Packet path

    public func packet(_ context: PacketContext, flows: FlowTable) {
        var kept = context.frame
        // The flow table has counted this packet: past the cut-off if the flow already was before it.
        if flows.bytes(slot: context.slot) &- UInt64(context.packet.wireLength) >= flowCutoff {
            kept = Self.headers(context)
            local.lookbackHeadersOnly &+= 1
        }
        record(context, keeping: kept)
    }

    /// Later fragments and packets cut before their ports: no flow, but a host scope selects them.
    /// With evidence capture off (custody log unusable) no packet is needed: the ring would be dead weight.
    public var wantsPacketsWithoutFlow: Bool { store.isCapturing }
    public var wantsEveryPacket: Bool { store.isCapturing }

    public func packetWithoutFlow(_ context: PacketContext) {
        local.packetsWithoutFlow &+= 1
        record(context, keeping: context.frame)
    }

    /// Every packet: to the parts it is in scope of (whole), and to the ring (`kept` of it).
    @inline(__always)
    func record(_ context: PacketContext, keeping kept: UnsafeRawBufferPointer) {
        let t = context.packet.timestamp
        if t.nanoseconds > clock.nanoseconds { clock = t }
        if !parts.isEmpty { live(PacketSummary(context.packet, linkType: context.linkType), context.frame) }
        ring.append(timestamp: t, wireLength: context.packet.wireLength, linkType: context.linkType, frame: kept)
    }

    /// The frame up to its transport payload (link, IP and transport headers); 96 bytes when the decoder
    /// found no payload start (a damaged transport header).
    @inline(never)
    static func headers(_ context: PacketContext) -> UnsafeRawBufferPointer {
        let end = context.packet.payloadOffset > 0 ? context.packet.payloadOffset : 96
        return UnsafeRawBufferPointer(rebasing: context.frame[0..<min(end, context.frame.count)])
    }

    @inline(never)
    func live(_ s: PacketSummary, _ frame: UnsafeRawBufferPointer) {
        let snapped = UnsafeRawBufferPointer(rebasing: frame[0..<min(frame.count, snapLength)])
        var i = 0
        while i < parts.count {
            let p = parts[i]
            if s.timestamp.nanoseconds > p.capture.endNanoseconds.load(ordering: .acquiring), close(at: i, reason: .duration) { continue }
            if p.capture.isFull, close(at: i, reason: .sizeCap) { continue }
            if p.capture.scope.matches(s) {
                do {
                    if try !p.write(s, snapped) {
                        if close(at: i, reason: .sizeCap) { continue }
                    } else {
                        local.packetsWritten &+= 1
                    }
                } catch {
                    fail(at: i, error)
                    continue
                }
            }
            i += 1
        }
    }

    public func tick(_ now: Timestamp) {
        if now.nanoseconds > clock.nanoseconds { clock = now }
        join()
        var i = 0
        while i < parts.count {
            let c = parts[i].capture
            if c.end.nanoseconds < clock.nanoseconds, close(at: i, reason: .duration) { continue }
            if c.isFull, close(at: i, reason: .sizeCap) { continue }
            i += 1
        }
        let wall = store.wallClock()
        if wall >= nextRetentionCheck {
            nextRetentionCheck = wall + 60
            do { try store.enforceRetention() } catch {
                logger.error("evidence retention failed", metadata: ["error": "\(error)"])
            }
        }
        announceDeletions()
        announceCustody()
    }

    public func finish(_ now: Timestamp) {
        if now.nanoseconds > clock.nanoseconds { clock = now }
        if !finished {
            // Captures decided since the last tick get this worker's share before it stops.
            join()
            while !parts.isEmpty { _ = close(at: 0, reason: .endOfInput) }
            finished = true
            // And those decided while it was closing (another thread's alert) get its lookback.
            for (c, id) in coordinator.finished(worker: worker, ring: ring) where openPart(c, id: id) {
                _ = close(at: parts.count - 1, reason: .endOfInput)
            }
        }
        announceDeletions()
        announceCustody()
        let c = coordinator.counters, w = local
        logger.info("evidence capture summary", metadata: [
            "worker": "\(worker)",
            "alerts": "\(c.alertsSeen)", "triggering": "\(c.alertsTriggering)", "opened": "\(c.capturesOpened)",
            "extended": "\(c.capturesExtended)", "closed": "\(c.capturesClosed)",
            "refused_concurrency": "\(c.refusedConcurrency)", "refused_disk": "\(c.refusedDiskCap)", "refused_custody": "\(c.refusedCustody)",
            "refused_no_scope": "\(c.refusedNoScope)", "empty": "\(c.emptyDiscarded)", "failures": "\(c.failures)",
            "parts": "\(w.partsJoined)", "packets_written": "\(w.packetsWritten)",
            "lookback_headers_only": "\(w.lookbackHeadersOnly)", "packets_without_flow": "\(w.packetsWithoutFlow)",
            "ring_evicted_space": "\(ring.counters.evictedForSpace)", "ring_evicted_age": "\(ring.counters.evictedForAge)",
            "ring_touched_bytes": "\(ring.touchedBytes)", "ring_relocations": "\(ring.counters.relocations)",
        ])
    }

    // MARK: Alerts

    /// The alert hook: the coordinator decides; a capture it opens gets this worker's part at once.
    public func alertRaised(_ alert: Alert) {
        coordinator.alertRaised(alert, clock: clock, emitter: emitter)
        join()
    }

    /// Opens this worker's part of every capture decided since it last looked: the scope's packets from
    /// the ring, then (from the packet path) its live ones. One atomic load when nothing is new.
    func join() {
        guard !finished, coordinator.generation != seenGeneration else { return }
        for (c, id) in coordinator.join(worker: worker, seen: &seenGeneration) where openPart(c, id: id) {
            if c.isFull { _ = close(at: parts.count - 1, reason: .sizeCap) } else if c.end.nanoseconds < clock.nanoseconds {
                _ = close(at: parts.count - 1, reason: .duration)
            }
        }
    }

    /// This worker's part of `c`, with the scope's packets from the ring (the last of `parts`); false when
    /// it could not be made (the capture then fails: an incomplete file is no evidence).
    func openPart(_ c: SharedCapture, id: UInt32) -> Bool {
        let part: EvidencePart
        do throws(EvidenceError) {
            part = try EvidencePart(capture: c, worker: worker, id: id, key: coordinator.partKey, store: store)
        } catch {
            logger.error("evidence part could not start", metadata: ["file": "\(c.reservation.fileName)", "error": "\(error)"])
            if coordinator.partClosed(c, worker: worker, .failure(error)) { coordinator.merge(c, emitter: emitter, clock: clock) }
            return false
        }
        local.partsJoined &+= 1
        parts.append(part)
        do throws(EvidenceError) { local.packetsWritten &+= try part.writeLookback(ring) } catch {
            fail(at: parts.count - 1, error)
            return false
        }
        return true
    }

    // MARK: Closing

    /// Closes this worker's part at `index` unless the capture was extended past the clock meanwhile
    /// (then false: it stays open). The worker closing the last part merges the capture.
    func close(at index: Int, reason: CloseReason) -> Bool {
        let p = parts[index]
        guard coordinator.mayClose(p.capture, reason: reason, at: clock) else { return false }
        parts.remove(at: index)
        let result: Result<EvidencePart.Closed, EvidenceError>
        do throws(EvidenceError) { result = .success(try p.finish()) } catch {
            p.discard()
            result = .failure(error)
        }
        if coordinator.partClosed(p.capture, worker: worker, result) { coordinator.merge(p.capture, emitter: emitter, clock: clock) }
        return true
    }

    func fail(at index: Int, _ error: Error) {
        let p = parts.remove(at: index)
        p.discard()
        logger.error("evidence part failed; the capture will keep no file", metadata: ["file": "\(p.capture.reservation.fileName)", "error": "\(error)"])
        let e = error as? EvidenceError ?? EvidenceError("\(error)")
        if coordinator.partClosed(p.capture, worker: worker, .failure(e)) { coordinator.merge(p.capture, emitter: emitter, clock: clock) }
    }

    // MARK: Events

    func announceDeletions() {
        for d in store.takeDeletions() {
            emitter.emit(.evidenceDeleted, at: clock, eventFields: { w in
                w.field("outcome", "success")
                w.field("reason", "retention")
            }, body: { w in
                w.field("message", "Evidence file \(d.fileName) deleted at the end of its retention period")
                w.beginObject("file"); w.field("name", d.fileName); w.field("directory", store.directory)
                w.beginObject("hash"); w.field("sha256", d.sha256); w.endObject(); w.endObject()
                w.beginObject("spanwatch"); w.beginObject("evidence")
                w.field("retention_until", d.retentionUntil)
                w.beginObject("custody"); w.field("log", store.custodyLogPath); w.field("seq", d.sequence)
                w.field("entry_sha256", d.entryHash); w.endObject()
                w.endObject(); w.endObject()
            })
        }
    }

    /// The custody log's state at start (evidence capture off, or a torn last line cut off), once per
    /// process as a `spanwatch.health` event, so the SIEM learns it without reading the sensor's log.
    func announceCustody() {
        for a in store.takeAnnouncements() {
            switch a {
            case .disabled(let reason):
                emitter.emit(.health, at: clock, severity: 3) { w in
                    w.field("message", "Evidence capture is off: the custody log cannot be used (\(reason)); packet capture and detection go on")
                    w.beginObject("spanwatch"); w.beginObject("health")
                    w.field("check", "evidence_disabled")
                    w.field("custody_log", store.custodyLogPath)
                    w.field("reason", reason)
                    w.endObject(); w.endObject()
                }
            case .repaired(let r, let entry):
                emitter.emit(.health, at: clock, severity: 2) { w in
                    w.field("message", "Custody log repaired: a torn last line of \(r.removedBytes) bytes was cut off (\(r.problem))")
                    w.beginObject("spanwatch"); w.beginObject("health")
                    w.field("check", "custody_log_repaired")
                    w.field("custody_log", store.custodyLogPath)
                    w.field("reason", r.problem)
                    w.field("removed_bytes", r.removedBytes)
                    w.field("removed_sha256", r.removedSHA256)
                    if let entry { w.field("custody_seq", entry.sequence); w.field("custody_entry_sha256", entry.hash) }
                    w.endObject(); w.endObject()
                }
            }
        }
    }

    /// `spanwatch.stats.evidence`: the process's capture counters (the coordinator's), this worker's parts
    /// (what it wrote, what it holds in memory), the store's and the custody chain's head, the anchor a
    /// SIEM keeps so that a log cut short or rewritten is found out.
    public func writeStatistics(into w: inout JSONWriter) {
        let c = coordinator.counters
        let s = store.counters
        w.beginObject("evidence")
        w.field("enabled", store.isCapturing)
        w.field("captures_opened", c.capturesOpened)
        w.field("captures_closed", c.capturesClosed)
        w.field("captures_empty", c.emptyDiscarded)
        w.field("captures_after_input", c.afterInput)
        w.field("parts_open", parts.count)
        w.field("part_buffer_bytes", parts.reduce(0) { $0 + $1.heldBytes })
        w.field("packets_written", local.packetsWritten)
        w.field("failures", c.failures)
        w.field("refused_concurrency", c.refusedConcurrency)
        w.field("refused_disk_cap", c.refusedDiskCap)
        w.field("refused_custody", c.refusedCustody)
        w.field("unsafe_names", s.unsafeNames)
        w.field("name_collisions", s.nameCollisions)
        w.field("log_repairs", s.logRepairs)
        w.field("partials_removed", s.partialsRemoved)
        if let head = store.custodyHead {
            w.beginObject("custody")
            w.field("log", store.custodyLogPath)
            w.field("seq", head.sequence)
            w.field("entry_sha256", head.hash)
            w.endObject()
        }
        w.endObject()
    }

    /// Decodes a stored frame again (the ring keeps no decoded fields); nil for what never formed a flow.
    static func summary(of f: LookbackRing.Frame) -> PacketSummary? {
        var p = DecodedPacket()
        p.timestamp = f.timestamp
        p.wireLength = f.wireLength
        p.capturedLength = f.bytes.count
        let outcome = PacketDecoder.decode(f.bytes, linkType: f.linkType, into: &p)
        // As the pipeline: flows, and the IP packets without one (later fragments, cut transport headers).
        guard outcome == .ok || p.hasPorts || p.ipVersion != 0 else { return nil }
        return PacketSummary(p, linkType: f.linkType)
    }
}

extension CaptureScope {
    /// Whether every packet `other` selects is already selected here (a host scope covers its pairs and flows).
    public func covers(_ other: CaptureScope) -> Bool {
        if self == other { return true }
        switch kind {
        case .host: return other.a == a || other.b == a
        case .hostPair:
            guard other.kind == .flow, let b, let ob = other.b else { return false }
            return (other.a == a && ob == b) || (other.a == b && ob == a)
        case .flow: return false
        }
    }
}
