/// TLS client fingerprints: JA3 (Salesforce, for older SIEM content), JA3S, and JA4 (FoxIO).
///
/// Both drop GREASE values (RFC 8701) as their specifications require. JA4 is the one to pivot on:
/// it sorts ciphers and extensions, so the extension-order randomisation browsers do since 2023 does
/// not split one client into many fingerprints, as it does for JA3.
public enum TLSFingerprint {
    /// The JA3 text: `version,ciphers,extensions,groups,point_formats`, decimal values joined by `-`.
    public static func ja3String(_ h: ClientHello) -> String { withJA3Text(h) { String(decoding: $0, as: UTF8.self) } }

    /// JA3: the MD5 of the JA3 text, lower-case hex.
    public static func ja3(_ h: ClientHello) -> String { withJA3Text(h) { Digest.hex(Digest.md5($0)) } }

    /// Calls `body` with the JA3 text, written into one temporary buffer (a fingerprint per hello: no
    /// string per value).
    static func withJA3Text<R>(_ h: ClientHello, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        let values = 1 + h.cipherSuites.count + h.extensions.count + h.supportedGroups.count + h.ecPointFormats.count
        return FingerprintText.with(capacity: 6 * values + 4) { t in
            t.decimal(h.legacyVersion)
            t.byte(0x2c); t.decimals(h.cipherSuites)
            t.byte(0x2c); t.decimals(h.extensions)
            t.byte(0x2c); t.decimals(h.supportedGroups)
            t.byte(0x2c)
            for (i, f) in h.ecPointFormats.enumerated() {
                if i > 0 { t.byte(0x2d) }
                t.decimal(UInt16(f))
            }
            return body(t.bytes)
        }
    }

    /// The JA3S text: `version,cipher,extensions`.
    public static func ja3sString(_ h: ServerHello) -> String { withJA3SText(h) { String(decoding: $0, as: UTF8.self) } }

    public static func ja3s(_ h: ServerHello) -> String { withJA3SText(h) { Digest.hex(Digest.md5($0)) } }

    static func withJA3SText<R>(_ h: ServerHello, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        FingerprintText.with(capacity: 6 * (2 + h.extensions.count) + 2) { t in
            t.decimal(h.legacyVersion)
            t.byte(0x2c); t.decimal(h.cipherSuite)
            t.byte(0x2c); t.decimals(h.extensions)
            return body(t.bytes)
        }
    }

    /// Transport for JA4's first character.
    public enum Transport: Sendable { case tcp, quic, dtls }

    /// JA4's two-character version code.
    public static func ja4Version(_ v: UInt16) -> String {
        let code = ja4VersionBytes(v)
        return String(decoding: [code.0, code.1], as: UTF8.self)
    }

    static func ja4VersionBytes(_ v: UInt16) -> (UInt8, UInt8) {
        let code: StaticString
        switch v {
        case 0x0304: code = "13"
        case 0x0303: code = "12"
        case 0x0302: code = "11"
        case 0x0301: code = "10"
        case 0x0300: code = "s3"
        case 0x0002: code = "s2"
        case 0xfeff: code = "d1"
        case 0xfefd: code = "d2"
        case 0xfefc: code = "d3"
        default: code = "00"
        }
        return (code.utf8Start[0], code.utf8Start[1])
    }

    static let hexDigits: StaticString = "0123456789abcdef"

    static func hex4(_ v: UInt16) -> String {
        let d = hexDigits.utf8Start
        return String(decoding: [d[Int(v >> 12)], d[Int((v >> 8) & 15)], d[Int((v >> 4) & 15)], d[Int(v & 15)]], as: UTF8.self)
    }

    static func isAlnum(_ c: UInt8) -> Bool { (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) }

    /// The JA4 parts before hashing (`ja4_r` in FoxIO's tools): a, sorted ciphers, sorted extensions + `_` + signature algorithms.
    public static func ja4Raw(_ h: ClientHello, transport: Transport = .tcp) -> (a: String, ciphers: String, extensions: String) {
        withJA4Parts(h, transport: transport) { a, ciphers, extensions in
            (String(decoding: a, as: UTF8.self), String(decoding: ciphers, as: UTF8.self), String(decoding: extensions, as: UTF8.self))
        }
    }

