import Crypto
import Events
import Foundation
import Logging
import PacketCore
import Synchronization

/// Evidence capture for the whole process: decides once per alert, whichever thread raised it (a
/// worker's detectors or a host-level aggregator), and makes one capture every worker writes its share of.
///
/// On an alert that a trigger in `Rules/evidence.yaml` selects, it either extends an open capture whose
/// scope covers the alert's (the capture's end, an atomic, moves for every worker), or refuses (no
/// address to scope on, a global cap, evidence off: counted, one `denied` event), or opens a capture:
/// a reservation in the store, a shared size budget, and the set of workers expected to write a part.
/// Workers learn of it through `generation`, one relaxed atomic load at their once-a-second tick (and at
/// once for an alert raised on their own thread, so a replay opens its capture at the alert's packet).
/// Each writes the scope's packets from its lookback ring, then its live packets until the capture's end
/// on its packet clock, to an encrypted part; when the last part closes, that thread merges the parts by
/// timestamp into the one age-encrypted pcapng, commits it to custody once and emits one
/// `spanwatch.evidence` event (`created`, or `denied` with `no_packets_in_scope` when no worker had any).
///
/// Workers that have finished (end of input, shutdown) hand their lookback ring over: an alert raised
/// after a worker finished (a host-level detector concluding at shutdown) gets that worker's lookback,
/// written by the alert's thread; after every worker finished, the capture is lookback only.
///
/// Never on the packet path: its lock is taken per alert, per capture a worker joins or closes, and at finish.
public final class EvidenceCoordinator: @unchecked Sendable {
    public struct Counters: Sendable, Equatable {
        public var alertsSeen: UInt64 = 0
        public var alertsTriggering: UInt64 = 0
        public var capturesOpened: UInt64 = 0
        public var capturesExtended: UInt64 = 0
        public var capturesClosed: UInt64 = 0
        public var refusedConcurrency: UInt64 = 0
        public var refusedDiskCap: UInt64 = 0
        public var refusedCustody: UInt64 = 0
        public var refusedNoScope: UInt64 = 0
        public var failures: UInt64 = 0
        public var emptyDiscarded: UInt64 = 0
        /// Captures opened after every worker had finished (lookback of their rings only).
        public var afterInput: UInt64 = 0
        /// Packets of finished workers' rings written into captures by the alert's thread.
        public var lookbackAfterFinish: UInt64 = 0
    }

    public let store: EvidenceStore
    public let triggers: [EvidenceTrigger]
    let logger: Logger
    let systemDescription: String
    /// Seals parts; exists only in this process's memory (parts never outlive the process).
    let partKey = SymmetricKey(size: .bits256)
    let lock = NSLock()
    /// Serialises reading finished workers' rings (two alert threads at once).
    let finishedRingLock = NSLock()
    let generationAtomic = Atomic<UInt64>(0)

    // Under `lock`.
    var open: [SharedCapture] = []
    var workers = 0
    var running: Set<Int> = []
    var finishedRings: [(worker: Int, ring: LookbackRing)] = []
    var nextPartID: UInt32 = 0
    var _counters = Counters()

    public init(store: EvidenceStore, triggers: [EvidenceTrigger], logger: Logger) {
        self.store = store
        self.triggers = triggers
        self.logger = logger
        systemDescription = ProcessInfo.processInfo.operatingSystemVersionString
    }

    public var counters: Counters { lock.withLock { _counters } }
    func count(_ body: (inout Counters) -> Void) { lock.withLock { body(&_counters) } }
    /// Captures decided and not yet merged.
    public var openCaptures: Int { lock.withLock { open.count } }
    /// Bumped whenever a capture opens: a worker that saw the same value has nothing to join.
    public var generation: UInt64 { generationAtomic.load(ordering: .acquiring) }

    /// A new worker's index (its parts are expected in captures opened from now until it finishes).
    func register() -> Int {
        lock.withLock {
            let w = workers
            workers += 1
            running.insert(w)
            return w
        }
    }

    /// Registers with the emitter of a thread that raises alerts and has no evidence manager (a host-level
    /// aggregator): its alerts are decided here, and their refusals reported through it. `unowned`: the
    /// emitter keeps the closure.
    public func observeAlerts(of emitter: EventEmitter) {
        emitter.alertObservers.append { [unowned emitter, self] alert in self.alertRaised(alert, clock: nil, emitter: emitter) }
    }

    // MARK: Deciding

