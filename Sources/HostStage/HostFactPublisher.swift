import Analyzers
#if canImport(Glibc)
import Glibc
#endif
import Detectors
import Events
import PacketCore
import Synchronization

/// What a worker tells the aggregators besides its records: how far its packet clock has gone (no record
/// it pushes later is stamped earlier) and whether it has finished. An aggregator merges its rings in
/// stamp order and may take a record only when no worker can still send an earlier one; a worker with
/// no traffic advances its watermark from the wall clock once a second (`Pipeline.advanceClock`), so it
/// never stalls the merge. Offline (`waitsWhenFull`) the merge key is the reader's input sequence
/// instead, and the packet time the worker ended at is published beside it (`endTime`).
public final class WorkerWatermark: Sendable {
    let clock = Atomic<Int64>(.min)
    let finished = Atomic<Bool>(false)
    let end = Atomic<Int64>(.min)
    public init() {}
    public var value: Int64 { clock.load(ordering: .acquiring) }
    public var isFinished: Bool { finished.load(ordering: .acquiring) }
    /// The packet clock at the worker's end (set before `isFinished`).
    public var endTime: Int64 { end.load(ordering: .acquiring) }
}

/// A worker's side of the host-level stage: encodes each fact once into a preallocated record and
/// routes it to the shard that owns its host (hash of the host address mod S).
///
/// Inline (replay, `hunt`, tests): one stage on the same thread applies every fact at once, so the
/// detectors see the same facts in the same order as live — and what a live aggregator would decode
/// (a fact the record carries whole is handed over without one, `HostFactCodec.carriesWhole`). Sharded (live): the record is copied into this worker's SPSC ring for that shard; a full
/// ring drops the record and counts it (`dropped`).
public final class HostFactPublisher: RemoteAccessObserver, DNSMessageObserver, FTPDataObserver, HTTPRequestObserver {
    public enum Route {
        case inline(HostDetectorSet)
        case rings([SPSCByteRing], WorkerWatermark)
        /// Out of the process (`--host-facts kafka://…`): each record in a `HostFactEnvelope` naming
        /// this producer, one partition per shard; watermarks and the end go to every partition.
        case transport(any HostFactTransport, HostFactEnvelope.Producer)
    }
    let route: Route
    /// The rings' producer handles (`.rings`; empty otherwise), so no ring's reference count is touched
    /// per record.
    let producers: [SPSCByteRing.Producer]
    /// Room for an envelope header, then the record (the writer starts at `record`).
    let scratch = UnsafeMutableRawPointer.allocate(byteCount: HostFactEnvelope.maxHeader + HostFactWriter.capacity, alignment: 16)
    var record: UnsafeMutableRawPointer { scratch + HostFactEnvelope.maxHeader }
    /// Monotonic merge key: the largest packet time any record or tick carried (offline: the largest
    /// input sequence, `sequence`).
    var stamp: Int64 = .min
    /// Offline (`waitsWhenFull`): the reader's input sequence number of the packet or clock record being
    /// processed (`OfflineFanout`), set by the worker's ring source before each one. Stamping records
    /// with it rather than packet time makes the merge follow the input order, which one worker sees:
    /// with packet times, records of equal stamp from two workers wait for each other's watermark to
    /// pass that time, and when the input's clock stands still (a record far in the future, then older
    /// ones) every record ties, a worker's ring fills and the reader, that worker and the merge wait
    /// on each other for ever.
    public var sequence: Int64 = .min
    public private(set) var started = false
    /// Packet time of the last watermark published (`.max` inline: never published).
    var publishedAt: Int64
    /// Packet time between two watermarks while packets flow: the aggregators' merge trails a busy
    /// worker by about this much, so a ring needs to hold only this much of its facts.
    static let watermarkInterval: Int64 = 10_000_000
    /// The same out of the process: a watermark record goes to every partition, and the tick records
    /// every second of packet time carry the watermark too.
    static let transportWatermarkInterval: Int64 = 1_000_000_000

