import Analyzers
import Detectors
import Events
import PacketCore
import Synchronization

/// What a worker tells the aggregators besides its records: how far its packet clock has gone (no record
/// it pushes later is stamped earlier) and whether it has finished. An aggregator merges its rings in
/// stamp order and may take a record only when no worker can still send an earlier one; a worker with
/// no traffic advances its watermark from the wall clock once a second (`Pipeline.advanceClock`), so it
/// never stalls the merge.
public final class WorkerWatermark: Sendable {
    let clock = Atomic<Int64>(.min)
    let finished = Atomic<Bool>(false)
    public init() {}
    public var value: Int64 { clock.load(ordering: .acquiring) }
    public var isFinished: Bool { finished.load(ordering: .acquiring) }
}

/// A worker's side of the host-level stage: encodes each fact once into a preallocated record and
/// routes it to the shard that owns its host (hash of the host address mod S).
///
/// Inline (replay, `hunt`, tests): one stage on the same thread applies every record at once, so the
/// detectors see the same calls in the same order as when they sat in the pipeline — and the same
/// bytes a live aggregator would see. Sharded (live): the record is copied into this worker's SPSC
/// ring for that shard; a full ring drops the record and counts it (`dropped`).
public final class HostFactPublisher: RemoteAccessObserver, DNSMessageObserver, FTPDataObserver {
    enum Route {
        case inline(HostDetectorSet)
        case rings([SPSCByteRing], WorkerWatermark)
    }
    let route: Route
    let scratch = UnsafeMutableRawPointer.allocate(byteCount: HostFactWriter.capacity, alignment: 16)
    /// Monotonic merge key: the largest packet time any record or tick carried.
    var stamp: Int64 = .min
    var started = false
    /// Packet time of the last watermark published (`.max` inline: never published).
    var publishedAt: Int64
    /// Packet time between two watermarks while packets flow: the aggregators' merge trails a busy
    /// worker by about this much, so a ring needs to hold only this much of its facts.
    static let watermarkInterval: Int64 = 10_000_000

    /// Facts wanted by the stage (the others are never encoded).
    let wantsFlows: Bool
    let wantsLateral: Bool
    let wantsDNS: Bool
    let learnsPortPopularity: Bool
    /// The C2 analysers are in the pipeline and send each flow end (with their facts) themselves.
    var flowEndsFromC2 = false
    /// Analysers whose per-flow facts travel with each flow end.
    var identifier: ProtocolIdentifier?
    var tls: TLSAnalyzer?
    var http: HTTPAnalyzer?

    init(route: Route, plan: HostDetectorPlan) {
        self.route = route
        if case .inline = route { publishedAt = .max } else { publishedAt = .min }
        wantsFlows = plan.wantsFlows
        wantsLateral = plan.wantsLateral
        wantsDNS = plan.wantsDNS
        learnsPortPopularity = plan.c2Rules.enabled
    }

    deinit { scratch.deallocate() }

    /// The inline stage (replay), if this publisher has one.
    public var inlineStage: HostDetectorSet? {
        if case .inline(let s) = route { return s }
        return nil
    }

    /// Records dropped because a ring was full, over all of this worker's rings.
    public var droppedRecords: UInt64 {
        guard case .rings(let rings, _) = route else { return 0 }
        return rings.reduce(0) { $0 &+ $1.droppedCount }
    }

    /// Records handed to a ring or to the inline stage.
    public private(set) var records: UInt64 = 0

    // MARK: Encoding

    @inline(__always) func begin(_ kind: HostFactKind, at t: Timestamp) -> HostFactWriter {
        if t.nanoseconds > stamp { stamp = t.nanoseconds }
        var w = HostFactWriter(base: scratch)
        w.reset(stamp: stamp, kind: kind)
        return w
    }

    /// Sends the record to the shard of `host` (all shards when `host` is nil).
    func send(_ w: HostFactWriter, host: IPAddress?) {
        records &+= 1
        switch route {
        case .inline(let stage):
            stage.apply(w.bytes)
        case .rings(let rings, _):
            if rings.count == 1 { rings[0].push(w.bytes); return }
            guard let host else {
                for r in rings { r.push(w.bytes) }
                return
            }
            rings[Self.shard(of: host, count: rings.count)].push(w.bytes)
        }
    }

