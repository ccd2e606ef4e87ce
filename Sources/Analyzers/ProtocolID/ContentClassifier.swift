import PacketCore

/// Names an application protocol from the first payload bytes of a flow, never from its port.
///
/// Each test is a cheap look at a handful of bytes with structure checks strong enough that random
/// binary data rarely passes (length fields that agree with each other, fixed magic, a valid DNS
/// question). Ports are used only to break ties between protocols that share a wire format
/// (DNS, mDNS and LLMNR).
public enum ContentClassifier {
    /// What a server's first bytes (before the client said anything) suggest.
    public enum Greeting: Equatable {
        case identified(AppProtocol)
        /// `220` banner: FTP or SMTP; the client's first command decides if the banner does not.
        case ftpOrSMTP
        case unrecognised
    }

    @inline(__always) static func starts(_ b: UnsafeRawBufferPointer, _ p: StaticString) -> Bool {
        let n = p.utf8CodeUnitCount
        guard b.count >= n else { return false }
        return p.withUTF8Buffer { q in
            for i in 0..<n where b[i] != q[i] { return false }
            return true
        }
    }

    /// Case-insensitive prefix test (commands such as `ehlo` may be lower case).
    @inline(__always) static func startsCI(_ b: UnsafeRawBufferPointer, _ p: StaticString) -> Bool {
        let n = p.utf8CodeUnitCount
        guard b.count >= n else { return false }
        return p.withUTF8Buffer { q in
            for i in 0..<n {
                var c = b[i]
                if c >= 0x61 && c <= 0x7a { c -= 0x20 }
                if c != q[i] { return false }
            }
            return true
        }
    }

    static func contains(_ b: UnsafeRawBufferPointer, _ p: StaticString, within limit: Int) -> Bool {
        let n = p.utf8CodeUnitCount
        let end = min(b.count, limit)
        guard end >= n else { return false }
        return p.withUTF8Buffer { q in
            var i = 0
            outer: while i + n <= end {
                for k in 0..<n {
                    var c = b[i + k]
                    if c >= 0x61 && c <= 0x7a { c -= 0x20 }
                    if c != q[k] { i += 1; continue outer }
                }
                return true
            }
            return false
        }
    }

    /// The originator's first bytes (client speaks first, or answers a banner).
    public static func classifyClient(_ b: UnsafeRawBufferPointer) -> AppProtocol? {
        guard !b.isEmpty else { return nil }
        if TLSLike.isClientHelloStart(b) { return .tls }
        if HTTPLike.isRequest(b) { return .http }
        if starts(b, "SSH-") { return .ssh }
        if let p = netbiosSession(b) { return p }
        if isRDPConnectionRequest(b) { return .rdp }
        if isDCERPC(b) { return .dceRPC }
        if isDNSOverTCP(b) { return .dns }
        if isKerberosOverTCP(b) { return .kerberos }
        if isLDAP(b) { return .ldap }
        if startsCI(b, "EHLO ") || startsCI(b, "HELO ") { return .smtp }
        if startsCI(b, "NICK ") || startsCI(b, "CAP LS") || (startsCI(b, "PASS ") && contains(b, "NICK ", within: 512)) || (startsCI(b, "USER ") && contains(b, "NICK ", within: 512)) { return .irc }
        return nil
    }

    /// The responder's first bytes when it spoke before the client.
    public static func classifyServerGreeting(_ b: UnsafeRawBufferPointer) -> Greeting {
        if starts(b, "SSH-") { return .identified(.ssh) }
        if starts(b, "220") && b.count >= 4 && (b[3] == 0x20 || b[3] == 0x2d) {
            let line = min(b.count, 512)
            if contains(b, "FTP", within: line) { return .identified(.ftp) }
            if contains(b, "SMTP", within: line) || contains(b, "MAIL", within: line) { return .identified(.smtp) }
            return .ftpOrSMTP
        }
        if b.first == 0x3a && (contains(b, " NOTICE ", within: 512) || contains(b, " 001 ", within: 512)) { return .identified(.irc) }
        if starts(b, "NOTICE AUTH") { return .identified(.irc) }
        return .unrecognised
    }

    /// After a `220` banner: the client's first command tells FTP from SMTP.
    public static func resolveFTPOrSMTP(client b: UnsafeRawBufferPointer) -> AppProtocol? {
        if startsCI(b, "EHLO") || startsCI(b, "HELO") || startsCI(b, "MAIL FROM") || startsCI(b, "STARTTLS") { return .smtp }
        if startsCI(b, "USER ") || startsCI(b, "AUTH ") || startsCI(b, "FEAT") || startsCI(b, "SYST") || startsCI(b, "OPTS ") { return .ftp }
        return nil
    }

