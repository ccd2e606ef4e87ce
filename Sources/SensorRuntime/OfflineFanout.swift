import Capture
import Events
import Foundation
import HostStage
import Logging
import PacketCore
import ServiceLifecycle

/// The record one reader hands one offline worker through its `SPSCByteRing`: a fixed header, then
/// (packets) the captured bytes. A clock record carries the global packet clock; the end record closes
/// the stream.
enum FanoutRecord {
    static let headerSize = 32
    enum Kind: UInt8 { case packet = 0, clock = 1, end = 2 }
    // Header layout: time (Int64 ns) at 0, wire length (UInt32) at 8, link type (Int32) at 12,
    // kind at 16, "time out of range" at 17, input sequence (Int64) at 24.
}

/// The reader side of `replay --workers N`: takes every packet of the merged inputs in time order and
/// hands it to one worker's ring, chosen by `FlowKey.addressPairHash` (both directions and every IP
/// fragment of a datagram land on the same worker, see docs/LIVE.md "Offline workers").
///
/// It also keeps the packet clock exactly as `Pipeline.process` would in a one-worker run and tells
/// every worker: whenever the clock passes a second boundary (the packet that crosses it is queued
/// after the clock record, so each worker ticks at that packet's time, before it, as one pipeline
/// does) and every `clockInterval` of packet time between (so each worker's host-fact watermark
/// follows the global clock and the host-stage merge does not wait long on a worker with no traffic).
///
/// Per packet: one decode of the headers, one copy into the ring; no allocation, no lock. A full ring
/// makes the reader wait (offline: nothing is dropped).
final class OfflineFanout: PacketConsumer {
    let rings: [SPSCByteRing]
    /// Their producer handles, which the per-packet path uses (no reference counting per packet).
    let producers: [SPSCByteRing.Producer]
    /// Where the reader and each worker sleep while they wait for each other.
    let doorbells: FanoutDoorbells
    let bells: [FanoutDoorbell]
    /// Mirrors `Pipeline.clock` and its tick schedule.
    var clock: Int64 = 0
    /// Four times the input packets read so far: the sequence number of the packet being handed on, which
    /// its record and the clock records written before it carry (the workers stamp their host facts with
    /// it, `HostFactPublisher.sequence`, so the host stage merges them in input order). Between two
    /// packets' numbers: +1 stamps tick records (after every worker's flow ends of that clock record, as
    /// one pipeline expires flows before it ticks), +2 is what a worker is told while the reader waits on
    /// another worker's ring: it will get nothing from before the waiting packet, so the other worker's
    /// records of that packet or clock record (a tick's flow ends can fill a ring) sort before anything
    /// it sends later.
    var sequence: Int64 = 0
    var nextTick: Int64 = .min
    var lastClockRecord: Int64 = .min
    static let clockInterval: Int64 = 100_000_000
    /// Records written to a ring are published every `batch`.
    static let batch = 64
    let header = UnsafeMutableRawPointer.allocate(byteCount: FanoutRecord.headerSize, alignment: 8)
    /// Clock and end records are built here, so one can go out while a packet waits in `header`.
    let clockHeader = UnsafeMutableRawPointer.allocate(byteCount: FanoutRecord.headerSize, alignment: 8)
    /// Times the reader found a worker's ring full and waited (the workers are the bottleneck).
    private(set) var waits: UInt64 = 0
    /// Records longer than a ring record can hold, cut to fit (a ring of 4 MiB holds 1 MiB records,
    /// far above libpcap's usual 256 KiB limit).
    private(set) var cut: UInt64 = 0

    /// The most captured bytes one record carries.
    let maxBody: Int
    /// Workers still to be sent the clock while the reader waits (`waitAndWrite`).
    var owesClock: [Bool]

    /// `--flow-shard`: the flows this process handles (nil: all).
    let shard: FlowShard?
    /// The shard count the worker takes the quotient of the hash by (1 without `--flow-shard`).
    let shards: UInt64

    init(workers: Int, ringBytes: Int, shard: FlowShard? = nil) {
        self.shard = shard
        shards = UInt64(shard?.count ?? 1)
        rings = (0..<workers).map { _ in SPSCByteRing(capacity: ringBytes) }
        producers = rings.map(\.producer)
        doorbells = FanoutDoorbells(count: workers)
        bells = doorbells.bells
        maxBody = rings[0].maxRecord - FanoutRecord.headerSize
        owesClock = Array(repeating: false, count: workers)
        header.initializeMemory(as: UInt8.self, repeating: 0, count: FanoutRecord.headerSize)
        clockHeader.initializeMemory(as: UInt8.self, repeating: 0, count: FanoutRecord.headerSize)
    }