    let watermarkInterval: Int64
    /// The facts some host detector reads (the others are never encoded).
    public let wanted: HostFactKinds
    /// Offline (replay with several workers): a full ring makes the worker wait instead of dropping, and
    /// records are stamped with `sequence`.
    let waitsWhenFull: Bool

    /// The merge key of a record or watermark at packet time `t`.
    @inline(__always) func key(_ t: Timestamp) -> Int64 { waitsWhenFull ? sequence : t.nanoseconds }

    public init(route: Route, wanted: HostFactKinds, waitsWhenFull: Bool = false) {
        self.route = route
        if case .inline(let s) = route { inlineStage = s } else { inlineStage = nil }
        if case .rings(let rings, _) = route { producers = rings.map(\.producer) } else { producers = [] }
        self.waitsWhenFull = waitsWhenFull
        if case .inline = route { publishedAt = .max } else { publishedAt = .min }
        if case .transport = route { watermarkInterval = Self.transportWatermarkInterval } else { watermarkInterval = Self.watermarkInterval }
        self.wanted = wanted
    }

    deinit { scratch.deallocate() }

    /// The inline stage (replay), if this publisher has one (the route's, held apart so a fact reaches
    /// it without taking the route apart).
    public let inlineStage: HostDetectorSet?

    /// Records dropped because a ring was full, over all of this worker's rings.
    public var droppedRecords: UInt64 {
        guard case .rings(let rings, _) = route else { return 0 }
        return rings.reduce(0) { $0 &+ $1.droppedCount }
    }

    /// Records handed to a ring or to the inline stage.
    public private(set) var records: UInt64 = 0

    /// Encodes `fact` and sends it to the shard of `host` (every shard when `host` is nil).
    public func publish(_ fact: HostFact, at t: Timestamp, host: IPAddress?) {
        let k = key(t)
        if k > stamp { stamp = k }
        records &+= 1
        // Inline, a fact its record would carry unchanged reaches the detectors as it is: they read what
        // the record would give them, without writing and reading it. Any other (a string the record
        // cuts, a figure it clamps) goes through the record, as it would live.
        if let stage = inlineStage, HostFactCodec.carriesWhole(fact) {
            stage.apply(fact)
            return
        }
        var w = HostFactWriter(base: record)
        HostFactCodec.encode(fact, stamp: stamp, into: &w)
        switch route {
        case .inline(let stage):
            stage.apply(w.bytes)
        case .transport(let t, let producer):
            let bytes = envelope(.fact, producer, record: w.count)
            guard let host else {
                for p in 0..<t.partitions { t.send(bytes, partition: p, host: nil) }
                return
            }
            t.send(bytes, partition: Self.shard(of: host, count: t.partitions), host: host)
        case .rings:
            if producers.count == 1 { send(w.bytes, to: producers[0]); return }
            guard let host else {
                for r in producers { send(w.bytes, to: r) }
                return
            }
            send(w.bytes, to: producers[Self.shard(of: host, count: producers.count)])
        }
    }

    /// Writes the envelope header in front of the record (`count` bytes at `record`); returns both.
    func envelope(_ type: HostFactEnvelope.RecordType, _ producer: HostFactEnvelope.Producer, record count: Int) -> UnsafeRawBufferPointer {
        let start = record - HostFactEnvelope.headerLength(producer)
        let n = HostFactEnvelope.writeHeader(start, type: type, watermark: stamp, producer: producer)
        return UnsafeRawBufferPointer(start: start, count: n + count)
    }

    /// A watermark or end record to every partition.
    func broadcast(_ type: HostFactEnvelope.RecordType) {
        guard case .transport(let t, let producer) = route else { return }
        let bytes = envelope(type, producer, record: 0)
        for p in 0..<t.partitions { t.send(bytes, partition: p, host: nil) }
    }

    @inline(__always) func send(_ bytes: UnsafeRawBufferPointer, to ring: SPSCByteRing.Producer) {
        if waitsWhenFull { sendWaiting(bytes, to: ring) } else { ring.push(bytes) }
    }