    /// One UDP datagram (either direction). Ports only separate DNS from mDNS and LLMNR.
    public static func classifyDatagram(_ b: UnsafeRawBufferPointer, sourcePort: UInt16, destinationPort: UInt16) -> AppProtocol? {
        if isQUICLongHeader(b) { return .quic }
        if isDNSMessage(b) {
            if sourcePort == 5353 || destinationPort == 5353 { return .mdns }
            if sourcePort == 5355 || destinationPort == 5355 { return .llmnr }
            if sourcePort == 137 || destinationPort == 137 { return .netbios }
            return .dns
        }
        if isDHCP(b) { return .dhcp }
        if isNTP(b, sourcePort: sourcePort, destinationPort: destinationPort) { return .ntp }
        if starts(b, "SIP/2.0 ") || starts(b, "INVITE sip:") || starts(b, "REGISTER sip:") || starts(b, "OPTIONS sip:") { return .sip }
        if isSNMP(b) { return .snmp }
        return nil
    }

    // MARK: Individual tests

    enum TLSLike {
        static func isClientHelloStart(_ b: UnsafeRawBufferPointer) -> Bool {
            guard b.count >= 6, b[0] == 0x16, b[1] == 3, b[2] <= 4, b[5] == 1 else { return false }
            let len = Int(b[3]) << 8 | Int(b[4])
            return len >= 4 && len <= 18_432
        }
    }

    enum HTTPLike {
        static func isRequest(_ b: UnsafeRawBufferPointer) -> Bool { HTTPParser.looksLikeRequest(b) }
    }

    /// SMB1/SMB2/SMB3 after the 4-byte NetBIOS session header (also on 139), or a NetBIOS session request.
    static func netbiosSession(_ b: UnsafeRawBufferPointer) -> AppProtocol? {
        guard b.count >= 8 else { return nil }
        if b[0] == 0x00 {
            let len = Int(b[1]) << 16 | Int(b[2]) << 8 | Int(b[3])
            guard len >= 4 else { return nil }
            if (b[4] == 0xff || b[4] == 0xfe || b[4] == 0xfd) && b[5] == 0x53 && b[6] == 0x4d && b[7] == 0x42 { return .smb }
            return nil
        }
        if b[0] == 0x81 && b[1] == 0 {  // NetBIOS session request
            let len = Int(b[2]) << 8 | Int(b[3])
            return len == 68 ? .netbios : nil
        }
        return nil
    }

    /// TPKT (version 3) carrying an X.224 Connection Request: how every RDP session starts.
    static func isRDPConnectionRequest(_ b: UnsafeRawBufferPointer) -> Bool {
        guard b.count >= 7, b[0] == 3, b[1] == 0 else { return false }
        let len = Int(b[2]) << 8 | Int(b[3])
        guard len >= 11, len <= 4096 else { return false }
        return Int(b[4]) + 5 <= len && b[5] == 0xe0
    }

    /// DCE/RPC connection-oriented PDU v5.0: bind (11), alter-context (14), request (0).
    static func isDCERPC(_ b: UnsafeRawBufferPointer) -> Bool {
        guard b.count >= 16, b[0] == 5, b[1] == 0, b[2] == 11 || b[2] == 14 || b[2] == 0 else { return false }
        guard b[4] == 0x10 || b[4] == 0x00 else { return false }  // data representation: little- or big-endian ints
        let frag = b[4] == 0x10 ? Int(b[8]) | Int(b[9]) << 8 : Int(b[8]) << 8 | Int(b[9])
        return frag >= 16 && frag <= 65535
    }

    /// DNS over TCP: a 2-byte length that matches a valid DNS message.
    static func isDNSOverTCP(_ b: UnsafeRawBufferPointer) -> Bool {
        guard b.count >= 14 else { return false }
        let len = Int(b[0]) << 8 | Int(b[1])
        guard len >= 12 else { return false }
        let msg = UnsafeRawBufferPointer(rebasing: b[2..<min(b.count, 2 + len)])
        return isDNSMessage(msg)
    }

    /// Kerberos over TCP: a 4-byte length, then an AS-REQ/TGS-REQ application tag (0x6a, 0x6c) and DER length.
    static func isKerberosOverTCP(_ b: UnsafeRawBufferPointer) -> Bool {
        guard b.count >= 8, b[0] == 0 else { return false }
        let len = Int(b[1]) << 16 | Int(b[2]) << 8 | Int(b[3])
        guard len >= 4, b[4] == 0x6a || b[4] == 0x6c else { return false }
        return b[5] & 0x80 == 0 ? Int(b[5]) + 2 == len : (b[5] == 0x81 || b[5] == 0x82 || b[5] == 0x83)
    }