    deinit {
        header.deallocate()
        clockHeader.deallocate()
    }

    /// The worker of a packet of `hash` (`FlowShard.hash`): the quotient by the shard count (the shard
    /// took the remainder), so the workers of one shard split it evenly.
    @inline(__always) func worker(of hash: UInt64) -> Int {
        Int(truncatingIfNeeded: (hash / shards) % UInt64(producers.count))
    }

    override func consume(_ raw: RawPacket) {
        sequence &+= 4
        let outOfRange = raw.timestampOutOfRange
        if !outOfRange {
            let t = raw.timestamp.nanoseconds
            if t > clock {
                clock = t
                if clock >= nextTick {
                    nextTick = (Timestamp(nanoseconds: clock).seconds &+ 1) &* 1_000_000_000
                    broadcastClock()
                } else if clock &- lastClockRecord >= Self.clockInterval {
                    broadcastClock()
                }
            }
        }
        // One worker and no shard: nothing to choose.
        guard producers.count > 1 || shard != nil else { return send(raw, to: 0) }
        var p = DecodedPacket()
        _ = PacketDecoder.decode(raw.bytes, linkType: raw.linkType, into: &p)
        let hash = FlowShard.hash(of: p)
        // Another process's flows (`--flow-shard`): they only moved the clock, above.
        if let shard, !shard.contains(hash: hash) { return }
        send(raw, to: worker(of: hash))
    }

    @inline(__always) func send(_ raw: RawPacket, to w: Int) {
        let outOfRange = raw.timestampOutOfRange
        // The pipeline stamps such a record with its clock: bring the worker's clock to the global one.
        if outOfRange { pushClock(to: w) }
        Self.writeHeader(header, .packet, time: outOfRange ? 0 : raw.timestamp.nanoseconds, sequence: sequence,
                         wireLength: raw.wireLength, linkType: raw.linkType, outOfRange: outOfRange)
        var body = raw.bytes
        if body.count > maxBody {
            cut &+= 1
            body = UnsafeRawBufferPointer(rebasing: body[0..<maxBody])
        }
        push(header, body, to: w)
    }

    @inline(__always) static func writeHeader(_ header: UnsafeMutableRawPointer, _ kind: FanoutRecord.Kind, time: Int64, sequence: Int64,
                                              wireLength: Int = 0, linkType: LinkType = .null, outOfRange: Bool = false) {
        header.storeBytes(of: time, toByteOffset: 0, as: Int64.self)
        header.storeBytes(of: sequence, toByteOffset: 24, as: Int64.self)
        header.storeBytes(of: UInt32(truncatingIfNeeded: wireLength), toByteOffset: 8, as: UInt32.self)
        header.storeBytes(of: linkType.rawValue, toByteOffset: 12, as: Int32.self)
        header.storeBytes(of: kind.rawValue, toByteOffset: 16, as: UInt8.self)
        header.storeBytes(of: outOfRange ? 1 : 0, toByteOffset: 17, as: UInt8.self)
    }

    @inline(__always) func push(_ header: UnsafeMutableRawPointer, _ body: UnsafeRawBufferPointer, to w: Int) {
        let head = UnsafeRawBufferPointer(start: header, count: FanoutRecord.headerSize)
        let ring = producers[w]
        if !ring.write(head, body) { waitAndWrite(head, body, to: w) }
        if ring.unpublished >= Self.batch {
            ring.publish()
            bells[w].published(at: ring.position, force: false)
        }
    }