    /// JA4: `a_b_c` with b and c the first 12 hex digits of SHA-256 (`000000000000` when the list is empty).
    public static func ja4(_ h: ClientHello, transport: Transport = .tcp) -> String {
        withJA4Parts(h, transport: transport) { a, ciphers, extensions in
            String(unsafeUninitializedCapacity: a.count + 26) { out in
                var k = 0
                for b in a { out[k] = b; k += 1 }
                // `_` and the first 12 hex digits of the part's SHA-256, or zeros for an empty part.
                func hashed(_ part: UnsafeRawBufferPointer) {
                    out[k] = 0x5f; k += 1
                    guard !part.isEmpty else {
                        for _ in 0..<12 { out[k] = 0x30; k += 1 }
                        return
                    }
                    let d = hexDigits.utf8Start
                    Digest.sha256(part).withUnsafeBytes { digest in
                        for b in digest.prefix(6) {
                            out[k] = d[Int(b >> 4)]; out[k + 1] = d[Int(b & 15)]; k += 2
                        }
                    }
                }
                hashed(ciphers)
                hashed(extensions)
                return k
            }
        }
    }

    /// Calls `body` with JA4's three parts before hashing, written into one temporary buffer.
    static func withJA4Parts<R>(_ h: ClientHello, transport: Transport,
                                _ body: (_ a: UnsafeRawBufferPointer, _ ciphers: UnsafeRawBufferPointer, _ extensions: UnsafeRawBufferPointer) -> R) -> R {
        let capacity = 10 + 5 * (h.cipherSuites.count + h.extensions.count + h.signatureAlgorithms.count) + 1
        return FingerprintText.with(capacity: capacity) { t in
            FingerprintText.sortedValues(h.cipherSuites) { ciphers in
                FingerprintText.sortedValues(h.extensions) { exts in
                    switch transport { case .tcp: t.byte(0x74); case .quic: t.byte(0x71); case .dtls: t.byte(0x64) }
                    let version = ja4VersionBytes(h.highestVersion)
                    t.byte(version.0); t.byte(version.1)
                    t.byte(exts.contains(0) ? 0x64 : 0x69)
                    t.twoDigits(ciphers.count)
                    t.twoDigits(exts.count)
                    ja4ALPN(h, into: &t)
                    let cipherStart = t.count
                    for (i, v) in ciphers.enumerated() {
                        if i > 0 { t.byte(0x2c) }
                        t.hex4(v)
                    }
                    let extStart = t.count
                    var first = true
                    for v in exts where v != 0 && v != 16 {
                        if !first { t.byte(0x2c) }
                        first = false
                        t.hex4(v)
                    }
                    first = true
                    for v in h.signatureAlgorithms where !ClientHello.isGREASE(v) {
                        t.byte(first ? 0x5f : 0x2c)
                        first = false
                        t.hex4(v)
                    }
                    let all = t.bytes
                    return body(UnsafeRawBufferPointer(rebasing: all[..<cipherStart]),
                                UnsafeRawBufferPointer(rebasing: all[cipherStart..<extStart]),
                                UnsafeRawBufferPointer(rebasing: all[extStart...]))
                }
            }
        }
    }

    /// JA4's ALPN part: first and last character of the first ALPN value, hex digits when either is not
    /// alphanumeric; `00` without ALPN.
    static func ja4ALPN(_ h: ClientHello, into t: inout FingerprintText) {
        guard let first = h.alpn.first, let a = first.first, let z = first.last else { t.byte(0x30); t.byte(0x30); return }
        if isAlnum(a) && isAlnum(z) { t.byte(a); t.byte(z); return }
        let d = hexDigits.utf8Start
        t.byte(d[Int(a >> 4)]); t.byte(d[Int(z & 15)])
    }

    /// ECS `tls.version` and `tls.version_protocol` for a wire version.
    public static func versionName(_ v: UInt16) -> (protocol: String, version: String)? {
        switch v {
        case 0x0304: return ("tls", "1.3")
        case 0x0303: return ("tls", "1.2")
        case 0x0302: return ("tls", "1.1")
        case 0x0301: return ("tls", "1.0")
        case 0x0300: return ("ssl", "3.0")
        case 0x0002: return ("ssl", "2.0")
        default: return nil
        }
    }

