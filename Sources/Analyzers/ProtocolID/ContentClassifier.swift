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
        if HTTPLike.isRequest(b) || starts(b, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") { return .http }  // HTTP/1.x, h2c prior knowledge
        if starts(b, "SSH-") { return .ssh }
        if let p = netbiosSession(b) { return p }
        if isDCERPC(b) { return .dceRPC }
        if let p = classifyStructuredClient(b) { return p }
        if isDNSOverTCP(b) { return .dns }
        if isKerberosOverTCP(b) { return .kerberos }
        if isLDAP(b) { return .ldap }
        if startsCI(b, "EHLO ") || startsCI(b, "HELO ") { return .smtp }
        if isIRCClient(b) { return .irc }
        return nil
    }

    /// IRC registration: `NICK`, `CAP LS`, `USER name mode unused :realname` (four parameters, the last
    /// after a colon, unlike FTP's or POP3's `USER name`), or `PASS` followed by NICK or USER.
    static func isIRCClient(_ b: UnsafeRawBufferPointer) -> Bool {
        if startsCI(b, "NICK ") || startsCI(b, "CAP LS") || startsCI(b, "CAP REQ ") { return true }
        if startsCI(b, "PASS ") { return contains(b, "NICK ", within: 512) || contains(b, "USER ", within: 512) }
        guard startsCI(b, "USER ") else { return false }
        if contains(b, "NICK ", within: 512) { return true }
        var spaces = 0
        for i in 5..<min(b.count, 512) {
            if b[i] == 0x0a || b[i] == 0x0d { return false }
            if b[i] == 0x20 { spaces += 1; if spaces == 3 { return i + 1 < b.count && b[i + 1] == 0x3a } }
        }
        return false
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
        if isIRCServerLine(b) { return .identified(.irc) }
        if let p = classifyStructuredGreeting(b) { return .identified(p) }
        return .unrecognised
    }

    /// An IRC server's first line: `NOTICE AUTH`, `PING :`, or `:prefix COMMAND` where the command is
    /// NOTICE or a three-digit numeric reply.
    static func isIRCServerLine(_ b: UnsafeRawBufferPointer) -> Bool {
        if starts(b, "NOTICE AUTH") || starts(b, "NOTICE * :") || starts(b, "PING :") { return true }
        guard b.first == 0x3a else { return false }
        var i = 1
        while i < min(b.count, 256), b[i] > 0x20, b[i] < 0x7f { i += 1 }
        guard i > 1, i < b.count, b[i] == 0x20 else { return false }
        let rest = UnsafeRawBufferPointer(rebasing: b[(i + 1)...])
        if starts(rest, "NOTICE ") { return true }
        return rest.count >= 4 && (0...2).allSatisfy { rest[$0] >= 0x30 && rest[$0] <= 0x39 } && rest[3] == 0x20
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
        // Before DNS: an RPC reply's words (xid, 1, 0, …) can pass a loose DNS header check.
        if isONCRPCMessage(b) { return .oncRPC }
        if isDNSMessage(b) {
            if sourcePort == 5353 || destinationPort == 5353 { return .mdns }
            if sourcePort == 5355 || destinationPort == 5355 { return .llmnr }
            if sourcePort == 137 || destinationPort == 137 { return .netbios }
            return .dns
        }
        if isDHCP(b) { return .dhcp }
        if isNTP(b, sourcePort: sourcePort, destinationPort: destinationPort) { return .ntp }
        if starts(b, "SIP/2.0 ") || starts(b, "INVITE sip:") || starts(b, "REGISTER sip:") || starts(b, "OPTIONS sip:") { return .sip }
        // CLDAP before SNMP: both are a BER SEQUENCE opening with a small INTEGER.
        if isCLDAP(b) { return .cldap }
        if isSNMP(b) { return .snmp }
        if isSTUN(b) { return .stun }
        if isSSDP(b, sourcePort: sourcePort, destinationPort: destinationPort) { return .ssdp }
        if isDNP3(b) { return .dnp3 }
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

    /// A DNS message: sane header counts and a well-formed first question (or an empty question section
    /// with answers), checked to the byte.
    public static func isDNSMessage(_ b: UnsafeRawBufferPointer) -> Bool {
        var c = ByteCursor(b)
        guard c.skip(2), let flags = c.u16(), let qd = c.u16(), let an = c.u16(), let ns = c.u16(), let ar = c.u16() else { return false }
        let opcode = (flags >> 11) & 0xf
        guard opcode <= 5, opcode != 3 else { return false }
        guard qd <= 4, an <= 256, ns <= 256, ar <= 256, qd + an + ns + ar > 0 else { return false }
        // A response without questions (mDNS announcements) must open with a well-formed answer record.
        let answerOnly = qd == 0
        guard !answerOnly || (an > 0 && (flags & 0x8000) != 0) else { return false }
        // First question (or answer): labels, then type and class.
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
        let known = qclass & 0x7fff == 1 || qclass & 0x7fff == 3 || qclass & 0x7fff == 255 || qclass & 0x7fff == 254
        guard qtype != 0, known else { return false }
        guard answerOnly else { return true }
        // TTL and RDATA length: the record's data must fit the datagram.
        guard c.skip(4), let rdlength = c.u16() else { return false }
        return c.has(Int(rdlength))
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
}
