import Crypto
import Foundation

/// An age v1 X25519 recipient (`age1…`, the public half of an `age-keygen` identity).
///
/// Parsed from its Bech32 form (HRP `age`, 32-byte X25519 public key, BIP-173 checksum) so a typo in the
/// config is an error at start, not an undecryptable evidence file found months later.
public struct AgeRecipient: Sendable, Equatable, CustomStringConvertible {
    public let publicKey: [UInt8]
    /// The `age1…` text as configured (lower case).
    public let text: String

    public init(_ text: String) throws(AgeError) {
        let lower = text.lowercased()
        if let kind = Self.unsupportedKind(lower) {
            throw AgeError("'\(Self.abbreviated(text))' is \(kind): evidence is encrypted in-process to age X25519 recipients only (age1…, made with age-keygen); SSH and plugin recipients are refused")
        }
        guard text == lower || text == text.uppercased() else { throw AgeError("'\(text)': mixed-case Bech32 string") }
        guard let (hrp, data) = Bech32.decode(lower) else { throw AgeError("'\(text)' is not a valid age1… recipient (bad Bech32 or checksum)") }
        guard hrp == "age" else { throw AgeError("'\(text)' is not an age X25519 recipient (prefix '\(hrp)1', expected 'age1')") }
        guard let key = Bech32.convertBits(data, from: 5, to: 8, pad: false), key.count == 32 else {
            throw AgeError("'\(text)': an X25519 recipient holds 32 bytes")
        }
        publicKey = key
        self.text = lower
    }

    /// What a recipient age accepts but this sensor does not: SSH public keys (`ssh-ed25519 AAAA…`,
    /// `ssh-rsa`, `ecdsa-sha2-…`, `sk-…`) and plugin recipients (`age1NAME1…`: a second Bech32
    /// separator, which an X25519 key's data part cannot contain).
    static func unsupportedKind(_ lower: String) -> String? {
        for prefix in ["ssh-", "ecdsa-", "sk-ssh-", "sk-ecdsa-"] where lower.hasPrefix(prefix) { return "an SSH public key" }
        if lower.hasPrefix("age1"), let plugin = lower.dropFirst(4).firstIndex(of: "1") {
            return "an age plugin recipient (plugin '\(lower[lower.index(lower.startIndex, offsetBy: 4)..<plugin])')"
        }
        return nil
    }

    /// The start of a long key, enough to recognise it in a message.
    static func abbreviated(_ text: String) -> String { text.count > 40 ? String(text.prefix(36)) + "…" : text }

    public var description: String { text }
}

/// An age recipients file (`age -R FILE`): one recipient per line, blank lines and `#` comments ignored.
public enum AgeRecipientsFile {
    /// Recipients files are short lists of keys; anything larger is not one.
    public static let maximumBytes = 1 << 20

    /// Every recipient in `path`; every problem at once, as `PATH:LINE: message`.
    public static func read(_ path: String) throws(AgeError) -> [AgeRecipient] {
        let data: Data
        do {
            let url = URL(fileURLWithPath: path)
            let size = (try url.resourceValues(forKeys: [.fileSizeKey])).fileSize ?? 0
            guard size <= maximumBytes else { throw AgeError("\(path): \(size) bytes, more than a recipients file holds (\(maximumBytes))") }
            data = try Data(contentsOf: url)
        } catch let e as AgeError { throw e } catch {
            throw AgeError("\(path): cannot read recipients file: \((error as NSError).localizedDescription)")
        }
        return try parse(String(decoding: data, as: UTF8.self), path: path)
    }

    public static func parse(_ text: String, path: String) throws(AgeError) -> [AgeRecipient] {
        var recipients: [AgeRecipient] = []
        var problems: [String] = []
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespacesAndNewlines)
            if line.isEmpty || line.hasPrefix("#") { continue }
            do { recipients.append(try AgeRecipient(line)) } catch { problems.append("\(path):\(i + 1): \(error.description)") }
        }
        if recipients.isEmpty && problems.isEmpty { problems.append("\(path): no recipient in the file") }
        guard problems.isEmpty else { throw AgeError(problems.joined(separator: "\n")) }
        return recipients
    }
}

public struct AgeError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ d: String) { description = d }
}

/// BIP-173 Bech32 (the checksum age uses for its keys; not Bech32m).
enum Bech32 {
    static let charset = Array("qpzry9x8gf2tvdw0s3jn54khce6mua7l".utf8)

    static func polymod(_ values: [UInt8]) -> UInt32 {
        let gen: [UInt32] = [0x3b6a_57b2, 0x2650_8e6d, 0x1ea1_19fa, 0x3d42_33dd, 0x2a14_62b3]
        var chk: UInt32 = 1
        for v in values {
            let b = chk >> 25
            chk = (chk & 0x1ff_ffff) << 5 ^ UInt32(v)
            for i in 0..<5 where (b >> i) & 1 == 1 { chk ^= gen[i] }
        }
        return chk
    }

