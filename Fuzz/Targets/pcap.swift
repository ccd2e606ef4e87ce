import Capture
import PacketCore

/// The capture-file reader: the input is a whole pcap or pcapng file handed to libpcap through our
/// reader (`PcapFileReader`, and `MergedFileSource` merging it with itself), every record decoded.
/// libpcap reads a path, so the bytes go to one file in the harness's temporary directory.
func fuzzPcap(_ input: inout FuzzInput) {
    let path = FuzzEnvironment.file(with: input.bytes)
    let decoder = DecodingConsumer()
    // The first byte is the file's own (a magic number): its low bit picks the reader.
    if input.bytes.first.map({ $0 & 1 == 0 }) ?? true {
        guard let reader = try? PcapFileReader(path: path) else { return }
        while let n = try? reader.dispatch(maxPackets: 64, to: decoder), n > 0 {}
    } else {
        guard let merged = try? MergedFileSource(paths: [path, path]) else { return }
        while let p = try? merged.next() { decoder.consume(p) }
    }
}

final class DecodingConsumer: PacketConsumer {
    override func consume(_ packet: RawPacket) {
        var p = DecodedPacket()
        p.timestamp = packet.timestamp
        p.wireLength = packet.wireLength
        p.capturedLength = packet.capturedLength
        _ = PacketDecoder.decode(packet.bytes, linkType: packet.linkType, into: &p)
    }
}
