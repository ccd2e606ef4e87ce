import PacketCore

/// What the sensor reports of a server certificate (ECS `tls.server.x509.*`, `tls.server.hash.*`).
public struct X509Summary: Sendable, Equatable {
    /// Distinguished names in certificate order, `C=US, O=Example, CN=www.example.com` (ECS's form).
    public var subject = ""
    public var issuer = ""
    /// The serial number's bytes as upper-case hex (leading zero octets of the DER integer dropped).
    public var serialNumber = ""
    /// Validity in whole seconds since the epoch, not packet-clock nanoseconds: certificates without a
    /// real expiry say 9999-12-31 (RFC 5280 §4.1.2.5), far past what the nanosecond clock holds.
    public var notBefore: Int64?
    public var notAfter: Int64?
    /// Subject alternative names of type dNSName, in order.
    public var alternativeNames: [String] = []
    /// `RSA`, `EC`, `DSA`, `Ed25519`, `Ed448`, or the algorithm's OID.
    public var publicKeyAlgorithm = ""
    /// Bits of the RSA/DSA modulus, or of the curve.
    public var publicKeySize: Int?
    /// Lower-case hex digests of the certificate's DER.
    public var sha1 = ""
    public var sha256 = ""

    public init() {}
}

/// A bounded DER reader for X.509 certificates from the wire.
///
/// Hostile input: every length is checked against what encloses it (`ByteCursor`), long-form lengths
/// are at most three octets, multi-byte tags and indefinite lengths (not DER) are refused, recursion
/// is fixed by the certificate grammar, and every read returns nil rather than trapping.
public enum X509Reader {
    /// Largest certificate read (real ones are 1–4 kB; the TLS Certificate message allows 16 MB).
    public static let maxCertificate = 65_536

    /// One DER element: its tag byte and content.
    public static func element(_ c: inout ByteCursor) -> (tag: UInt8, content: UnsafeRawBufferPointer)? {
        guard let tag = c.u8(), tag & 0x1f != 0x1f, let first = c.u8() else { return nil }
        var length = 0
        if first < 0x80 {
            length = Int(first)
        } else {
            let n = Int(first & 0x7f)
            guard n >= 1, n <= 3 else { return nil }
            for _ in 0..<n {
                guard let b = c.u8() else { return nil }
                length = length << 8 | Int(b)
            }
        }
        guard let content = c.take(length) else { return nil }
        return (tag, content)
    }

    /// The element of `tag` at the cursor, or nil (cursor unchanged) if the next element has another tag.
    static func expect(_ tag: UInt8, _ c: inout ByteCursor) -> UnsafeRawBufferPointer? {
        var probe = c
        guard let e = element(&probe), e.tag == tag else { return nil }
        c = probe
        return e.content
    }

    /// Parses a certificate's DER; nil when it is not a well-formed X.509 certificate.
    public static func parse(_ der: UnsafeRawBufferPointer) -> X509Summary? {
        guard der.count <= maxCertificate else { return nil }
        var top = ByteCursor(der)
        guard let cert = expect(0x30, &top), top.isAtEnd else { return nil }
        var cc = ByteCursor(cert)
        guard let tbs = expect(0x30, &cc) else { return nil }
        var t = ByteCursor(tbs)
        var s = X509Summary()
        _ = expect(0xa0, &t)  // version, explicit and optional
        guard let serial = expect(0x02, &t), !serial.isEmpty else { return nil }
        var start = 0
        while start < serial.count - 1, serial[start] == 0 { start += 1 }
        s.serialNumber = hexUpper(UnsafeRawBufferPointer(rebasing: serial[start...]))
        guard expect(0x30, &t) != nil,  // signature algorithm
              let issuer = expect(0x30, &t), let issuerName = distinguishedName(issuer),
              let validity = expect(0x30, &t),
              let subject = expect(0x30, &t), let subjectName = distinguishedName(subject),
              let spki = expect(0x30, &t) else { return nil }
        s.issuer = issuerName
        s.subject = subjectName
        var v = ByteCursor(validity)
        guard let nb = element(&v), let na = element(&v) else { return nil }
        s.notBefore = time(nb.tag, nb.content)
        s.notAfter = time(na.tag, na.content)
        guard let key = publicKey(spki) else { return nil }
        s.publicKeyAlgorithm = key.algorithm
        s.publicKeySize = key.size
        _ = expect(0x81, &t)  // issuerUniqueID
        _ = expect(0x82, &t)  // subjectUniqueID
        if let explicit = expect(0xa3, &t) {
            var e = ByteCursor(explicit)
            guard let list = expect(0x30, &e) else { return nil }
            var l = ByteCursor(list)
            while !l.isAtEnd {
                guard let ext = expect(0x30, &l) else { return nil }
                var x = ByteCursor(ext)
                guard let oid = expect(0x06, &x) else { return nil }
                _ = expect(0x01, &x)  // critical
                guard let value = expect(0x04, &x) else { return nil }
                if equal(oid, [0x55, 0x1d, 0x11]) { s.alternativeNames += dnsNames(value) }  // 2.5.29.17 subjectAltName
            }
        }
        s.sha1 = Digest.hex(Digest.sha1(der))
        s.sha256 = Digest.hex(Digest.sha256(der))
        return s
    }