    /// Offline: waits for the aggregator to make room. The watermark goes out first (every later
    /// record is stamped at least `stamp`), so the merge can take what this ring already holds.
    @inline(never) func sendWaiting(_ bytes: UnsafeRawBufferPointer, to ring: SPSCByteRing.Producer) {
        let none = UnsafeRawBufferPointer(start: nil, count: 0)
        if ring.write(bytes, none) { ring.publish(); return }
        if case .rings(_, let mark) = route { mark.clock.store(stamp, ordering: .releasing) }
        while !ring.write(bytes, none) { usleep(50) }
        ring.publish()
    }

    /// A fixed mix (not Swift's per-process seeded `Hasher`), so a host lands on the same shard in every run.
    public static func shard(of a: IPAddress, count: Int) -> Int {
        Int(shardHash(of: a) % UInt64(count))
    }

    /// The hash `shard(of:count:)` takes the remainder of (a Kafka record's route: partition = route mod partitions).
    public static func shardHash(of a: IPAddress) -> UInt64 {
        var h = (a.high &* 0x9E37_79B9_7F4A_7C15) ^ (a.low &* 0xBF58_476D_1CE4_E5B9)
        h ^= h >> 31
        h = h &* 0x94D0_49BB_1331_11EB
        h ^= h >> 29
        return h
    }

    // MARK: Facts

    public func clockStarted(at t: Timestamp) {
        guard !started else { return }
        started = true
        guard wanted.contains(.clockStarted) else { return }
        publish(.clockStarted(t), at: t, host: nil)
    }

    public func flowEnded(_ flow: FlowRecord, reason: FlowEndReason, labels: FlowLabels) {
        guard wanted.contains(.flowEnded) else { return }
        publish(.flowEnded(flow, reason, labels), at: flow.lastSeen, host: flow.originator)
        // With several shards, the others learn port popularity from it too (a rare case: S > 1).
        guard wanted.contains(.flowElsewhere) else { return }
        switch route {
        case .inline: return
        case .rings:
            guard producers.count > 1 else { return }
            let owner = Self.shard(of: flow.originator, count: producers.count)
            var e = HostFactWriter(base: record)
            HostFactCodec.encode(.flowElsewhere(flow), stamp: stamp, into: &e)
            for (i, ring) in producers.enumerated() where i != owner { send(e.bytes, to: ring) }
        case .transport(let t, let producer):
            guard t.partitions > 1 else { return }
            let owner = Self.shard(of: flow.originator, count: t.partitions)
            var e = HostFactWriter(base: record)
            HostFactCodec.encode(.flowElsewhere(flow), stamp: stamp, into: &e)
            let bytes = envelope(.fact, producer, record: e.count)
            for p in 0..<t.partitions where p != owner { t.send(bytes, partition: p, host: nil) }
        }
    }

    public func tcpFlowStarted(source: IPAddress, destination: IPAddress, port: UInt16, at t: Timestamp) {
        guard wanted.contains(.tcpFlowStarted) else { return }
        publish(.tcpFlowStarted(source: source, destination: destination, port: port, at: t), at: t, host: source)
    }

    public func tcpAccepted(server: IPAddress, client: IPAddress, port: UInt16, at t: Timestamp) {
        guard wanted.contains(.tcpAccepted) else { return }
        publish(.tcpAccepted(server: server, client: client, port: port, at: t), at: t, host: client)
    }

    public func observe(_ fact: RemoteAccessFact, on ep: SessionEndpoints, at t: Timestamp) {
        guard wanted.contains(.remoteAccess) else { return }
        // A domain controller learned from any client's Kerberos exchange matters to every shard.
        let host: IPAddress? = if case .kerberosServer = fact { nil } else { ep.client }
        publish(.remoteAccess(fact, ep, at: t), at: t, host: host)
    }

    public func dnsMessage(_ f: DNSMessageFacts) {
        guard wanted.contains(.dnsMessage) else { return }
        publish(.dnsMessage(f), at: f.timestamp, host: f.client)
    }

