import Events
import HostStage
import PacketCore

/// What `sensor aggregate` reads off the host-fact topic: `HostFactEnvelope` records (any bytes anyone with
/// access to the topic wrote) through one partition's merge (`HostFactPartitionMerge`: envelope, producer
/// table, watermarks, rings, the k-way merge, `HostFactCodec` and the real host detectors). The input is a
/// sequence of records, each a 16-bit length then its bytes; a zero lateness lifts quiet producers at once.
/// The first byte of a record, when it is 0xFF, becomes a valid envelope header in front of the rest (so
/// the codec and the detectors are reached without the fuzzer first finding the magic).
nonisolated(unsafe) let fuzzHostFactEmitter = EventEmitter(
    observer: ObserverInfo(name: "fuzz", hostname: "fuzz", ingressInterface: "fuzz", version: "0"),
    sinks: [PipelineSession.sink], communityID: CommunityID(seed: 0),
    homeNetworks: NetworkSet(PipelineSession.configuration.homeNetworks), flowEventsEnabled: false, enricher: nil)

func fuzzHostFacts(_ input: inout FuzzInput) {
    let merge = HostFactPartitionMerge(partition: 0, detectors: PipelineSession.resources.hostDetectors(PipelineSession.resources.rules),
                                       emitter: fuzzHostFactEmitter, ringBytes: 1 << 16, lateness: .zero)
    let header = UnsafeMutableRawPointer.allocate(byteCount: HostFactEnvelope.maxHeader + 65_536, alignment: 8)
    defer { header.deallocate() }
    var offset: Int64 = 0
    while input.remaining > 0 {
        let n = Int(input.u16())
        var record = input.take(n)
        if record.first == 0xFF {
            let producer = HostFactEnvelope.Producer(sensor: "s", session: 1, worker: UInt16(record.count & 3))
            let h = HostFactEnvelope.writeHeader(header, type: .fact, watermark: 0, producer: producer)
            let body = UnsafeRawBufferPointer(rebasing: record.dropFirst())
            if body.count > 0 { (header + h).copyMemory(from: body.baseAddress!, byteCount: body.count) }
            record = UnsafeRawBufferPointer(start: header, count: h + body.count)
        }
        merge.offer(record, offset: offset, now: .now)
        offset &+= 1
        merge.drain(now: .now)
    }
    merge.finish()
}
