import Crypto
import PacketCore
import _CryptoExtras
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The keys protecting one endpoint's Initial packets (RFC 9001 §5.2), derived from the client's
/// first Destination Connection ID.
///
/// `initial_secret = HKDF-Extract(initial_salt, DCID)`, the endpoint's secret is
/// `HKDF-Expand-Label(initial_secret, "client in" | "server in", "", 32)`, and from it the AEAD key
/// (16 bytes, AES-128-GCM), IV (12) and header-protection key (16) with the version's labels.
/// Derived once per QUIC flow, then reused for every Initial packet of its first flight.
public struct QUICInitialKeys: Sendable {
    public let version: QUICVersion
    public let key: [UInt8]
    public let iv: [UInt8]
    public let headerProtection: [UInt8]
    let aeadKey: SymmetricKey
    let hpKey: SymmetricKey

    public init(version: QUICVersion, destinationCID: UnsafeRawBufferPointer, client: Bool = true) {
        self.version = version
        let initial = HKDF<SHA256>.extract(inputKeyMaterial: SymmetricKey(data: destinationCID), salt: version.initialSalt)
        let secret = QUICInitialKeys.expandLabel(initial, client ? "client in" : "server in", 32)
        let labels = version.labels
        key = QUICInitialKeys.expandLabel(secret, labels.key, 16)
        iv = QUICInitialKeys.expandLabel(secret, labels.iv, 12)
        headerProtection = QUICInitialKeys.expandLabel(secret, labels.hp, 16)
        aeadKey = SymmetricKey(data: key)
        hpKey = SymmetricKey(data: headerProtection)
    }

    /// TLS 1.3's `HKDF-Expand-Label` (RFC 8446 §7.1) with an empty context, as QUIC uses it.
    static func expandLabel(_ secret: some ContiguousBytes, _ label: String, _ length: Int) -> [UInt8] {
        let full = Array("tls13 \(label)".utf8)
        var info: [UInt8] = [UInt8(length >> 8), UInt8(length & 0xff), UInt8(full.count)]
        info += full
        info.append(0)
        return HKDF<SHA256>.expand(pseudoRandomKey: secret, info: info, outputByteCount: length)
            .withUnsafeBytes { Array($0) }
    }
}

/// Removes Initial packet protection (RFC 9001 §5.3–5.4): header protection with AES-128 over a
/// 16-byte sample of the ciphertext, then AES-128-GCM with the header as associated data.
public enum QUICInitialProtection {
    /// Scratch bytes `open` needs: the mask block, the nonce, and the unprotected header (a header
    /// with a token longer than what is left is not a packet this sensor decrypts).
    public static let scratchSize = 2048
    static let maskOffset = 0
    static let nonceOffset = 16
    static let headerOffset = 32

    /// Decrypts the Initial packet `header` locates in datagram `d` and hands its plaintext (the
    /// frames) and packet number to `body`. nil when the packet is too short to carry a sample,
    /// its header does not fit `scratch`, or authentication fails (wrong keys or a forged packet).
    /// `scratch` must hold `scratchSize` bytes; it is overwritten.
    public static func open<R>(_ d: UnsafeRawBufferPointer, header h: QUICLongHeader, keys: QUICInitialKeys,
                               scratch: UnsafeMutableRawBufferPointer,
                               _ body: (_ plaintext: UnsafeRawBufferPointer, _ packetNumber: UInt64) -> R) -> R? {
        let pnOffset = h.packetNumberOffset
        // The sample starts 4 bytes past the packet number's start, whatever its length (§5.4.2).
        guard h.start >= 0, h.start < pnOffset, h.end <= d.count, pnOffset + 4 + 16 <= h.end,
              scratch.count >= scratchSize, pnOffset - h.start + 4 <= scratchSize - headerOffset else { return nil }
        let mask = UnsafeMutableRawBufferPointer(rebasing: scratch[maskOffset..<(maskOffset + 16)])
        mask.copyMemory(from: UnsafeRawBufferPointer(rebasing: d[(pnOffset + 4)..<(pnOffset + 20)]))
        var block = mask.bindMemory(to: UInt8.self)
        do { try AES.permute(&block, key: keys.hpKey) } catch { return nil }
        let first = d[h.start] ^ (mask[0] & 0x0f)
        let pnLength = Int(first & 3) + 1
        let headerLength = pnOffset - h.start + pnLength
        guard pnOffset + pnLength + 16 <= h.end else { return nil }
        let header = UnsafeMutableRawBufferPointer(rebasing: scratch[headerOffset..<(headerOffset + headerLength)])
        header.copyMemory(from: UnsafeRawBufferPointer(rebasing: d[h.start..<(pnOffset + pnLength)]))
        header[0] = first
        // The first Initial packets number from 0: with no packet received yet, the truncated number
        // is the full one (RFC 9000 §A.3 with an expected number of 0).
        var packetNumber: UInt64 = 0
        for i in 0..<pnLength {
            let b = header[headerLength - pnLength + i] ^ mask[1 + i]
            header[headerLength - pnLength + i] = b
            packetNumber = packetNumber << 8 | UInt64(b)
        }
        let nonce = UnsafeMutableRawBufferPointer(rebasing: scratch[nonceOffset..<(nonceOffset + 12)])
        for i in 0..<12 {
            let pnByte = i >= 4 ? UInt8(truncatingIfNeeded: packetNumber >> (8 * UInt64(11 - i))) : 0
            nonce[i] = keys.iv[i] ^ pnByte
        }
        let ciphertext = UnsafeRawBufferPointer(rebasing: d[(pnOffset + pnLength)..<(h.end - 16)])
        let tag = UnsafeRawBufferPointer(rebasing: d[(h.end - 16)..<h.end])
        do {
            let box = try AES.GCM.SealedBox(nonce: AES.GCM.Nonce(data: UnsafeRawBufferPointer(nonce)), ciphertext: ciphertext, tag: tag)
            let plain = try AES.GCM.open(box, using: keys.aeadKey, authenticating: UnsafeRawBufferPointer(header))
            return plain.withUnsafeBytes { body($0, packetNumber) }
        } catch {
            return nil
        }
    }
}