    // MARK: Names

    /// Short names of the attribute types one meets (RFC 4514 and OpenSSL's); others as dotted OIDs.
    static func attributeName(_ oid: UnsafeRawBufferPointer) -> String {
        if oid.count == 3, oid[0] == 0x55, oid[1] == 0x04 {
            switch oid[2] {
            case 3: return "CN"
            case 4: return "SN"
            case 5: return "serialNumber"
            case 6: return "C"
            case 7: return "L"
            case 8: return "ST"
            case 9: return "STREET"
            case 10: return "O"
            case 11: return "OU"
            case 12: return "title"
            case 42: return "GN"
            default: break
            }
        }
        if equal(oid, [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01]) { return "emailAddress" }
        if equal(oid, [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19]) { return "DC" }
        return dottedOID(oid) ?? "?"
    }

    /// `C=US, O=Example, CN=host` from a Name (SEQUENCE OF SET OF AttributeTypeAndValue); multi-valued
    /// RDNs are joined with `+`.
    static func distinguishedName(_ name: UnsafeRawBufferPointer) -> String? {
        var parts: [String] = []
        var n = ByteCursor(name)
        while !n.isAtEnd {
            guard let rdn = expect(0x31, &n) else { return nil }
            var r = ByteCursor(rdn)
            var values: [String] = []
            while !r.isAtEnd {
                guard let atv = expect(0x30, &r) else { return nil }
                var a = ByteCursor(atv)
                guard let oid = expect(0x06, &a), let value = element(&a) else { return nil }
                values.append(attributeName(oid) + "=" + directoryString(value.tag, value.content))
            }
            parts.append(values.joined(separator: "+"))
        }
        return parts.joined(separator: ", ")
    }

    /// The text of a DirectoryString (UTF8, Printable, IA5, Teletex as Latin-1, BMP as UTF-16).
    static func directoryString(_ tag: UInt8, _ v: UnsafeRawBufferPointer) -> String {
        switch tag {
        case 0x14: return String(String.UnicodeScalarView(v.map { Unicode.Scalar($0) }))
        case 0x1e:
            var units: [UInt16] = []
            units.reserveCapacity(v.count / 2)
            var i = 0
            while i + 1 < v.count { units.append(UInt16(v[i]) << 8 | UInt16(v[i + 1])); i += 2 }
            return String(decoding: units, as: UTF16.self)
        default: return String(decoding: v, as: UTF8.self)
        }
    }

    /// dNSName entries ([2] IMPLICIT IA5String) of a subjectAltName extension value.
    static func dnsNames(_ value: UnsafeRawBufferPointer) -> [String] {
        var o = ByteCursor(value)
        guard let seq = expect(0x30, &o) else { return [] }
        var g = ByteCursor(seq)
        var names: [String] = []
        while let e = element(&g) {
            if e.tag == 0x82 { names.append(String(decoding: e.content, as: UTF8.self)) }
        }
        return names
    }

    static func dottedOID(_ oid: UnsafeRawBufferPointer) -> String? {
        guard !oid.isEmpty, oid.count <= 64 else { return nil }
        var arcs: [UInt64] = []
        var v: UInt64 = 0
        for b in oid {
            guard v < (1 << 56) else { return nil }
            v = v << 7 | UInt64(b & 0x7f)
            if b & 0x80 == 0 { arcs.append(v); v = 0 }
        }
        guard v == 0, let first = arcs.first else { return nil }
        let head = first < 80 ? [first / 40, first % 40] : [2, first - 80]
        return (head + arcs.dropFirst()).map(String.init).joined(separator: ".")
    }