    /// Opens, extends or refuses a capture for `alert`. `clock`: the raising worker's packet clock (a
    /// capture starts no earlier); `emitter`: the raising thread's, for a refusal or a capture made here.
    public func alertRaised(_ alert: Alert, clock: Timestamp?, emitter: EventEmitter) {
        lock.lock()
        _counters.alertsSeen &+= 1
        guard let trigger = triggers.first(where: { $0.matches(alert) }) else { lock.unlock(); return }
        _counters.alertsTriggering &+= 1
        guard let scope = CaptureScope(kind: trigger.scope, alert: alert) else {
            _counters.refusedNoScope &+= 1
            lock.unlock()
            logger.warning("alert names no address to scope evidence on", metadata: ["alert": "\(alert.id)", "rule": "\(alert.ruleID)"])
            return
        }
        let now = max(alert.timestamp, clock ?? alert.timestamp)
        let end = now + trigger.duration
        if let c = open.first(where: { $0.extendable && $0.scope.covers(scope) }) {
            c.alerts.append(alert)
            if end > c.end { c.endNanoseconds.store(end.nanoseconds, ordering: .releasing) }
            let note = "alert \(alert.id) (\(alert.ruleID) \(alert.ruleName), \(alert.category.rawValue), severity \(alert.severity.name)) at \(alert.timestamp) extended this capture to \(c.end)"
            c.notes.append((now, note))
            _ = c.claim(SharedCapture.commentBytes(note))
            _counters.capturesExtended &+= 1
            lock.unlock()
            return
        }
        let stem = "\(Self.compact(alert.timestamp))-\(alert.id.prefix(12))"
        let reservation: EvidenceStore.Reservation
        switch store.reserve(bytes: trigger.maxBytes, stem: stem) {
        case .success(let r): reservation = r
        case .failure(let refusal):
            switch refusal.reason {
            case .concurrencyCap: _counters.refusedConcurrency &+= 1
            case .diskCap: _counters.refusedDiskCap &+= 1
            case .custodyUnavailable: _counters.refusedCustody &+= 1
            case .noFreeName: _counters.failures &+= 1
            }
            lock.unlock()
            logger.warning("evidence capture refused", metadata: ["alert": "\(alert.id)", "reason": "\(refusal.reason.rawValue)"])
            Self.emitRefusal(alert, scope: scope, reason: refusal.reason.rawValue, at: now, emitter: emitter)
            return
        }
        let c = makeCapture(alert: alert, trigger: trigger, scope: scope, end: end, reservation: reservation)
        _counters.capturesOpened &+= 1
        if running.isEmpty { _counters.afterInput &+= 1 }
        let finished = finishedRings
        // No worker at all (none registered): nothing will write a part, so it is decided here.
        let nobody = c.waiting.isEmpty
        if !nobody {
            open.append(c)
            _ = generationAtomic.wrappingAdd(1, ordering: .releasing)
        }
        lock.unlock()
        if nobody { merge(c, emitter: emitter, clock: now); return }
        // Finished workers write no more: their share is their ring's lookback, written here.
        for f in finished { lookbackFromFinished(c, worker: f.worker, ring: f.ring, emitter: emitter, clock: now) }
    }

    func makeCapture(alert: Alert, trigger: EvidenceTrigger, scope: CaptureScope, end: Timestamp,
                     reservation: EvidenceStore.Reservation) -> SharedCapture {
        let conf = store.configuration
        let lookback = min(trigger.lookback ?? .seconds(conf.lookbackSeconds), .seconds(conf.lookbackSeconds))
        let from = Timestamp(nanoseconds: alert.timestamp.nanoseconds &- lookback.nanoseconds)
        let alertLine = "alert \(alert.id): rule \(alert.ruleID) \(alert.ruleName) (\(alert.category.rawValue), severity \(alert.severity.name)) at \(alert.timestamp)"
        let comments = [
            "sensor: \(store.sensorName) on \(store.hostname)",
            alertLine,
            "scope: \(scope.bpf)",
            "authorization: \(conf.authorization ?? "")",
            "purpose: \(conf.purpose ?? "")",
            "operator: \(conf.operatorName ?? "")",
            "trigger: \(trigger.name); lookback from \(from); capture until \(end) unless extended; cap \(reservation.reservedBytes) bytes",
        ] + (conf.lookbackFlowBytes > 0 ? ["lookback packets keep headers only once their flow is past \(conf.lookbackFlowBytes) bytes"] : [])
        var pcap = Self.writer(conf, scope: scope, alert: alert, alertLine: alertLine)
        pcap.sectionHeader(comments: comments, os: systemDescription, application: "sensor \(ObserverInfo.softwareVersion) (evidence)")
        var header: [UInt8] = []
        pcap.drain { header.append(contentsOf: $0) }
        _ = pcap.interface(for: LinkType(rawValue: 1))
        var idb = 0
        pcap.drain { idb = $0.count }
        return SharedCapture(reservation: reservation, scope: scope, trigger: trigger, alert: alert, end: end, lookbackFrom: from,
                             comments: comments, alertLine: alertLine, sectionHeader: header, interfaceBlockBytes: idb,
                             workers: running.union(finishedRings.map(\.worker)))
    }