    /// A fixed mix (not Swift's per-process seeded `Hasher`), so a host lands on the same shard in every run.
    static func shard(of a: IPAddress, count: Int) -> Int {
        var h = (a.high &* 0x9E37_79B9_7F4A_7C15) ^ (a.low &* 0xBF58_476D_1CE4_E5B9)
        h ^= h >> 31
        h = h &* 0x94D0_49BB_1331_11EB
        h ^= h >> 29
        return Int(h % UInt64(count))
    }

    // MARK: Facts

    func clockStarted(at t: Timestamp) {
        guard !started else { return }
        started = true
        guard wantsLateral else { return }
        var w = begin(.clockStarted, at: t)
        w.time(t)
        send(w, host: nil)
    }

    func flowEnded(_ flow: FlowRecord, reason: FlowEndReason, slot: Int32) {
        guard wantsFlows else { return }
        var w = begin(.flowEnded, at: flow.lastSeen)
        w.flow(flow)
        w.u8(reason.rawValue)
        w.labels(flow, slot: slot, identifier: identifier, tls: tls, http: http)
        send(w, host: flow.originator)
        // With several shards, the others learn port popularity from it too (a rare case: S > 1).
        guard learnsPortPopularity, case .rings(let rings, _) = route, rings.count > 1 else { return }
        let owner = Self.shard(of: flow.originator, count: rings.count)
        var e = begin(.flowElsewhere, at: flow.lastSeen)
        e.flow(flow)
        for (i, ring) in rings.enumerated() where i != owner { ring.push(e.bytes) }
    }

    func tcpFlowStarted(source: IPAddress, destination: IPAddress, port: UInt16, at t: Timestamp) {
        var w = begin(.tcpFlowStarted, at: t)
        w.ip(source); w.ip(destination); w.u16(port); w.time(t)
        send(w, host: source)
    }

    func tcpAccepted(server: IPAddress, client: IPAddress, port: UInt16, at t: Timestamp) {
        var w = begin(.tcpAccepted, at: t)
        w.ip(server); w.ip(client); w.u16(port); w.time(t)
        send(w, host: client)
    }

    public func observe(_ fact: RemoteAccessFact, on ep: SessionEndpoints, at t: Timestamp) {
        guard wantsLateral else { return }
        var w = begin(.remoteAccess, at: t)
        w.endpoints(ep); w.time(t); w.remoteAccess(fact)
        // A domain controller learned from any client's Kerberos exchange matters to every shard.
        if case .kerberosServer = fact { send(w, host: nil) } else { send(w, host: ep.client) }
    }

    public func dnsMessage(_ f: DNSMessageFacts) {
        guard wantsDNS else { return }
        var w = begin(.dnsMessage, at: f.timestamp)
        w.time(f.timestamp); w.ip(f.client); w.ip(f.server); w.u16(f.clientPort); w.u16(f.serverPort)
        w.u8(f.ipProtocol); w.u8(f.appProtocol.rawValue); w.bool(f.isResponse); w.u16(f.id); w.u16(f.queryType)
        w.u16(f.responseCode)
        w.u32(UInt32(bitPattern: Int32(clamping: f.registeredDomainStart))); w.u32(UInt32(bitPattern: Int32(clamping: f.publicSuffixStart)))
        w.u32(UInt32(clamping: f.messageLength)); w.u32(UInt32(clamping: f.answerCount)); w.u32(UInt32(clamping: f.answerDataBytes))
        // DNS names are at most 255 bytes: never cut (the offsets above point into them).
        w.bytes(f.name, limit: 1024)
        send(w, host: f.client)
    }

    /// Rare (one per PASV/PORT): the data connection may start on another worker than its control one.
    public func ftpDataAnnounced(_ channel: FTPDataChannels.Expected, at time: Timestamp) {
        guard learnsPortPopularity else { return }
        var w = begin(.ftpDataAnnounced, at: time)
        w.ip(channel.host); w.u16(channel.port); w.time(channel.until); w.time(time)
        send(w, host: nil)
    }