    static func equal(_ a: UnsafeRawBufferPointer, _ b: [UInt8]) -> Bool { a.count == b.count && a.elementsEqual(b) }

    static func hexUpper(_ b: UnsafeRawBufferPointer) -> String {
        let digits: [UInt8] = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(b.count * 2)
        for x in b { out.append(digits[Int(x >> 4)]); out.append(digits[Int(x & 15)]) }
        return String(decoding: out, as: UTF8.self)
    }

    // MARK: Key

    /// The algorithm and size of a SubjectPublicKeyInfo.
    static func publicKey(_ spki: UnsafeRawBufferPointer) -> (algorithm: String, size: Int?)? {
        var s = ByteCursor(spki)
        guard let algorithm = expect(0x30, &s), let bits = expect(0x03, &s), !bits.isEmpty else { return nil }
        var a = ByteCursor(algorithm)
        guard let oid = expect(0x06, &a) else { return nil }
        let parameters = a.isAtEnd ? nil : element(&a)
        let key = UnsafeRawBufferPointer(rebasing: bits[1...])
        if equal(oid, [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01]) {  // rsaEncryption
            var k = ByteCursor(key)
            guard let seq = expect(0x30, &k) else { return ("RSA", nil) }
            var q = ByteCursor(seq)
            return ("RSA", expect(0x02, &q).map(integerBits))
        }
        if equal(oid, [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]) {  // id-ecPublicKey
            if let p = parameters, p.tag == 0x06 {
                switch Array(p.content) {
                case [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]: return ("EC", 256)  // prime256v1
                case [0x2b, 0x81, 0x04, 0x00, 0x22]: return ("EC", 384)  // secp384r1
                case [0x2b, 0x81, 0x04, 0x00, 0x23]: return ("EC", 521)  // secp521r1
                case [0x2b, 0x81, 0x04, 0x00, 0x0a]: return ("EC", 256)  // secp256k1
                default: break
                }
            }
            // Otherwise from the uncompressed point (04 || X || Y).
            return ("EC", key.count > 1 && key[0] == 4 ? (key.count - 1) / 2 * 8 : nil)
        }
        if equal(oid, [0x2a, 0x86, 0x48, 0xce, 0x38, 0x04, 0x01]) {  // id-dsa: size of p
            guard let p = parameters, p.tag == 0x30 else { return ("DSA", nil) }
            var q = ByteCursor(p.content)
            return ("DSA", expect(0x02, &q).map(integerBits))
        }
        if equal(oid, [0x2b, 0x65, 0x70]) { return ("Ed25519", 256) }
        if equal(oid, [0x2b, 0x65, 0x71]) { return ("Ed448", 456) }
        return (dottedOID(oid) ?? "?", nil)
    }

    /// Significant bits of a non-negative DER integer.
    static func integerBits(_ v: UnsafeRawBufferPointer) -> Int {
        var i = 0
        while i < v.count, v[i] == 0 { i += 1 }
        guard i < v.count else { return 0 }
        return (v.count - i - 1) * 8 + (8 - v[i].leadingZeroBitCount)
    }

    // MARK: Time

    /// UTCTime (`YYMMDDHHMMSSZ`, years 1950–2049) or GeneralizedTime (`YYYYMMDDHHMMSSZ`).
    static func time(_ tag: UInt8, _ v: UnsafeRawBufferPointer) -> Int64? {
        let yearDigits: Int
        switch tag {
        case 0x17: yearDigits = 2
        case 0x18: yearDigits = 4
        default: return nil
        }
        guard v.count == yearDigits + 11, v[v.count - 1] == 0x5a else { return nil }
        var fields: [Int64] = []
        var i = 0
        for width in [yearDigits, 2, 2, 2, 2, 2] {
            var x: Int64 = 0
            for _ in 0..<width {
                guard v[i] >= 0x30, v[i] <= 0x39 else { return nil }
                x = x * 10 + Int64(v[i] - 0x30)
                i += 1
            }
            fields.append(x)
        }
        var year = fields[0]
        if yearDigits == 2 { year += year < 50 ? 2000 : 1900 }
        let (m, d, hh, mm, ss) = (fields[1], fields[2], fields[3], fields[4], fields[5])
        guard (1...12).contains(m), (1...31).contains(d), hh < 24, mm < 60, ss <= 60 else { return nil }
        return RFC3339.days(year: year, month: m, day: d) * 86_400 + hh * 3600 + mm * 60 + ss
    }
}
