import Events
import Foundation
import Logging
import PacketCore

extension EventDescriptor {
    /// An evidence file was closed, hashed and logged: links the alert(s) to the file and its hash.
    public static let evidenceCreated = EventDescriptor(kind: .event, categories: ["file"], types: ["creation"], dataset: "sensor.evidence")
    /// An alert asked for evidence and a global cap refused it.
    public static let evidenceRefused = EventDescriptor(kind: .event, categories: ["network"], types: ["denied"], dataset: "sensor.evidence")
    /// An evidence file reached the end of its retention period and was deleted.
    public static let evidenceDeleted = EventDescriptor(kind: .event, categories: ["file"], types: ["deletion"], dataset: "sensor.evidence")
}

/// Targeted evidence capture for one worker: the lookback ring plus the captures alerts open.
///
/// A `PacketAnalyzer`, so it sees every packet of every flow, and an alert observer of the worker's
/// `EventEmitter`, so it hears every alert. On an alert that a trigger in `Rules/evidence.yaml` selects,
/// it opens an encrypted pcapng for the trigger's scope (flow, host pair or host), writes the scope's
/// packets from the lookback ring, then the scope's live packets until the capture's end on the packet
/// clock or its size cap. A later alert whose scope an open capture already covers extends that capture
/// (and is named in it) instead of opening another. At close, the file's hashes go to the custody log
/// and a `sensor.evidence` event links alert, file and hash.
///
/// Per packet (the common case: no capture open) this is one summary, one ring copy and no allocation;
/// with captures open, a scope test per capture and the write for those that match.
public final class EvidenceManager: PacketAnalyzer {
    public struct Counters: Sendable, Equatable {
        public var alertsSeen: UInt64 = 0
        public var alertsTriggering: UInt64 = 0
        public var capturesOpened: UInt64 = 0
        public var capturesExtended: UInt64 = 0
        public var capturesClosed: UInt64 = 0
        public var refusedConcurrency: UInt64 = 0
        public var refusedDiskCap: UInt64 = 0
        /// Alerts refused because evidence capture is off (the custody log could not be used at start).
        public var refusedCustody: UInt64 = 0
        /// Alerts that name no address to scope a capture on.
        public var refusedNoScope: UInt64 = 0
        public var failures: UInt64 = 0
        /// Captures that closed without a single packet in scope (nothing kept, no custody entry).
        public var emptyDiscarded: UInt64 = 0
        /// Packets the lookback ring kept headers only of, their flow being past `lookback.flow_bytes`.
        public var lookbackHeadersOnly: UInt64 = 0
        /// IP packets without a flow (later fragments, transport header cut before the ports) kept.
        public var packetsWithoutFlow: UInt64 = 0
        public var packetsWritten: UInt64 = 0
    }

    /// Why a capture closed (`close_reason` in the custody log and the event).
    public enum CloseReason: String, Sendable {
        case duration
        case sizeCap = "size_cap"
        case endOfInput = "end_of_input"
    }

    public let name = "evidence"
    public let store: EvidenceStore
    public let triggers: [EvidenceTrigger]
    public let ring: LookbackRing
    public private(set) var counters = Counters()
    let emitter: EventEmitter
    let logger: Logger
    let snapLength: Int
    /// `lookback.flow_bytes`, or `UInt64.max` when off.
    let flowCutoff: UInt64
    let systemDescription: String
    var active: [ActiveCapture] = []
    var clock: Timestamp = .zero
    var finished = false
    var nextRetentionCheck: Double = 0