    // MARK: Clock

    /// Every packet: one subtraction and compare; a release store of the watermark every
    /// `watermarkInterval` of packet time (live only).
    @inline(__always) func packetTime(_ t: Timestamp) {
        if t.nanoseconds &- publishedAt > Self.watermarkInterval { publishWatermark(t) }
    }

    /// Promises the aggregators that nothing this worker sends later is stamped before `t` (its packet
    /// clock: live, also the wall clock when the link is quiet, as `Pipeline.advanceClock` assumes).
    @inline(never) func publishWatermark(_ t: Timestamp) {
        guard case .rings(_, let mark) = route else { return }
        if t.nanoseconds > stamp { stamp = t.nanoseconds }
        publishedAt = t.nanoseconds
        mark.clock.store(stamp, ordering: .releasing)
    }

    /// The pipeline ticked (once per packet-clock second): a tick record to every shard, then the watermark.
    func tick(_ now: Timestamp) {
        var w = begin(.tick, at: now)
        w.time(now)
        send(w, host: nil)
        if case .rings(_, let mark) = route {
            publishedAt = now.nanoseconds
            mark.clock.store(stamp, ordering: .releasing)
        }
    }

    func finish(_ now: Timestamp) {
        if now.nanoseconds > stamp { stamp = now.nanoseconds }
        switch route {
        case .inline(let stage): stage.finish(now)
        case .rings(_, let mark):
            mark.clock.store(stamp, ordering: .releasing)
            mark.finished.store(true, ordering: .releasing)
        }
    }
}

/// The worker-side pipeline member of the host-level stage: runs the Kerberos datagram analyser (one
/// per-packet entry for both: each entry costs a retain/release pair per packet) and turns new TCP
/// flows, SYN-ACKs and flow ends into records for the stage, and clocks it. Per packet it reads a few
/// header fields; it encodes only once per new flow, SYN-ACK or flow end. The SMB/DCE-RPC/Kerberos
/// analysers and the DNS analyser hand their facts to the publisher directly.
final class HostFactTap: PacketAnalyzer {
    let name = "host-facts"
    /// When lateral movement is on (`LateralMovementWiring`). Both are `let`s: calls on them need no
    /// reference counting per packet (a `var` costs a retain/release pair on every packet).
    let kerberos: KerberosAnalyzer?
    let publisher: HostFactPublisher

    init(kerberos: KerberosAnalyzer?, publisher: HostFactPublisher) {
        self.kerberos = kerberos
        self.publisher = publisher
    }

    /// In the pipeline only when it has something to do: a host-level detector to feed, or Kerberos.
    var isNeeded: Bool { kerberos != nil || publisher.wantsFlows || publisher.wantsDNS }

    func packet(_ context: PacketContext, flows: FlowTable) {
        kerberos?.packet(context, flows: flows)
        let p = context.packet
        if !publisher.started { publisher.clockStarted(at: p.timestamp) }
        publisher.packetTime(p.timestamp)
        guard publisher.wantsLateral, p.ipProtocol == IPProtocol.tcp else { return }
        if context.isNewFlow {
            publisher.tcpFlowStarted(source: p.source, destination: p.destination, port: p.destinationPort, at: p.timestamp)
        } else if !context.fromOriginator && p.tcpFlags.contains(.syn) && p.tcpFlags.contains(.ack) {
            publisher.tcpAccepted(server: p.source, client: p.destination, port: p.sourcePort, at: p.timestamp)
        }
    }

    func flowEnded(_ flow: FlowRecord, reason: FlowEndReason, slot: Int32) {
        kerberos?.flowEnded(flow, reason: reason, slot: slot)
        // With the C2 analysers, the flow end leaves from C2Family (before QUIC releases its facts).
        if !publisher.flowEndsFromC2 { publisher.flowEnded(flow, reason: reason, slot: slot) }
    }

    func tick(_ now: Timestamp) { publisher.tick(now) }
    func finish(_ now: Timestamp) { publisher.finish(now) }
}