    static func writer(_ conf: EvidenceConfiguration, scope: CaptureScope, alert: Alert, alertLine: String) -> PcapngWriter {
        PcapngWriter(resolution: conf.timestampResolution, snapLength: conf.snapLength,
                     interfaceDescription: "sensor evidence for alert \(alert.id), scope \(scope.bpf)",
                     captureFilter: scope.bpf, interfaceComments: ["scope: \(scope.bpf)", alertLine])
    }

    // MARK: Workers

    /// The captures `worker` has not joined yet (it joins them now), with a part number for each; updates
    /// `seen` to the generation they account for.
    func join(worker: Int, seen: inout UInt64) -> [(SharedCapture, UInt32)] {
        lock.withLock {
            seen = generationAtomic.load(ordering: .acquiring)
            return joinOpen(worker: worker)
        }
    }

    /// Whether `worker` may close its part for `reason` at `clock`: not for its duration when an
    /// extension moved the end past `clock` meanwhile. A capture a part closed for its duration or its
    /// size cap takes no more extensions (that worker stopped writing it).
    func mayClose(_ c: SharedCapture, reason: EvidenceCloseReason, at clock: Timestamp) -> Bool {
        lock.withLock {
            if reason == .duration && clock.nanoseconds <= c.end.nanoseconds { return false }
            if reason != .endOfInput { c.extendable = false }
            if reason == .sizeCap || c.isFull { c.reason = .sizeCap } else if reason == .duration { c.reason = .duration }
            return true
        }
    }

    /// Records `worker`'s closed part (or its failure); true when it was the last one and the caller
    /// must merge the capture (`merge`).
    func partClosed(_ c: SharedCapture, worker: Int, _ result: Result<EvidencePart.Closed, EvidenceError>) -> Bool {
        lock.withLock {
            switch result {
            case .success(let p): c.parts.append(p)
            case .failure(let e): if c.failure == nil { c.failure = e.description }
            }
            c.waiting.remove(worker)
            guard c.waiting.isEmpty else { return false }
            open.removeAll { $0 === c }
            return true
        }
    }

    /// `worker` writes no more: from now on captures get its ring's lookback from the alert's thread.
    /// Called after the worker closed its parts; the lock hands the ring over (it is read only from now).
    /// Returns the captures opened since the worker last joined (it writes their lookback before it goes).
    func finished(worker: Int, ring: LookbackRing) -> [(SharedCapture, UInt32)] {
        lock.withLock {
            running.remove(worker)
            finishedRings.append((worker, ring))
            return joinOpen(worker: worker)
        }
    }

    /// Under the lock: the open captures `worker` still owes a part to, each with a new part number.
    private func joinOpen(worker: Int) -> [(SharedCapture, UInt32)] {
        var out: [(SharedCapture, UInt32)] = []
        for c in open where c.waiting.contains(worker) && !c.joined.contains(worker) {
            c.joined.insert(worker)
            nextPartID &+= 1
            out.append((c, nextPartID))
        }
        return out
    }

    func lookbackFromFinished(_ c: SharedCapture, worker: Int, ring: LookbackRing, emitter: EventEmitter, clock: Timestamp) {
        let id = lock.withLock { () -> UInt32 in
            c.joined.insert(worker)
            nextPartID &+= 1
            return nextPartID
        }
        let result: Result<EvidencePart.Closed, EvidenceError>
        do throws(EvidenceError) {
            let part = try EvidencePart(capture: c, worker: worker, id: id, key: partKey, store: store)
            finishedRingLock.lock()
            defer { finishedRingLock.unlock() }
            let n = try part.writeLookback(ring)
            count { $0.lookbackAfterFinish &+= n }
            if c.isFull { _ = mayClose(c, reason: .sizeCap, at: clock) }
            result = .success(try part.finish())
        } catch {
            result = .failure(error)
        }
        if partClosed(c, worker: worker, result) { merge(c, emitter: emitter, clock: clock) }
    }

    /// `20240101T120000Z` for file names.
    static func compact(_ t: Timestamp) -> String {
        String(RFC3339.string(t).prefix(19).filter { $0 != "-" && $0 != ":" }) + "Z"
    }
}
