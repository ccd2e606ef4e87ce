@testable import Analyzers
import Crypto
import PacketCore
import _CryptoExtras

/// QUIC Initial: the long-header and frame parsers directly; then the analyser with the fuzzer's frames
/// sealed into genuine client Initial packets (so decryption succeeds and the CRYPTO assembly and
/// ClientHello paths behind it are reached, which forged bytes never would); and raw datagrams on 443.
func fuzzQUIC(_ input: inout FuzzInput) {
    switch input.u8() % 3 {
    case 0:
        let d = input.rest()
        var offset = 0
        while offset < d.count, let h = QUICPacketParser.longHeader(d, at: offset) {
            guard h.end > offset else { break }
            offset = h.end
        }
        _ = QUICPacketParser.initialFrames(d) { _, _ in }
    case 1:
        playSealedInitials(&input)
    default:
        Conversation(.udp, serverPort: 443).play(&input, through: PipelineSession())
    }
}

/// Layout: version choice, DCID length and bytes, then per packet a 2-byte length and that many frame
/// bytes, each sealed as the next client Initial (packet numbers 0, 1, ...) and sent as one datagram.
func playSealedInitials(_ input: inout FuzzInput) {
    let version: QUICVersion = input.u8() & 1 == 0 ? .v1 : .v2
    let dcid = Array(input.take(Int(input.u8() % 21)))
    let keys = dcid.withUnsafeBytes { QUICInitialKeys(version: version, destinationCID: $0) }
    let session = PipelineSession()
    var f = FrameBuilder()
    var pn: UInt32 = 0
    while !input.isAtEnd && pn < 16 {
        let frames = Array(input.take(Int(input.u16() % 1400)))
        let payload = frames + [UInt8](repeating: 0, count: max(0, 1162 - frames.count))
        let packet = sealInitial(version, dcid: dcid, pn: pn, payload: payload, keys: keys)
        f.bytes.removeAll(keepingCapacity: true)
        f.ip(v6: false, fromClient: true, proto: IPProtocol.udp, payloadLength: 8 + packet.count)
        packet.withUnsafeBytes { f.udp(sport: 40000, dport: 443, payload: $0) }
        session.frame(f.bytes, at: Timestamp(seconds: 1_700_000_000 + Int64(pn)))
        pn += 1
    }
    session.finish()
}

/// A protected client Initial (RFC 9001 §5.3–5.4) with a 4-byte packet number.
func sealInitial(_ v: QUICVersion, dcid: [UInt8], pn: UInt32, payload: [UInt8], keys: QUICInitialKeys) -> [UInt8] {
    let length = 4 + payload.count + 16
    var header: [UInt8] = [0xc0 | (v.initialTypeBits << 4) | 0x03]
    header += withUnsafeBytes(of: v.rawValue.bigEndian) { Array($0) }
    header += [UInt8(dcid.count)] + dcid + [0, 0]  // no SCID, no token
    header += [UInt8(0x40 | (length >> 8)), UInt8(length & 0xff)]
    header += withUnsafeBytes(of: pn.bigEndian) { Array($0) }
    var nonce = keys.iv
    for i in 0..<8 { nonce[4 + i] ^= UInt8(truncatingIfNeeded: UInt64(pn) >> (8 * UInt64(7 - i))) }
    do {
        let box = try AES.GCM.seal(payload, using: SymmetricKey(data: keys.key), nonce: AES.GCM.Nonce(data: nonce), authenticating: header)
        var packet = header + Array(box.ciphertext) + Array(box.tag)
        let pnOffset = header.count - 4
        var sample = Array(packet[(pnOffset + 4)..<(pnOffset + 20)])
        try AES.permute(&sample, key: SymmetricKey(data: keys.headerProtection))
        packet[0] ^= sample[0] & 0x0f
        for i in 0..<4 { packet[pnOffset + i] ^= sample[1 + i] }
        return packet
    } catch {
        fatalError("fuzz harness: sealing failed: \(error)")
    }
}
