import Crypto

/// Digests for TLS fingerprints and certificate thumbprints, through swift-crypto (BoringSSL).
///
/// JA3 is an MD5 and JA4's parts are truncated SHA-256 because their specifications say so; MD5 and
/// SHA-1 here are labels other tools compute the same way, not security primitives.
public enum Digest {
    public static func md5(_ data: UnsafeRawBufferPointer) -> Insecure.MD5Digest {
        var h = Insecure.MD5()
        h.update(bufferPointer: data)
        return h.finalize()
    }

    public static func sha1(_ data: UnsafeRawBufferPointer) -> Insecure.SHA1Digest {
        var h = Insecure.SHA1()
        h.update(bufferPointer: data)
        return h.finalize()
    }

    public static func sha256(_ data: UnsafeRawBufferPointer) -> SHA256Digest {
        var h = SHA256()
        h.update(bufferPointer: data)
        return h.finalize()
    }

    public static func md5(_ bytes: [UInt8]) -> Insecure.MD5Digest { bytes.withUnsafeBytes { md5($0) } }
    public static func sha1(_ bytes: [UInt8]) -> Insecure.SHA1Digest { bytes.withUnsafeBytes { sha1($0) } }
    public static func sha256(_ bytes: [UInt8]) -> SHA256Digest { bytes.withUnsafeBytes { sha256($0) } }

    /// MD5 of a string's UTF-8, without copying it out first (JA3 and JA3S texts).
    public static func md5(_ text: String) -> Insecure.MD5Digest {
        var text = text
        return text.withUTF8 { md5(UnsafeRawBufferPointer($0)) }
    }

    public static func sha256(_ text: String) -> SHA256Digest {
        var text = text
        return text.withUTF8 { sha256(UnsafeRawBufferPointer($0)) }
    }

    /// Lower-case hex of a digest, cut to `count` characters if given.
    public static func hex<D: Crypto.Digest>(_ digest: D, count: Int? = nil) -> String {
        digest.withUnsafeBytes { hex($0, count: count) }
    }

    /// Lower-case hex of `bytes`, cut to `count` characters if given; written straight into the String.
    public static func hex(_ bytes: UnsafeRawBufferPointer, count: Int? = nil) -> String {
        let n = min(bytes.count * 2, max(0, count ?? Int.max))
        return String(unsafeUninitializedCapacity: n) { out in
            let digits: StaticString = "0123456789abcdef"
            let d = digits.utf8Start
            var k = 0
            for b in bytes where k < n {
                out[k] = d[Int(b >> 4)]
                if k + 1 < n { out[k + 1] = d[Int(b & 15)] }
                k += 2
            }
            return n
        }
    }
}
