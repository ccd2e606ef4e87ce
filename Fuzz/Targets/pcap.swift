import Capture
import PacketCore

/// The capture-file reader: the input is a whole pcap or pcapng file handed to libpcap through our
/// reader (`PcapFileReader`, and `MergedFileSource` merging it with itself), every record decoded.
/// libpcap reads a path, so the bytes go to one file in the harness's temporary directory.
///
/// Differential: plain pcap files are read by `PlainPcapRecords` until a record needs libpcap; a
/// filtered read (an always-true filter) is libpcap's alone. Both must give the same packets, times,
/// errors and counts, or the target traps.
///
/// The records of a classic pcap file whose header's `sigfigs` (ignored by every reader) has a non-zero
/// low byte are put behind padding records that bring the input's first record to 0-31 sixteen-byte
/// steps before the end of `PlainPcapRecords`' first 512 KiB block: inputs of a few KiB then cross a refill.
func fuzzPcap(_ input: inout FuzzInput) {
    let path = pcapFile(input.bytes)
    // The first byte is the file's own (a magic number): its low bit picks the reader.
    let merged = input.bytes.first.map { $0 & 1 == 1 } ?? false
    let plain = readCapture(path, filter: nil, merged: merged)
    guard let reference = readCapture(path, filter: "len >= 0", merged: merged) else { return }
    if plain != reference {
        fatalError("pcap: plain reading differs from libpcap's: \(String(describing: plain)) vs \(reference)")
    }
}

/// The input as a file, padded as `fuzzPcap` says: 1 KiB records (empty ones when the snapshot length is
/// smaller), then empty ones to the byte, in the header's byte order.
func pcapFile(_ bytes: UnsafeRawBufferPointer) -> String {
    guard bytes.count >= 24, bytes[12] != 0 else { return FuzzEnvironment.file(with: bytes) }
    let magic = bytes.loadUnaligned(as: UInt32.self)
    let swapped = magic == 0xD4C3_B2A1 || magic == 0x4D3C_B2A1
    guard swapped || magic == 0xA1B2_C3D4 || magic == 0xA1B2_3C4D else { return FuzzEnvironment.file(with: bytes) }
    let snaplen = bytes.loadUnaligned(fromByteOffset: 16, as: UInt32.self)
    let native = swapped ? snaplen.byteSwapped : snaplen
    let large = native == 0 || native >= 1024 ? 1024 : 0
    // Sixteenths of the padding: 1040-byte records (65 sixteenths) and 16-byte ones.
    let sixteenths = (512 << 10) / 16 - Int(bytes[12] % 32)
    var file: [UInt8] = Array(bytes[0..<24])
    func record(_ length: Int) {
        let field = UInt32(length)
        withUnsafeBytes(of: swapped ? field.byteSwapped : field) { f in
            file += [UInt8](repeating: 0, count: 8)
            file += f
            file += f
        }
        file += [UInt8](repeating: 0, count: length)
    }
    let big = large > 0 ? sixteenths / 65 : 0
    for _ in 0..<big { record(large) }
    for _ in 0..<(sixteenths - big * 65) { record(0) }
    file += bytes[24...]
    return file.withUnsafeBytes { FuzzEnvironment.file(with: $0) }
}

/// What a read of a capture gave: a digest of every packet, the counts and the errors.
struct CaptureOutcome: Equatable {
    var packets = 0
    var digest: UInt64 = 0
    var packetsRead: UInt64 = 0
    var errors: [CaptureError] = []
}

/// `path` read to the end, in batches or merged with itself (one packet at a time); nil when the filter
/// does not compile for the file's link type.
func readCapture(_ path: String, filter: String?, merged: Bool) -> CaptureOutcome? {
    let consumer = DecodingConsumer()
    var outcome = CaptureOutcome()
    do {
        if merged {
            let source = try MergedFileSource(paths: [path, path], filter: filter)
            while let p = try source.next() { consumer.consume(p) }
            outcome.packetsRead = source.packetsRead
            outcome.errors = source.errors
        } else {
            let reader = try PcapFileReader(path: path, filter: filter)
            do {
                while try reader.dispatch(maxPackets: 64, to: consumer) > 0 {}
            } catch {
                outcome.errors = [error]
            }
            outcome.packetsRead = reader.packetsRead
        }
    } catch {
        if error.kind == .filter { return nil }
        outcome.errors = [error]
    }
    outcome.packets = consumer.packets
    outcome.digest = consumer.digest
    return outcome
}

final class DecodingConsumer: PacketConsumer {
    var packets = 0
    /// FNV-1a over every packet's time, lengths and bytes.
    var digest: UInt64 = 0xCBF2_9CE4_8422_2325

    override func consume(_ packet: RawPacket) {
        packets += 1
        func mix(_ v: UInt64) { digest = (digest ^ v) &* 0x100_0000_01B3 }
        mix(UInt64(bitPattern: packet.timestamp.nanoseconds))
        mix(packet.timestampOutOfRange ? 1 : 0)
        mix(UInt64(packet.capturedLength))
        mix(UInt64(packet.wireLength))
        for b in packet.bytes { mix(UInt64(b)) }
        var p = DecodedPacket()
        p.timestamp = packet.timestamp
        p.wireLength = packet.wireLength
        p.capturedLength = packet.capturedLength
        _ = PacketDecoder.decode(packet.bytes, linkType: packet.linkType, into: &p)
    }
}