    public init(store: EvidenceStore, triggers: [EvidenceTrigger], emitter: EventEmitter, logger: Logger) throws(LookbackRingError) {
        self.store = store
        self.triggers = triggers
        self.emitter = emitter
        self.logger = logger
        let c = store.configuration
        snapLength = c.snapLength
        flowCutoff = c.lookbackFlowBytes > 0 ? UInt64(c.lookbackFlowBytes) : .max
        ring = try LookbackRing(bytes: c.lookbackBytes, maxAge: .seconds(c.lookbackSeconds), snapLength: c.snapLength)
        systemDescription = ProcessInfo.processInfo.operatingSystemVersionString
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

    /// Captures currently open (for tests and statistics).
    public var openCaptures: Int { active.count }

    // MARK: Packet path

    public func packet(_ context: PacketContext, flows: FlowTable) {
        var kept = context.frame
        // The flow table has counted this packet: past the cut-off if the flow already was before it.
        if flows.bytes(slot: context.slot) &- UInt64(context.packet.wireLength) >= flowCutoff {
            kept = Self.headers(context)
            counters.lookbackHeadersOnly &+= 1
        }
        record(context, keeping: kept)
    }

    /// Later fragments and packets cut before their ports: no flow, but a host scope selects them.
    /// With evidence capture off (custody log unusable) no packet is needed: the ring would be dead weight.
    public var wantsPacketsWithoutFlow: Bool { store.isCapturing }
    public var wantsEveryPacket: Bool { store.isCapturing }

    public func packetWithoutFlow(_ context: PacketContext) {
        counters.packetsWithoutFlow &+= 1
        record(context, keeping: context.frame)
    }

    /// Every packet: to the open captures it is in scope of (whole), and to the ring (`kept` of it).
    @inline(__always)
    func record(_ context: PacketContext, keeping kept: UnsafeRawBufferPointer) {
        let t = context.packet.timestamp
        if t.nanoseconds > clock.nanoseconds { clock = t }
        if !active.isEmpty { live(PacketSummary(context.packet, linkType: context.linkType), context.frame) }
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
        while i < active.count {
            let c = active[i]
            if s.timestamp.nanoseconds > c.end.nanoseconds {
                close(at: i, reason: .duration)
                continue
            }
            if c.scope.matches(s) {
                do {
                    if try !c.write(s, snapped) {
                        close(at: i, reason: .sizeCap)
                        continue
                    }
                    counters.packetsWritten &+= 1
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
        var i = 0
        while i < active.count {
            if active[i].end.nanoseconds < clock.nanoseconds { close(at: i, reason: .duration) } else { i += 1 }
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
        while !active.isEmpty { close(at: 0, reason: .endOfInput) }
        announceDeletions()
        announceCustody()
        finished = true
        let c = counters
        logger.info("evidence capture summary", metadata: [
            "alerts": "\(c.alertsSeen)", "triggering": "\(c.alertsTriggering)", "opened": "\(c.capturesOpened)",
            "extended": "\(c.capturesExtended)", "closed": "\(c.capturesClosed)",
            "refused_concurrency": "\(c.refusedConcurrency)", "refused_disk": "\(c.refusedDiskCap)", "refused_custody": "\(c.refusedCustody)",
            "refused_no_scope": "\(c.refusedNoScope)", "empty": "\(c.emptyDiscarded)", "failures": "\(c.failures)",
            "lookback_headers_only": "\(c.lookbackHeadersOnly)", "packets_without_flow": "\(c.packetsWithoutFlow)",
            "ring_evicted_space": "\(ring.counters.evictedForSpace)", "ring_evicted_age": "\(ring.counters.evictedForAge)",
            "ring_touched_bytes": "\(ring.touchedBytes)", "ring_relocations": "\(ring.counters.relocations)",
        ])
    }

    // MARK: Alerts

    /// The alert hook: opens, extends or refuses a capture for `alert`.
    public func alertRaised(_ alert: Alert) {
        counters.alertsSeen &+= 1
        guard let trigger = triggers.first(where: { $0.matches(alert) }) else { return }
        counters.alertsTriggering &+= 1
        guard let scope = CaptureScope(kind: trigger.scope, alert: alert) else {
            counters.refusedNoScope &+= 1
            logger.warning("alert names no address to scope evidence on", metadata: ["alert": "\(alert.id)", "rule": "\(alert.ruleID)"])
            return
        }
        let start = max(alert.timestamp, clock)
        let end = start + trigger.duration
        if let c = active.first(where: { $0.scope.covers(scope) }) {
            c.alerts.append(alert)
            if end > c.end { c.end = end }
            let note = "alert \(alert.id) (\(alert.ruleID) \(alert.ruleName), \(alert.category.rawValue), severity \(alert.severity.name)) at \(alert.timestamp) extended this capture to \(c.end)"
            c.pendingComment = c.pendingComment.map { "\($0)\n\(note)" } ?? note
            counters.capturesExtended &+= 1
            return
        }
        open(alert: alert, trigger: trigger, scope: scope, end: end)
        // Alerts raised after end of input (a detector concluding in its own finish) get their lookback only.
        if finished, !active.isEmpty { while !active.isEmpty { close(at: 0, reason: .endOfInput) } }
    }

    func open(alert: Alert, trigger: EvidenceTrigger, scope: CaptureScope, end: Timestamp) {
        let stem = "\(Self.compact(alert.timestamp))-\(alert.id.prefix(12))"
        let reservation: EvidenceStore.Reservation
        switch store.reserve(bytes: trigger.maxBytes, stem: stem) {
        case .success(let r): reservation = r
        case .failure(let refusal):
            switch refusal.reason {
            case .concurrencyCap: counters.refusedConcurrency &+= 1
            case .diskCap: counters.refusedDiskCap &+= 1
            case .custodyUnavailable: counters.refusedCustody &+= 1
            case .noFreeName: counters.failures &+= 1
            }
            logger.warning("evidence capture refused", metadata: ["alert": "\(alert.id)", "reason": "\(refusal.reason.rawValue)"])
            emitRefusal(alert, scope: scope, reason: refusal.reason.rawValue)
            return
        }
        let c = store.configuration
        let lookback = min(trigger.lookback ?? .seconds(c.lookbackSeconds), .seconds(c.lookbackSeconds))
        let from = Timestamp(nanoseconds: alert.timestamp.nanoseconds &- lookback.nanoseconds)
        do {
            let sink = try store.createFile(reservation)
            let age = try AgeStreamWriter(recipients: store.recipients, sink: sink)
            let alertLine = "alert \(alert.id): rule \(alert.ruleID) \(alert.ruleName) (\(alert.category.rawValue), severity \(alert.severity.name)) at \(alert.timestamp)"
            let comments = [
                "sensor: \(store.sensorName) on \(store.hostname)",
                alertLine,
                "scope: \(scope.bpf)",
                "authorization: \(c.authorization ?? "")",
                "purpose: \(c.purpose ?? "")",
                "operator: \(c.operatorName ?? "")",
                "trigger: \(trigger.name); lookback from \(from); capture until \(end) unless extended; cap \(reservation.reservedBytes) bytes",
            ] + (c.lookbackFlowBytes > 0 ? ["lookback packets keep headers only once their flow is past \(c.lookbackFlowBytes) bytes"] : [])
            var pcap = PcapngWriter(resolution: c.timestampResolution, snapLength: snapLength,
                                    interfaceDescription: "sensor evidence for alert \(alert.id), scope \(scope.bpf)",
                                    captureFilter: scope.bpf, interfaceComments: ["scope: \(scope.bpf)", alertLine])
            pcap.sectionHeader(comments: comments, os: systemDescription, application: "sensor \(ObserverInfo.softwareVersion) (evidence)")
            let capture = ActiveCapture(reservation: reservation, scope: scope, trigger: trigger, alert: alert, end: end,
                                        lookbackFrom: from, sink: sink, age: age, pcap: pcap)
            // The first packet carries the provenance too: tshark shows packet comments (frame.comment).
            capture.pendingComment = comments.joined(separator: "\n")
            try capture.flushHeader()
            counters.capturesOpened &+= 1
            active.append(capture)
            var full = false
            try ring.forEach { f in
                guard !full, f.timestamp >= from, let s = Self.summary(of: f), scope.matches(s) else { return }
                if try capture.write(s, f.bytes) { counters.packetsWritten &+= 1 } else { full = true }
            }
            if full { close(at: active.count - 1, reason: .sizeCap) }
        } catch {
            if let i = active.firstIndex(where: { $0.reservation.fileName == reservation.fileName }) {
                fail(at: i, error)
            } else {
                store.abandon(reservation)
                counters.failures &+= 1
                logger.error("evidence capture could not start", metadata: ["alert": "\(alert.id)", "error": "\(error)"])
            }
        }
    }

    // MARK: Closing

    func close(at index: Int, reason: CloseReason) {
        let c = active.remove(at: index)
        if c.packets == 0 {
            // Nothing in scope was left in the ring or arrived (e.g. an alert about old traffic at end of
            // input): an empty file is no evidence. Discarded, counted and reported instead.
            try? c.sink.close()
            store.release(c.reservation)
            counters.emptyDiscarded &+= 1
            for a in c.alerts { emitRefusal(a, scope: c.scope, reason: "no_packets_in_scope") }
            return
        }
        let plainHash: String, fileHash: String
        do {
            (plainHash, fileHash) = try c.finish()
        } catch {
            store.abandon(c.reservation)
            counters.failures &+= 1
            logger.error("evidence capture failed at close; its partial (encrypted) file was removed",
                         metadata: ["file": "\(c.reservation.fileName)", "error": "\(error)"])
            return
        }
        // `commit` gives the slot back and removes the partial file itself when it fails.
        do {
            let fileBytes = Int(c.age.ciphertextBytes)
            let r = c.reservation
            let record = try store.commit(r, fileBytes: fileBytes, sha256: fileHash) { w in
                w.field("file", r.fileName)
                w.field("sha256", fileHash)
                w.field("plaintext_sha256", plainHash)
                w.field("file_bytes", Int(fileBytes))
                w.field("plaintext_bytes", c.age.plaintextBytes)
                w.field("format", "pcapng, age-encryption.org/v1 (X25519)")
                if let f = c.first { w.field("first_packet", f) }
                if let l = c.last { w.field("last_packet", l) }
                w.field("packets", c.packets)
                w.beginObject("scope"); w.field("kind", c.scope.kind.rawValue); w.field("bpf", c.scope.bpf); w.endObject()
                w.field("lookback_from", c.lookbackFrom)
                w.field("capture_until", c.end)
                w.field("trigger", c.trigger.name)
                w.field("close_reason", reason.rawValue)
                w.beginArray("alerts")
                for a in c.alerts {
                    w.beginObject()
                    w.field("id", a.id); w.field("rule_id", a.ruleID); w.field("rule_name", a.ruleName)
                    w.field("category", a.category.rawValue); w.field("severity", a.severity.name); w.field("timestamp", a.timestamp)
                    w.endObject()
                }
                w.endArray()
            }
            counters.capturesClosed &+= 1
            emitCreated(c, reason: reason, plainHash: plainHash, fileHash: fileHash, fileBytes: fileBytes, record: record)
        } catch {
            counters.failures &+= 1
            logger.error("evidence capture failed at close: no custody entry, its partial (encrypted) file was removed",
                         metadata: ["file": "\(c.reservation.fileName)", "error": "\(error)"])
        }
    }

    func fail(at index: Int, _ error: Error) {
        let c = active.remove(at: index)
        try? c.sink.close()
        store.abandon(c.reservation)
        counters.failures &+= 1
        logger.error("evidence capture failed; its partial (encrypted) file was removed",
                     metadata: ["file": "\(c.reservation.fileName)", "error": "\(error)"])
    }

    // MARK: Events

    func emitCreated(_ c: ActiveCapture, reason: CloseReason, plainHash: String, fileHash: String, fileBytes: Int,
                     record: EvidenceStore.ClosedRecord) {
        let conf = store.configuration
        let first = c.alerts[0]
        let at = c.last ?? clock
        emitter.emit(.evidenceCreated, at: at, severity: c.alerts.map(\.severity.rawValue).max() ?? 0, sourceIP: c.scope.a, eventFields: { w in
            w.field("outcome", "success")
            if let f = c.first { w.field("start", f) }
            if let l = c.last { w.field("end", l) }
            w.field("reason", reason.rawValue)
        }, body: { w in
            w.field("message", "Evidence for alert \(first.id) (\(first.ruleID)): \(c.packets) packets, \(c.scope.bpf), in \(c.reservation.fileName) sha256 \(fileHash)")
            w.beginObject("file")
            w.field("name", c.reservation.fileName)
            w.field("path", c.reservation.path)
            w.field("directory", store.directory)
            w.field("extension", "age")
            w.field("size", fileBytes)
            w.field("type", "file")
            w.field("mode", "0600")
            w.beginObject("hash"); w.field("sha256", fileHash); w.endObject()
            w.endObject()
            w.beginObject("related")
            w.beginArray("ip"); for ip in c.scope.addresses { w.element(ip) }; w.endArray()
            w.beginArray("hash"); w.element(fileHash); w.element(plainHash); w.endArray()
            w.endObject()
            w.beginObject("sensor"); w.beginObject("evidence")
            w.beginArray("alert_ids"); for a in c.alerts { w.element(a.id) }; w.endArray()
            w.beginArray("rule_ids"); for a in Set(c.alerts.map(\.ruleID)).sorted() { w.element(a) }; w.endArray()
            w.beginObject("scope"); w.field("kind", c.scope.kind.rawValue); w.field("bpf", c.scope.bpf); w.endObject()
            w.field("trigger", c.trigger.name)
            w.field("packets", c.packets)
            if let f = c.first { w.field("first_packet", f) }
            if let l = c.last { w.field("last_packet", l) }
            w.field("lookback_from", c.lookbackFrom)
            w.field("plaintext_sha256", plainHash)
            w.field("plaintext_bytes", c.age.plaintextBytes)
            w.field("format", "pcapng+age")
            w.field("authorization", conf.authorization ?? "")
            if let p = conf.purpose { w.field("purpose", p) }
            if let o = conf.operatorName { w.field("operator", o) }
            w.field("retention_until", record.retentionUntil)
            w.beginObject("custody")
            w.field("log", store.custodyLogPath)
            w.field("seq", record.sequence)
            w.field("entry_sha256", record.entryHash)
            w.endObject()
            w.endObject(); w.endObject()
        })
    }

    func emitRefusal(_ alert: Alert, scope: CaptureScope, reason: String) {
        emitter.emit(.evidenceRefused, at: max(alert.timestamp, clock), severity: alert.severity.rawValue, sourceIP: scope.a, eventFields: { w in
            w.field("outcome", "failure")
            w.field("reason", reason)
        }, body: { w in
            w.field("message", "No evidence for alert \(alert.id): \(reason)")
            w.beginObject("related"); w.beginArray("ip"); for ip in scope.addresses { w.element(ip) }; w.endArray(); w.endObject()
            w.beginObject("sensor"); w.beginObject("evidence")
            w.beginArray("alert_ids"); w.element(alert.id); w.endArray()
            w.beginObject("scope"); w.field("kind", scope.kind.rawValue); w.field("bpf", scope.bpf); w.endObject()
            w.field("refused", reason)
            w.endObject(); w.endObject()
        })
    }

    func announceDeletions() {
        for d in store.takeDeletions() {
            emitter.emit(.evidenceDeleted, at: clock, eventFields: { w in
                w.field("outcome", "success")
                w.field("reason", "retention")
            }, body: { w in
                w.field("message", "Evidence file \(d.fileName) deleted at the end of its retention period")
                w.beginObject("file"); w.field("name", d.fileName); w.field("directory", store.directory)
                w.beginObject("hash"); w.field("sha256", d.sha256); w.endObject(); w.endObject()
                w.beginObject("sensor"); w.beginObject("evidence")
                w.field("retention_until", d.retentionUntil)
                w.beginObject("custody"); w.field("log", store.custodyLogPath); w.field("seq", d.sequence)
                w.field("entry_sha256", d.entryHash); w.endObject()
                w.endObject(); w.endObject()
            })
        }
    }

    /// The custody log's state at start (evidence capture off, or a torn last line cut off), once per
    /// process as a `sensor.health` event, so the SIEM learns it without reading the sensor's log.
    func announceCustody() {
        for a in store.takeAnnouncements() {
            switch a {
            case .disabled(let reason):
                emitter.emit(.health, at: clock, severity: 3) { w in
                    w.field("message", "Evidence capture is off: the custody log cannot be used (\(reason)); packet capture and detection go on")
                    w.beginObject("sensor"); w.beginObject("health")
                    w.field("check", "evidence_disabled")
                    w.field("custody_log", store.custodyLogPath)
                    w.field("reason", reason)
                    w.endObject(); w.endObject()
                }
            case .repaired(let r, let entry):
                emitter.emit(.health, at: clock, severity: 2) { w in
                    w.field("message", "Custody log repaired: a torn last line of \(r.removedBytes) bytes was cut off (\(r.problem))")
                    w.beginObject("sensor"); w.beginObject("health")
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

    /// `sensor.stats.evidence`: this worker's capture counters, the store's (shared by workers) and the
    /// custody chain's head, the anchor a SIEM keeps so that a log cut short or rewritten is found out.
    public func writeStatistics(into w: inout JSONWriter) {
        let c = counters
        let s = store.counters
        w.beginObject("evidence")
        w.field("enabled", store.isCapturing)
        w.field("captures_opened", c.capturesOpened)
        w.field("captures_closed", c.capturesClosed)
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

    /// `20240101T120000Z` for file names.
    static func compact(_ t: Timestamp) -> String {
        String(RFC3339.string(t).prefix(19).filter { $0 != "-" && $0 != ":" }) + "Z"
    }
}

/// One open capture: its encrypted pcapng stream and what the custody entry will say about it.
final class ActiveCapture {
    let reservation: EvidenceStore.Reservation
    let scope: CaptureScope
    let trigger: EvidenceTrigger
    var alerts: [Alert]
    var end: Timestamp
    let lookbackFrom: Timestamp
    let sink: FileCiphertextSink
    let age: AgeStreamWriter
    var pcap: PcapngWriter
    var packets: UInt64 = 0
    var first: Timestamp?
    var last: Timestamp?
    /// Set when a later alert extends the capture; written as the next packet's comment.
    var pendingComment: String?

    init(reservation: EvidenceStore.Reservation, scope: CaptureScope, trigger: EvidenceTrigger, alert: Alert, end: Timestamp,
         lookbackFrom: Timestamp, sink: FileCiphertextSink, age: AgeStreamWriter, pcap: PcapngWriter) {
        self.reservation = reservation
        self.scope = scope
        self.trigger = trigger
        alerts = [alert]
        self.end = end
        self.lookbackFrom = lookbackFrom
        self.sink = sink
        self.age = age
        self.pcap = pcap
    }

    func flushHeader() throws {
        try pcap.drain { try age.write($0) }
    }

    /// Writes one packet unless it would pass the size cap (then returns false: the capture is full).
    func write(_ s: PacketSummary, _ frame: UnsafeRawBufferPointer) throws -> Bool {
        // EPB: 28 bytes of header and trailer, the padded frame, and a possible comment.
        let blockBytes = 32 + (frame.count + 3) & ~3 + (pendingComment.map { $0.utf8.count + 12 } ?? 0)
        // The cap is on the encrypted file: plaintext, 16 bytes of tag per 64 KiB chunk, and the age header.
        let plaintext = Int(age.plaintextBytes) + blockBytes
        let ciphertext = plaintext + (plaintext / AgeStreamWriter.chunkSize + 1) * 16 + 512
        if ciphertext > reservation.reservedBytes { return false }
        pcap.packet(timestamp: s.timestamp, wireLength: Int(s.wireLength), captured: frame, linkType: s.linkType, comment: pendingComment)
        pendingComment = nil
        try pcap.drain { try age.write($0) }
        packets &+= 1
        if first == nil { first = s.timestamp }
        last = s.timestamp
        return true
    }

    func finish() throws -> (String, String) {
        try pcap.drain { try age.write($0) }
        let hashes = try age.finish()
        try sink.close()
        return hashes
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