    /// IANA names of the cipher suites one meets in practice; others are written as `0xNNNN`.
    public static func cipherName(_ v: UInt16) -> String {
        switch v {
        case 0x1301: return "TLS_AES_128_GCM_SHA256"
        case 0x1302: return "TLS_AES_256_GCM_SHA384"
        case 0x1303: return "TLS_CHACHA20_POLY1305_SHA256"
        case 0x1304: return "TLS_AES_128_CCM_SHA256"
        case 0xc02b: return "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"
        case 0xc02c: return "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"
        case 0xc02f: return "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
        case 0xc030: return "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"
        case 0xcca8: return "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"
        case 0xcca9: return "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"
        case 0xc009: return "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"
        case 0xc00a: return "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA"
        case 0xc013: return "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"
        case 0xc014: return "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA"
        case 0xc023: return "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256"
        case 0xc024: return "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384"
        case 0xc027: return "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256"
        case 0xc028: return "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384"
        case 0x009c: return "TLS_RSA_WITH_AES_128_GCM_SHA256"
        case 0x009d: return "TLS_RSA_WITH_AES_256_GCM_SHA384"
        case 0x009e: return "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256"
        case 0x009f: return "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384"
        case 0x002f: return "TLS_RSA_WITH_AES_128_CBC_SHA"
        case 0x0035: return "TLS_RSA_WITH_AES_256_CBC_SHA"
        case 0x003c: return "TLS_RSA_WITH_AES_128_CBC_SHA256"
        case 0x003d: return "TLS_RSA_WITH_AES_256_CBC_SHA256"
        case 0x0033: return "TLS_DHE_RSA_WITH_AES_128_CBC_SHA"
        case 0x0039: return "TLS_DHE_RSA_WITH_AES_256_CBC_SHA"
        case 0x000a: return "TLS_RSA_WITH_3DES_EDE_CBC_SHA"
        case 0x0005: return "TLS_RSA_WITH_RC4_128_SHA"
        case 0x0004: return "TLS_RSA_WITH_RC4_128_MD5"
        case 0xc011: return "TLS_ECDHE_RSA_WITH_RC4_128_SHA"
        default: return "0x" + hex4(v)
        }
    }
}

/// The text of a fingerprint, written byte by byte into a temporary buffer sized from the hello's lists
/// (each writer's bound is exact: a value is at most 5 digits plus a separator), so building one costs
/// no string per value and no allocation beyond the buffer.
struct FingerprintText {
    let base: UnsafeMutablePointer<UInt8>
    let capacity: Int
    private(set) var count = 0

    static func with<R>(capacity: Int, _ body: (inout FingerprintText) -> R) -> R {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: max(1, capacity)) { buffer in
            var t = FingerprintText(base: buffer.baseAddress!, capacity: buffer.count)
            return body(&t)
        }
    }

    /// Calls `body` with `values` less GREASE, sorted (JA4's order), in a temporary buffer.
    static func sortedValues<R>(_ values: [UInt16], _ body: (UnsafeMutableBufferPointer<UInt16>) -> R) -> R {
        withUnsafeTemporaryAllocation(of: UInt16.self, capacity: max(1, values.count)) { buffer in
            var n = 0
            for v in values where !ClientHello.isGREASE(v) { buffer[n] = v; n += 1 }
            var kept = UnsafeMutableBufferPointer(rebasing: buffer[..<n])
            kept.sort()
            return body(kept)
        }
    }

    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    mutating func byte(_ b: UInt8) {
        precondition(count < capacity, "fingerprint text bound")
        base[count] = b
        count += 1
    }

    mutating func decimal(_ v: UInt16) {
        let n = v < 10 ? 1 : v < 100 ? 2 : v < 1000 ? 3 : v < 10000 ? 4 : 5
        precondition(count + n <= capacity, "fingerprint text bound")
        var x = v
        for i in stride(from: n - 1, through: 0, by: -1) {
            base[count + i] = 0x30 + UInt8(x % 10)
            x /= 10
        }
        count += n
    }

    /// `values` less GREASE, in decimal, joined by `-` (JA3's lists).
    mutating func decimals(_ values: [UInt16]) {
        var first = true
        for v in values where !ClientHello.isGREASE(v) {
            if !first { byte(0x2d) }
            first = false
            decimal(v)
        }
    }

    mutating func hex4(_ v: UInt16) {
        let d = TLSFingerprint.hexDigits.utf8Start
        byte(d[Int(v >> 12)]); byte(d[Int((v >> 8) & 15)]); byte(d[Int((v >> 4) & 15)]); byte(d[Int(v & 15)])
    }

    /// A count as two decimal digits, capped at 99 (JA4).
    mutating func twoDigits(_ n: Int) {
        let v = min(n, 99)
        byte(0x30 + UInt8(v / 10)); byte(0x30 + UInt8(v % 10))
    }
}