    /// LDAP: a DER SEQUENCE holding a small message id and a bind/search application tag.
    static func isLDAP(_ b: UnsafeRawBufferPointer) -> Bool {
        guard b.count >= 7, b[0] == 0x30 else { return false }
        var i = 2
        if b[1] & 0x80 != 0 {
            let n = Int(b[1] & 0x7f)
            guard n >= 1, n <= 4 else { return false }
            i = 2 + n
        }
        guard i + 3 < b.count, b[i] == 0x02, b[i + 1] >= 1, b[i + 1] <= 4 else { return false }
        let op = i + 2 + Int(b[i + 1])
        guard op < b.count else { return false }
        return b[op] == 0x60 || b[op] == 0x63 || b[op] == 0x77  // bind, search, extended (StartTLS)
    }

    /// A DNS message: sane header counts and a well-formed first question (or an empty question section
    /// with answers), checked to the byte.
    public static func isDNSMessage(_ b: UnsafeRawBufferPointer) -> Bool {
        var c = ByteCursor(b)
        guard c.skip(2), let flags = c.u16(), let qd = c.u16(), let an = c.u16(), let ns = c.u16(), let ar = c.u16() else { return false }
        let opcode = (flags >> 11) & 0xf
        guard opcode <= 5, opcode != 3 else { return false }
        guard qd <= 4, an <= 256, ns <= 256, ar <= 256, qd + an + ns + ar > 0 else { return false }
        guard qd >= 1 else { return an > 0 && (flags & 0x8000) != 0 }
        // First question: labels then type and class.
        var total = 0
        while true {
            guard let len = c.u8() else { return false }
            if len == 0 { break }
            if len & 0xc0 == 0xc0 { return false }  // compression cannot occur in the first name
            guard len <= 63, c.skip(Int(len)) else { return false }
            total += Int(len) + 1
            guard total <= 255 else { return false }
        }
        guard let qtype = c.u16(), let qclass = c.u16() else { return false }
        return qtype != 0 && (qclass & 0x7fff == 1 || qclass & 0x7fff == 3 || qclass & 0x7fff == 255 || qclass & 0x7fff == 254)
    }

    /// QUIC long header (RFC 9000 §17.2): header form and fixed bits, a known version, and sane connection-ID lengths.
    static func isQUICLongHeader(_ b: UnsafeRawBufferPointer) -> Bool {
        // Google QUIC up to Q043: public flags with the version bit, an 8-byte connection ID, then `Q0nn`.
        if b.count >= 13, b[0] & 0x81 == 0x01, b[0] & 0x08 != 0, b[9] == 0x51, b[10] == 0x30,
           b[11] >= 0x30, b[11] <= 0x39, b[12] >= 0x30, b[12] <= 0x39 { return true }
        guard b.count >= 7, b[0] & 0xc0 == 0xc0 else { return false }
        let v = UInt32(b[1]) << 24 | UInt32(b[2]) << 16 | UInt32(b[3]) << 8 | UInt32(b[4])
        let gquic = (v >> 24 == 0x51 || v >> 24 == 0x54) && (v >> 16) & 0xff == 0x30  // Q0nn, T0nn (Q046+, T05x)
        let known = gquic || v == 0x0000_0001 || v == 0x6b33_43cf || v & 0xffff_ff00 == 0xff00_0000 || v & 0x0f0f_0f0f == 0x0a0a_0a0a
        guard known else { return false }
        let dcid = Int(b[5])
        guard dcid <= 20, 6 + dcid < b.count else { return false }
        return Int(b[6 + dcid]) <= 20
    }

    /// BOOTP/DHCP: op 1 or 2, Ethernet hardware type, and the DHCP magic cookie.
    static func isDHCP(_ b: UnsafeRawBufferPointer) -> Bool {
        guard b.count >= 240, b[0] == 1 || b[0] == 2, b[1] == 1, b[2] == 6 else { return false }
        return b[236] == 0x63 && b[237] == 0x82 && b[238] == 0x53 && b[239] == 0x63
    }

    /// NTP: 48-byte (or longer, with extensions) packets, version 1–4, on port 123 (NTP has no magic).
    static func isNTP(_ b: UnsafeRawBufferPointer, sourcePort: UInt16, destinationPort: UInt16) -> Bool {
        guard b.count >= 48, sourcePort == 123 || destinationPort == 123 else { return false }
        let version = (b[0] >> 3) & 7
        let mode = b[0] & 7
        return version >= 1 && version <= 4 && mode >= 1 && mode <= 5
    }

    /// SNMP v1/v2c/v3: SEQUENCE, INTEGER version 0, 1 or 3.
    static func isSNMP(_ b: UnsafeRawBufferPointer) -> Bool {
        guard b.count >= 8, b[0] == 0x30 else { return false }
        var i = 2
        if b[1] & 0x80 != 0 { i = 2 + Int(b[1] & 0x7f) }
        guard i + 2 < b.count, b[i] == 0x02, b[i + 1] == 1 else { return false }
        let v = b[i + 2]
        return v == 0 || v == 1 || v == 3
    }
}