    /// Rare (one per PASV/PORT): the data connection may start on another worker than its control one.
    public func ftpDataAnnounced(_ channel: FTPDataChannels.Expected, at time: Timestamp) {
        guard wanted.contains(.ftpDataAnnounced) else { return }
        publish(.ftpDataAnnounced(channel, at: time), at: time, host: nil)
    }

    /// Once per request head, to the client's shard (with its flows' ends).
    public func httpRequest(_ r: HTTPRequestFact) {
        guard wanted.contains(.httpRequest) else { return }
        publish(.httpRequest(r), at: r.time, host: r.client)
    }

    /// A UDP request after a silence (`HostFactTap`), to the client's shard.
    public func udpRequest(_ r: UDPRequestFact) {
        publish(.udpRequest(r), at: r.time, host: r.client)
    }

    // MARK: Clock

    /// Every packet: one subtraction and compare; a release store of the watermark every
    /// `watermarkInterval` of packet time (live only).
    @inline(__always) public func packetTime(_ t: Timestamp) {
        if t.nanoseconds &- publishedAt > watermarkInterval { publishWatermark(t) }
    }

    /// Promises the aggregators that nothing this worker sends later is stamped before `t` (its packet
    /// clock: live, also the wall clock when the link is quiet, as `Pipeline.advanceClock` assumes).
    @inline(never) public func publishWatermark(_ t: Timestamp) {
        switch route {
        case .inline: return
        case .rings(_, let mark):
            let k = key(t)
            if k > stamp { stamp = k }
            publishedAt = t.nanoseconds
            mark.clock.store(stamp, ordering: .releasing)
        case .transport:
            // Out of the process a watermark is a record to every partition: at most one per interval.
            guard t.nanoseconds &- publishedAt >= watermarkInterval else { return }
            if t.nanoseconds > stamp { stamp = t.nanoseconds }
            publishedAt = t.nanoseconds
            broadcast(.watermark)
        }
    }

    /// The pipeline ticked (once per packet-clock second): a tick record to every shard, then the watermark.
    /// Offline the tick is stamped one above the clock record's sequence, so it sorts after every
    /// worker's flow ends of that tick (one pipeline expires its flows, then ticks its detectors).
    public func tick(_ now: Timestamp) {
        if waitsWhenFull { sequence &+= 1 }
        publish(.tick(now), at: now, host: nil)
        switch route {
        case .inline: break
        case .rings(_, let mark):
            publishedAt = now.nanoseconds
            mark.clock.store(stamp, ordering: .releasing)
        case .transport:
            // The tick record carried the watermark to every partition.
            publishedAt = now.nanoseconds
        }
    }

    public func finish(_ now: Timestamp) {
        let k = key(now)
        if k > stamp { stamp = k }
        switch route {
        case .inline(let stage): stage.finish(now)
        case .rings(_, let mark):
            mark.end.store(now.nanoseconds, ordering: .releasing)
            mark.clock.store(stamp, ordering: .releasing)
            mark.finished.store(true, ordering: .releasing)
        case .transport:
            broadcast(.end)
        }
    }
}

/// Reads a flow's labels (`FlowLabels`) from the analysers that hold per-flow facts: the C2 family's
/// content identification, TLS and HTTP analysers, when that family runs.
public struct FlowLabeler {
    let identifier: ProtocolIdentifier?
    let tls: TLSAnalyzer?
    let http: HTTPAnalyzer?

    public init(identifier: ProtocolIdentifier?, tls: TLSAnalyzer?, http: HTTPAnalyzer?) {
        self.identifier = identifier
        self.tls = tls
        self.http = http
    }

    public static let none = FlowLabeler(identifier: nil, tls: nil, http: nil)

    @inline(__always) func labels(_ flow: FlowRecord, slot: Int32) -> FlowLabels {
        FlowLabels(flow, slot: slot, identifier: identifier, tls: tls, http: http)
    }
}