    static func hrpExpand(_ hrp: [UInt8]) -> [UInt8] { hrp.map { $0 >> 5 } + [0] + hrp.map { $0 & 31 } }

    /// Returns the HRP and the 5-bit data (checksum removed), or nil. age keys exceed BIP-173's 90
    /// characters only for long plugin names, so no length limit is applied.
    static func decode(_ s: String) -> (String, [UInt8])? {
        let bytes = Array(s.utf8)
        guard let sep = bytes.lastIndex(of: UInt8(ascii: "1")), sep >= 1, bytes.count - sep - 1 >= 6 else { return nil }
        let hrp = Array(bytes[..<sep])
        guard hrp.allSatisfy({ $0 >= 33 && $0 <= 126 }) else { return nil }
        var data: [UInt8] = []
        for c in bytes[(sep + 1)...] {
            guard let i = charset.firstIndex(of: c) else { return nil }
            data.append(UInt8(i))
        }
        guard polymod(hrpExpand(hrp) + data) == 1 else { return nil }
        return (String(decoding: hrp, as: UTF8.self), Array(data.dropLast(6)))
    }

    static func encode(hrp: String, data: [UInt8]) -> String {
        let h = Array(hrp.utf8)
        let values = hrpExpand(h) + data + [0, 0, 0, 0, 0, 0]
        let mod = polymod(values) ^ 1
        var out = h + [UInt8(ascii: "1")] + data.map { charset[Int($0)] }
        for i in 0..<6 { out.append(charset[Int((mod >> (5 * (5 - UInt32(i)))) & 31)]) }
        return String(decoding: out, as: UTF8.self)
    }

    static func convertBits(_ data: [UInt8], from: Int, to: Int, pad: Bool) -> [UInt8]? {
        var acc = 0, bits = 0
        var out: [UInt8] = []
        let maxv = (1 << to) - 1
        for v in data {
            guard Int(v) >> from == 0 else { return nil }
            acc = (acc << from) | Int(v)
            bits += from
            while bits >= to {
                bits -= to
                out.append(UInt8((acc >> bits) & maxv))
            }
        }
        if pad {
            if bits > 0 { out.append(UInt8((acc << (to - bits)) & maxv)) }
        } else if bits >= from || ((acc << (to - bits)) & maxv) != 0 {
            return nil
        }
        return out
    }
}

/// Where encrypted bytes go. The evidence writer hands over ciphertext only.
public protocol CiphertextSink: AnyObject {
    func writeCiphertext(_ bytes: UnsafeRawBufferPointer) throws
}

/// Streaming age v1 encryption (https://age-encryption.org/v1) to X25519 recipients.
///
/// Plaintext is buffered in memory one 64 KiB chunk at a time and leaves this type only as
/// ChaCha20-Poly1305 ciphertext, so an evidence pcapng never exists unencrypted on disk. The header is
/// written at creation: a random 16-byte file key is wrapped for each recipient (ephemeral X25519,
/// HKDF-SHA256 with salt `ephemeral share || recipient`, ChaCha20-Poly1305 with a zero nonce), and the
/// header is authenticated with HMAC-SHA256 under `HKDF(file key, info "header")`. The payload key is
/// `HKDF(file key, salt = 16-byte random nonce, info "payload")`; chunk nonces are an 11-byte big-endian
/// counter and a last-chunk flag byte. A full chunk is sealed only once more plaintext arrives, because
/// the final chunk must carry the flag and must not be empty unless the whole plaintext is.
///
/// SHA-256 of the plaintext and of the ciphertext (header included) are computed as the stream goes, so
/// both hashes are known at `finish` without reading anything back.
public final class AgeStreamWriter {
    public static let chunkSize = 65536

    let sink: any CiphertextSink
    let payloadKey: SymmetricKey
    var chunk: UnsafeMutableRawBufferPointer
    var chunkFill = 0
    var counter: UInt64 = 0
    var plainHash = SHA256()
    var cipherHash = SHA256()
    public private(set) var plaintextBytes: UInt64 = 0
    public private(set) var ciphertextBytes: UInt64 = 0
    var finished = false

