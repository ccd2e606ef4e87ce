/// TLS client fingerprints: JA3 (Salesforce, for older SIEM content), JA3S, and JA4 (FoxIO).
///
/// Both drop GREASE values (RFC 8701) as their specifications require. JA4 is the one to pivot on:
/// it sorts ciphers and extensions, so the extension-order randomisation browsers do since 2023 does
/// not split one client into many fingerprints, as it does for JA3.
public enum TLSFingerprint {
    /// The JA3 text: `version,ciphers,extensions,groups,point_formats`, decimal values joined by `-`.
    public static func ja3String(_ h: ClientHello) -> String {
        func join<T: BinaryInteger>(_ v: [T]) -> String { v.map { String($0) }.joined(separator: "-") }
        let ciphers = h.cipherSuites.filter { !ClientHello.isGREASE($0) }
        let exts = h.extensions.filter { !ClientHello.isGREASE($0) }
        let groups = h.supportedGroups.filter { !ClientHello.isGREASE($0) }
        return "\(h.legacyVersion),\(join(ciphers)),\(join(exts)),\(join(groups)),\(join(h.ecPointFormats))"
    }

    /// JA3: the MD5 of the JA3 text, lower-case hex.
    public static func ja3(_ h: ClientHello) -> String { Digest.hex(Digest.md5(ja3String(h))) }

    /// The JA3S text: `version,cipher,extensions`.
    public static func ja3sString(_ h: ServerHello) -> String {
        let exts = h.extensions.filter { !ClientHello.isGREASE($0) }.map { String($0) }.joined(separator: "-")
        return "\(h.legacyVersion),\(h.cipherSuite),\(exts)"
    }

    public static func ja3s(_ h: ServerHello) -> String { Digest.hex(Digest.md5(ja3sString(h))) }

    /// Transport for JA4's first character.
    public enum Transport: Sendable { case tcp, quic, dtls }

    /// JA4's two-character version code.
    public static func ja4Version(_ v: UInt16) -> String {
        switch v {
        case 0x0304: return "13"
        case 0x0303: return "12"
        case 0x0302: return "11"
        case 0x0301: return "10"
        case 0x0300: return "s3"
        case 0x0002: return "s2"
        case 0xfeff: return "d1"
        case 0xfefd: return "d2"
        case 0xfefc: return "d3"
        default: return "00"
        }
    }

    static func hex4(_ v: UInt16) -> String {
        let d: [UInt8] = Array("0123456789abcdef".utf8)
        return String(decoding: [d[Int(v >> 12)], d[Int((v >> 8) & 15)], d[Int((v >> 4) & 15)], d[Int(v & 15)]], as: UTF8.self)
    }

    static func isAlnum(_ c: UInt8) -> Bool { (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) }

    /// JA4's ALPN part: first and last character of the first ALPN value, hex digits when either is not alphanumeric.
    static func ja4ALPN(_ h: ClientHello) -> String {
        guard let first = h.alpn.first, let a = first.first, let z = first.last else { return "00" }
        if isAlnum(a) && isAlnum(z) { return String(decoding: [a, z], as: UTF8.self) }
        let d: [UInt8] = Array("0123456789abcdef".utf8)
        return String(decoding: [d[Int(a >> 4)], d[Int(z & 15)]], as: UTF8.self)
    }

    /// The JA4 parts before hashing (`ja4_r` in FoxIO's tools): a, sorted ciphers, sorted extensions + `_` + signature algorithms.
    public static func ja4Raw(_ h: ClientHello, transport: Transport = .tcp) -> (a: String, ciphers: String, extensions: String) {
        let ciphers = h.cipherSuites.filter { !ClientHello.isGREASE($0) }
        let exts = h.extensions.filter { !ClientHello.isGREASE($0) }
        let t: String
        switch transport { case .tcp: t = "t"; case .quic: t = "q"; case .dtls: t = "d" }
        let sni = exts.contains(0) ? "d" : "i"
        let a = t + ja4Version(h.highestVersion) + sni + twoDigits(ciphers.count) + twoDigits(exts.count) + ja4ALPN(h)
        let cipherText = ciphers.sorted().map(hex4).joined(separator: ",")
        var extText = exts.filter { $0 != 0 && $0 != 16 }.sorted().map(hex4).joined(separator: ",")
        let sigs = h.signatureAlgorithms.filter { !ClientHello.isGREASE($0) }
        if !sigs.isEmpty { extText += "_" + sigs.map(hex4).joined(separator: ",") }
        return (a, cipherText, extText)
    }

    /// JA4: `a_b_c` with b and c the first 12 hex digits of SHA-256 (`000000000000` when the list is empty).
    public static func ja4(_ h: ClientHello, transport: Transport = .tcp) -> String {
        let r = ja4Raw(h, transport: transport)
        return r.a + "_" + truncatedHash(r.ciphers) + "_" + truncatedHash(r.extensions)
    }

    static func truncatedHash(_ s: String) -> String {
        s.isEmpty ? "000000000000" : Digest.hex(Digest.sha256(s), count: 12)
    }

    static func twoDigits(_ n: Int) -> String {
        let v = min(n, 99)
        return v < 10 ? "0\(v)" : "\(v)"
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