    /// Back-pressure: the other workers get the current clock as soon as their ring has room (so their
    /// host-fact watermarks reach it and the aggregators can take everything the waited-on worker has
    /// sent: it may itself be waiting on a full host-fact ring), every ring's batch goes out, then the
    /// reader sleeps until the worker has freed a quarter of its ring (one wake-up per large step).
    @inline(never) func waitAndWrite(_ head: UnsafeRawBufferPointer, _ body: UnsafeRawBufferPointer, to w: Int) {
        waits &+= 1
        Self.writeHeader(clockHeader, .clock, time: clock, sequence: sequence &+ 2)
        let clockRecord = UnsafeRawBufferPointer(start: clockHeader, count: FanoutRecord.headerSize)
        for i in producers.indices { owesClock[i] = i != w }
        let ring = producers[w]
        let step = rings[w].capacity / 4
        var written = false
        repeat {
            for i in producers.indices where owesClock[i] && producers[i].write(clockRecord, UnsafeRawBufferPointer(start: nil, count: 0)) {
                owesClock[i] = false
            }
            publishAll()
            if FanoutDoorbell.spin(until: { ring.write(head, body) }) { return }
            bells[w].producerSleep(until: ring.seenReleased &+ step, unless: {
                written = ring.write(head, body)
                return written
            })
            if written || ring.write(head, body) { return }
        } while true
    }

    /// Publishes every ring's batch and wakes every worker sleeping on its ring.
    func publishAll() {
        for (p, bell) in zip(producers, bells) {
            if p.unpublished > 0 { p.publish() }
            bell.published(at: p.position, force: true)
        }
    }

    @inline(never) func broadcastClock() {
        lastClockRecord = clock
        for w in rings.indices { pushClock(to: w) }
    }

    func pushClock(to w: Int) {
        Self.writeHeader(clockHeader, .clock, time: clock, sequence: sequence)
        push(clockHeader, UnsafeRawBufferPointer(start: nil, count: 0), to: w)
    }

    /// The reader's counters: waits on full rings and records cut.
    func writeStatistics(into w: inout JSONWriter) {
        w.beginObject("fanout")
        w.field("reader_waits", waits)
        w.field("records_cut", cut)
        w.endObject()
    }

    /// End of input: every worker's clock at the last packet time, then the end record.
    func finish() {
        for w in rings.indices {
            pushClock(to: w)
            Self.writeHeader(clockHeader, .end, time: clock, sequence: sequence)
            push(clockHeader, UnsafeRawBufferPointer(start: nil, count: 0), to: w)
        }
        publishAll()
    }
}

/// A worker's side of the offline fanout: its ring as a `PacketSource` for the usual
/// `PacketProcessingService` loop. Clock records move the pipeline's clock (`onClock`); the end
/// record ends the source.
final class RingPacketSource: PacketSource {
    /// The ring and doorbells (kept alive), the ring's consumer handle, which the loop reads through,
    /// and its doorbell.
    let owner: SPSCByteRing
    let doorbells: FanoutDoorbells
    let ring: SPSCByteRing.Consumer
    let bell: FanoutDoorbell
    /// A sleeping worker is woken when this much more is published (or when the reader publishes all):
    /// 64 KiB, a few hundred packets. A worker that ran dry is usually the busier one, waiting on the
    /// reader, and every moment it sleeps on data is wall time; a larger step (an eighth of the ring)
    /// cost 4-6% of the two-worker wall time and saved no CPU.
    let wakeStep: Int
    /// Set by the assembly: moves the pipeline's clock and publishes the host-fact watermark.
    var onClock: (Timestamp) -> Void = { _ in }
    /// Set by the assembly: told each record's input sequence before the record is handled.
    var publisher: HostFactPublisher?
    var ended = false

    init(fanout: OfflineFanout, worker: Int) {
        owner = fanout.rings[worker]
        doorbells = fanout.doorbells
        ring = owner.consumer
        bell = fanout.bells[worker]
        wakeStep = owner.capacity / 64
    }

    /// Not used: the worker loop calls `dispatch`.
    func next() throws(CaptureError) -> RawPacket? { nil }

