import Capture
import PacketCore

/// The whole sensor path, bytes to events: every analyser family and detector on, events into a
/// discarding sink. Two ways of reading the input:
/// - even first byte: the rest is a pcap/pcapng file, read through libpcap as `replay` reads it;
/// - odd first byte: a packet sequence with a clock the input drives. Records of `link type choice,
///   clock step, length (2 bytes), frame`; the clock step (1 byte) is milliseconds, or with its top bit
///   a signed 4-byte step in seconds (far jumps, backwards too).
func fuzzPipeline(_ input: inout FuzzInput) {
    let session = PipelineSession()
    if input.u8() & 1 == 0 {
        let path = FuzzEnvironment.file(with: input.rest())
        guard let source = try? MergedFileSource(paths: [path]) else { return }
        while let n = try? source.dispatch(maxPackets: 64, to: session.pipeline), n > 0 {}
        session.finish()
        return
    }
    let linkTypes: [LinkType] = [.ethernet, .raw, .linuxSLL, .linuxSLL2, .null, .ipv4, .ipv6]
    var clock = Timestamp(seconds: 1_700_000_000)
    var packets = 0
    while !input.isAtEnd && packets < 4096 {
        packets += 1
        let linkType = linkTypes[Int(input.u8()) % linkTypes.count]
        let step = input.u8()
        let ns: Int64 = step & 0x80 == 0 ? Int64(step) &* 1_000_000 : Int64(Int32(bitPattern: input.u32())) &* 1_000_000_000
        clock = Timestamp(nanoseconds: clock.nanoseconds &+ ns)
        let frame = input.take(Int(input.u16()))
        session.frame(frame, linkType: linkType, at: clock)
    }
    session.finish()
}