    /// Writes the age header for `recipients` and the payload nonce, then accepts plaintext.
    public init(recipients: [AgeRecipient], sink: any CiphertextSink) throws {
        precondition(!recipients.isEmpty, "age needs at least one recipient")
        self.sink = sink
        let fileKey = SymmetricKey(size: .bits128)
        var header = "age-encryption.org/v1\n"
        for r in recipients {
            let ephemeral = Curve25519.KeyAgreement.PrivateKey()
            let share = ephemeral.publicKey.rawRepresentation
            let theirs = try Curve25519.KeyAgreement.PublicKey(rawRepresentation: r.publicKey)
            let shared = try ephemeral.sharedSecretFromKeyAgreement(with: theirs)
            // age rejects an all-zero shared secret (a low-order recipient key).
            guard shared.withUnsafeBytes({ $0.contains { $0 != 0 } }) else { throw AgeError("recipient \(r) is a low-order point") }
            let wrapKey = shared.hkdfDerivedSymmetricKey(using: SHA256.self, salt: Array(share) + r.publicKey,
                                                          sharedInfo: Array("age-encryption.org/v1/X25519".utf8), outputByteCount: 32)
            let sealed = try ChaChaPoly.seal(fileKey.withUnsafeBytes { Data($0) }, using: wrapKey,
                                             nonce: ChaChaPoly.Nonce(data: Data(count: 12)))
            header += "-> X25519 \(AgeBase64.encode(Array(share)))\n"
            header += AgeBase64.wrappedBody(Array(sealed.ciphertext) + Array(sealed.tag))
        }
        header += "---"
        let macKey = HKDF<SHA256>.deriveKey(inputKeyMaterial: fileKey, salt: [UInt8](), info: Array("header".utf8), outputByteCount: 32)
        let mac = HMAC<SHA256>.authenticationCode(for: Array(header.utf8), using: macKey)
        header += " \(AgeBase64.encode(Array(mac)))\n"
        var nonce = [UInt8](repeating: 0, count: 16)
        var rng = SystemRandomNumberGenerator()
        for i in 0..<16 { nonce[i] = UInt8.random(in: 0...255, using: &rng) }
        payloadKey = HKDF<SHA256>.deriveKey(inputKeyMaterial: fileKey, salt: nonce, info: Array("payload".utf8), outputByteCount: 32)
        chunk = .allocate(byteCount: Self.chunkSize, alignment: 16)
        try emit(Array(header.utf8) + nonce)
    }

    deinit { chunk.deallocate() }

    /// Adds plaintext. Copies into the chunk buffer; seals and writes each chunk once it is known not to be last.
    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        precondition(!finished)
        plainHash.update(bufferPointer: bytes)
        plaintextBytes &+= UInt64(bytes.count)
        var offset = 0
        while offset < bytes.count {
            if chunkFill == Self.chunkSize { try seal(last: false) }
            let n = min(Self.chunkSize - chunkFill, bytes.count - offset)
            (chunk.baseAddress! + chunkFill).copyMemory(from: bytes.baseAddress! + offset, byteCount: n)
            chunkFill += n
            offset += n
        }
    }

    public func write(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try write($0) } }

    /// Seals the final chunk; returns SHA-256 of the plaintext and of everything written (hex).
    public func finish() throws -> (plaintextSHA256: String, ciphertextSHA256: String) {
        precondition(!finished)
        try seal(last: true)
        finished = true
        return (Hex.string(plainHash.finalize()), Hex.string(cipherHash.finalize()))
    }

    func seal(last: Bool) throws {
        var nonce = [UInt8](repeating: 0, count: 12)
        for i in 0..<8 { nonce[3 + i] = UInt8(truncatingIfNeeded: counter >> (56 - 8 * UInt64(i))) }
        nonce[11] = last ? 1 : 0
        let box = try ChaChaPoly.seal(UnsafeRawBufferPointer(rebasing: chunk[0..<chunkFill]), using: payloadKey,
                                      nonce: ChaChaPoly.Nonce(data: nonce))
        counter &+= 1
        chunkFill = 0
        try emit(Array(box.ciphertext) + Array(box.tag))
    }

    func emit(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { b in
            cipherHash.update(bufferPointer: b)
            ciphertextBytes &+= UInt64(b.count)
            try sink.writeCiphertext(b)
        }
    }
}

/// age's base64: standard alphabet, no padding; stanza bodies wrapped at 64 columns, the last line shorter.
enum AgeBase64 {
    static func encode(_ bytes: [UInt8]) -> String {
        var s = Data(bytes).base64EncodedString()
        while s.hasSuffix("=") { s.removeLast() }
        return s
    }

    static func wrappedBody(_ bytes: [UInt8]) -> String {
        let text = Array(encode(bytes).utf8)
        var out = ""
        var i = 0
        while i + 64 <= text.count {
            out += String(decoding: text[i..<(i + 64)], as: UTF8.self) + "\n"
            i += 64
        }
        out += String(decoding: text[i...], as: UTF8.self) + "\n"
        return out
    }
}

/// Lower-case hex of digests.
public enum Hex {
    public static func string<D: Sequence>(_ d: D) -> String where D.Element == UInt8 {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for b in d { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 15)]) }
        return String(decoding: out, as: UTF8.self)
    }

    public static func string<D: Digest>(_ d: D) -> String { string(Array(d)) }
}
