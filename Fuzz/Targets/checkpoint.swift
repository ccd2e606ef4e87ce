import HostStage

/// What `sensor aggregate` reads off its checkpoint topic when it is given a partition: a
/// `PartitionCheckpoint` record (any bytes anyone with access to the topic wrote) restored into a fresh
/// partition merge with the four host detectors (`HostFactPartitionMerge.restore`, the detectors'
/// `restoreState`), then saved again and concluded. The input is the record's body after the magic and
/// version; the harness frames it with a valid checksum, so the fuzzer reaches the body's decoding
/// instead of the checksum check (a hostile writer can compute one too).
func fuzzCheckpoint(_ input: inout FuzzInput) {
    var bytes: [UInt8] = [PartitionCheckpoint.magic.0, PartitionCheckpoint.magic.1, PartitionCheckpoint.version]
    bytes += input.take(input.remaining)
    withUnsafeBytes(of: PartitionCheckpoint.fnv(bytes[...]).littleEndian) { bytes.append(contentsOf: $0) }
    let merge = HostFactPartitionMerge(partition: 0, detectors: PipelineSession.resources.hostDetectors(PipelineSession.resources.rules),
                                       emitter: fuzzHostFactEmitter, ringBytes: 1 << 16, lateness: .zero)
    guard (try? merge.restore(bytes, now: .now)) != nil else { return }
    _ = merge.checkpoint()
    merge.drain(now: .now)
    merge.finish()
}