    func dispatch(maxPackets: Int, to consumer: PacketConsumer) throws(CaptureError) -> Int {
        guard !ended else { return 0 }
        var n = 0
        var records = 0
        defer {
            ring.release()
            bell.released(at: ring.position, force: false)
        }
        while n < maxPackets {
            guard let r = ring.peek() else {
                ring.release()
                bell.released(at: ring.position, force: true)
                if n > 0 { return n }
                if FanoutDoorbell.spin(until: { ring.peek() != nil }) { continue }
                bell.consumerSleep(until: ring.position &+ wakeStep, unless: { ring.peek() != nil })
                continue
            }
            let base = r.baseAddress!
            let time = Timestamp(nanoseconds: base.load(fromByteOffset: 0, as: Int64.self))
            publisher?.sequence = base.load(fromByteOffset: 24, as: Int64.self)
            switch FanoutRecord.Kind(rawValue: base.load(fromByteOffset: 16, as: UInt8.self)) {
            case .packet:
                let raw = RawPacket(timestamp: time, capturedLength: r.count - FanoutRecord.headerSize,
                                    wireLength: Int(base.load(fromByteOffset: 8, as: UInt32.self)),
                                    linkType: LinkType(rawValue: base.load(fromByteOffset: 12, as: Int32.self)),
                                    bytes: UnsafeRawBufferPointer(rebasing: r[FanoutRecord.headerSize...]),
                                    timestampOutOfRange: base.load(fromByteOffset: 17, as: UInt8.self) != 0)
                consumer.consume(raw)
                n += 1
            case .clock:
                onClock(time)
            case .end, nil:
                ring.skip()
                ended = true
                return n
            }
            ring.skip()
            records &+= 1
            if records & (OfflineFanout.batch - 1) == 0 {
                ring.release()
                bell.released(at: ring.position, force: false)
            }
        }
        return n
    }

    /// The reader ends the stream (end record); a worker never stops before it, so nothing is lost.
    func stop() {}
}

/// Runs the reader on its own thread: the merged inputs into the fanout until their end (or a
/// shutdown signal, which stops the source), then the end records.
final class FanoutReaderService: Service, @unchecked Sendable {
    let source: MergedFileSource
    let fanout: OfflineFanout
    let logger: Logger
    private(set) var readError: CaptureError?
    private(set) var cpuSeconds: Double = 0

    init(source: MergedFileSource, fanout: OfflineFanout, logger: Logger) {
        self.source = source
        self.fanout = fanout
        self.logger = logger
    }

    func run() async throws {
        await withGracefulShutdownHandler {
            await DedicatedThread.run(name: "sensor-reader") { [self] in read() }
        } onGracefulShutdown: { [source] in
            source.stop()
        }
    }

    func read() {
        let start = PacketProcessingService.threadCPUSeconds()
        do {
            while case .delivered = try source.dispatchOrIdle(maxPackets: 4096, to: fanout) { fanout.publishAll() }
        } catch {
            readError = error
            logger.error("capture input damaged; processed what came before it", metadata: ["error": "\(error)"])
        }
        fanout.finish()
        cpuSeconds = PacketProcessingService.threadCPUSeconds() - start
    }
}

/// An offline worker's end: the usual final flush, then its `spanwatch.stats` with its index and host-fact
/// ring counters (one line per worker, as live; each line's `packets` shows how the reader split them);
/// worker 0's also carries the reader's counters (`fanout`: final once worker 0 has read the end record,
/// which the reader writes last) and the host-level stages' sum, written once they concluded (its own end
/// comes first: the stages conclude when every worker has ended).
final class OfflineWorker: WorkerHousekeeping {
    let index: Int
    let hostFacts: HostFactDropMetrics
    let hostStage: HostStageBoard?
    let fanout: OfflineFanout?

    init(index: Int, hostRings: [SPSCByteRing], hostStage: HostStageBoard?, fanout: OfflineFanout?) {
        self.index = index
        hostFacts = HostFactDropMetrics(rings: hostRings, metrics: nil, worker: index)
        self.hostStage = hostStage
        self.fanout = fanout
    }

    func periodic(_ pipeline: Pipeline, idle: Bool) {}

    func finish(_ pipeline: Pipeline) {
        pipeline.finish(reason: .endOfInput, emitStats: false)
        try? pipeline.emitter.flush()
        hostStage?.waitUntilConcluded(timeout: HostStageBoard.concludeWait)
        let stage = hostStage?.sum
        pipeline.emitStatistics(worker: index, extra: { [hostFacts, fanout] w in
            hostFacts.write(into: &w)
            fanout?.writeStatistics(into: &w)
            stage?.write(into: &w)
        })
    }
}

/// An offline worker in the service group: its loop, then a wait for the group's shutdown (which the
/// reader's end starts), so the group's reverse-order shutdown finds every worker still a member
/// whichever finishes first — as live workers, which run until shutdown.
final class OfflineWorkerService: Service, @unchecked Sendable {
    let processing: PacketProcessingService
    init(_ processing: PacketProcessingService) { self.processing = processing }

    func run() async throws {
        try await processing.run()
        try? await gracefulShutdown()
    }
}