/// The worker-side pipeline member of the host-level stage, and the one place a flow's end leaves for
/// it: turns new TCP flows, SYN-ACKs, flow ends and UDP requests after a silence into facts and clocks
/// the stage. Per packet it reads a few header fields (and, for UDP, a slot's last originator time); it
/// encodes only once per new flow, SYN-ACK, flow end or UDP request. Placed after the
/// analysers whose facts label a flow (so a flow's last facts precede its end); the SMB/DCE-RPC/
/// Kerberos and DNS analysers hand their own facts to the publisher directly.
public final class HostFactTap: PacketAnalyzer {
    public let name = "host-facts"
    /// `let`s: calls on them need no reference counting per packet.
    public let publisher: HostFactPublisher
    let labeler: FlowLabeler
    let sendsConnections: Bool
    let sendsUDPRequests: Bool
    /// Per flow-table slot: packet time (ns) of the UDP flow's last datagram from its originator.
    let lastOriginatorDatagram: UnsafeMutablePointer<Int64>

    public init(publisher: HostFactPublisher, labeler: FlowLabeler, flowCapacity: Int) {
        self.publisher = publisher
        self.labeler = labeler
        sendsConnections = publisher.wanted.contains(.tcpFlowStarted) || publisher.wanted.contains(.tcpAccepted)
        sendsUDPRequests = publisher.wanted.contains(.udpRequest)
        lastOriginatorDatagram = ZeroFilledMemory.allocate(Int64.self, count: sendsUDPRequests ? flowCapacity : 1)
    }

    deinit { ZeroFilledMemory.deallocate(lastOriginatorDatagram) }

    public func packet(_ context: PacketContext, flows: FlowTable) {
        if !publisher.started { publisher.clockStarted(at: context.packet.timestamp) }
        publisher.packetTime(context.packet.timestamp)
        if context.packet.ipProtocol == IPProtocol.udp {
            if sendsUDPRequests && context.fromOriginator { originatorDatagram(context, flows: flows) }
            return
        }
        guard sendsConnections, context.packet.ipProtocol == IPProtocol.tcp else { return }
        if context.isNewFlow {
            publisher.tcpFlowStarted(source: context.packet.source, destination: context.packet.destination, port: context.packet.destinationPort, at: context.packet.timestamp)
        } else if !context.fromOriginator && context.packet.tcpFlags.contains(.syn) && context.packet.tcpFlags.contains(.ack) {
            publisher.tcpAccepted(server: context.packet.source, client: context.packet.destination, port: context.packet.sourcePort, at: context.packet.timestamp)
        }
    }

    /// A datagram that resumes its flow's originator after `UDPRequestFact.gap` of silence is a request
    /// (the flow's first is reported with its end).
    @inline(__always) func originatorDatagram(_ context: PacketContext, flows: FlowTable) {
        let slot = Int(context.slot)
        let t = context.packet.timestamp.nanoseconds
        let last = lastOriginatorDatagram[slot]
        lastOriginatorDatagram[slot] = t
        guard !context.isNewFlow, last != 0, t &- last >= UDPRequestFact.gap.nanoseconds else { return }
        let flow = flows[context.slot]
        publisher.udpRequest(UDPRequestFact(client: flow.originator, clientPort: flow.originatorPort, server: flow.responder,
                                            serverPort: flow.responderPort, flowStart: flow.firstSeen, time: context.packet.timestamp,
                                            bytes: context.packet.wireLength,
                                            serverName: labeler.tls?.facts(slot: context.slot, generation: flow.generation)?.serverName))
    }

    public func flowEnded(_ flow: FlowRecord, reason: FlowEndReason, slot: Int32) {
        guard publisher.wanted.contains(.flowEnded) else { return }
        publisher.flowEnded(flow, reason: reason, labels: labeler.labels(flow, slot: slot))
    }

    public func tick(_ now: Timestamp) { publisher.tick(now) }
    public func finish(_ now: Timestamp) { publisher.finish(now) }

    /// `spanwatch.stats.host_stage` of the inline stage (replay with one worker); live and with several
    /// workers the stages are the aggregators' (`HostStageBoard`).
    public func writeStatistics(into w: inout JSONWriter) {
        publisher.inlineStage?.statistics.write(into: &w)
    }
}
