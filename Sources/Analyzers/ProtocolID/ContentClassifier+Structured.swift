import PacketCore

/// Tests that confirm a protocol by its structure beyond the first bytes: length fields that agree with
/// the datagram or segment, enumerated fields inside their ranges, checksums where the protocol has them.
/// A port mismatch is alerted on only for protocols named here (or by the older magic-based tests), so a
/// test that names a protocol from a lucky first byte would be a false alert on every such session.
extension ContentClassifier {
    // MARK: ASN.1 BER (LDAP, CLDAP, SNMP)

    /// A BER definite length at `i`: (length, index after the length octets).
    static func berLength(_ b: UnsafeRawBufferPointer, _ i: Int) -> (Int, Int)? {
        guard i < b.count else { return nil }
        let first = b[i]
        if first & 0x80 == 0 { return (Int(first), i + 1) }
        let n = Int(first & 0x7f)
        guard n >= 1, n <= 4, i + n < b.count else { return nil }  // Windows writes 4-byte lengths
        var len = 0
        for k in 1...n { len = len << 8 | Int(b[i + k]) }
        return (len, i + 1 + n)
    }

    /// An LDAP message envelope: SEQUENCE { INTEGER messageID, [APPLICATION n] protocolOp }; the op's
    /// tag, or nil. With `whole`, the SEQUENCE must fill `b` exactly (a datagram holds one message).
    static func ldapOperation(_ b: UnsafeRawBufferPointer, whole: Bool) -> UInt8? {
        guard b.count >= 7, b[0] == 0x30, case let (outer, body)? = berLength(b, 1) else { return nil }
        let end = body + outer
        if whole { guard end == b.count else { return nil } }
        guard body + 2 < b.count, b[body] == 0x02, b[body + 1] >= 1, b[body + 1] <= 4 else { return nil }
        let op = body + 2 + Int(b[body + 1])
        guard op < b.count, case let (opLen, opBody)? = berLength(b, op + 1) else { return nil }
        guard opBody + opLen <= end else { return nil }
        return b[op]
    }

    /// LDAP over TCP: a client's bind, search, extended (StartTLS), or unbind.
    static func isLDAP(_ b: UnsafeRawBufferPointer) -> Bool {
        guard let op = ldapOperation(b, whole: false) else { return false }
        return op == 0x60 || op == 0x63 || op == 0x77 || op == 0x42
    }

    /// CLDAP (RFC 1798, the Active Directory domain-controller locator on UDP 389): one LDAP search
    /// request, entry or done per datagram.
    static func isCLDAP(_ b: UnsafeRawBufferPointer) -> Bool {
        guard let op = ldapOperation(b, whole: true) else { return false }
        return op == 0x63 || op == 0x64 || op == 0x65
    }

    /// SNMP: SEQUENCE { INTEGER version, … } filling the datagram; v1/v2c continue with the community
    /// string and a PDU tag (0xa0–0xa8), v3 with its header SEQUENCE.
    static func isSNMP(_ b: UnsafeRawBufferPointer) -> Bool {
        guard b.count >= 8, b[0] == 0x30, case let (outer, body)? = berLength(b, 1), body + outer == b.count else { return false }
        guard body + 3 < b.count, b[body] == 0x02, b[body + 1] == 1 else { return false }
        let v = b[body + 2]
        let next = body + 3
        switch v {
        case 0, 1:
            guard b[next] == 0x04, case let (community, c)? = berLength(b, next + 1), c + community < b.count else { return false }
            let pdu = b[c + community]
            return pdu >= 0xa0 && pdu <= 0xa8
        case 3:
            return b[next] == 0x30
        default:
            return false
        }
    }

    // MARK: ONC-RPC (portmap, NFS, mountd, NLM)

    /// An ONC-RPC message (RFC 5531) at the start of `b`: a call with RPC version 2 and sane credential
    /// and verifier lengths, or a reply whose accepted/denied status and verifier agree.
    static func isONCRPCMessage(_ b: UnsafeRawBufferPointer) -> Bool {
        var c = ByteCursor(b)
        guard c.skip(4), let type = c.u32() else { return false }
        func opaqueAuth() -> Bool {
            guard let flavor = c.u32(), flavor <= 6 || flavor == 390_003 || flavor == 390_004,  // AUTH_* and RPCSEC_GSS/TLS
                  let len = c.u32(), len <= 400 else { return false }
            return c.skip(Int((len + 3) & ~3))
        }
        switch type {
        case 0:
            guard c.u32() == 2, c.skip(12) else { return false }  // rpcvers, then program, version, procedure
            return opaqueAuth() && opaqueAuth()
        case 1:
            guard let stat = c.u32() else { return false }
            if stat == 0 {
                guard opaqueAuth(), let accept = c.u32() else { return false }
                return accept <= 5
            }
            guard stat == 1, let reject = c.u32() else { return false }
            return reject <= 1
        default:
            return false
        }
    }

    /// ONC-RPC over TCP: a record mark (last-fragment bit, length) then a message.
    static func isONCRPCOverTCP(_ b: UnsafeRawBufferPointer) -> Bool {
        guard b.count >= 28 else { return false }
        let mark = UInt32(b[0]) << 24 | UInt32(b[1]) << 16 | UInt32(b[2]) << 8 | UInt32(b[3])
        let len = mark & 0x7fff_ffff
        guard len >= 24, len <= 1 << 20 else { return false }
        return isONCRPCMessage(UnsafeRawBufferPointer(rebasing: b[4..<min(b.count, 4 + Int(len))]))
    }

    // MARK: ISO transport on TCP (RDP, S7comm, MMS)

    /// What a TPKT + X.224 Connection Request carries: RDP's cookie or negotiation request, or the
    /// TSAP parameters of an ISO-on-TCP (RFC 1006) session as S7comm and MMS open it.
    enum ConnectionRequest { case rdp, isoTransport }

    static func connectionRequest(_ b: UnsafeRawBufferPointer) -> ConnectionRequest? {
        guard b.count >= 11, b[0] == 3, b[1] == 0 else { return nil }
        let tpkt = Int(b[2]) << 8 | Int(b[3])
        let li = Int(b[4])
        // The CR fills its TPKT; destination reference 0 (RFC 1006 / ISO 8073 §13.3).
        guard tpkt >= 11, tpkt <= 4096, li + 5 == tpkt, li >= 6, b[5] & 0xf0 == 0xe0, b[6] == 0, b[7] == 0 else { return nil }
        let end = min(b.count, tpkt)
        var i = 11
        if i == tpkt { return .rdp }  // no variable part: an RDP client without cookie or negotiation
        if starts(UnsafeRawBufferPointer(rebasing: b[i..<end]), "Cookie: ") {
            // mstshash cookie or routing token, CR LF terminated; then an optional RDP_NEG_REQ.
            while i + 1 < end, !(b[i] == 0x0d && b[i + 1] == 0x0a) { i += 1 }
            guard i + 1 < end else { return nil }
            i += 2
            if i == tpkt { return .rdp }
        }
        guard i < end else { return nil }
        if b[i] == 0x01 || b[i] == 0x06 {
            // RDP_NEG_REQ / RDP_CORRELATION_INFO: type, flags, length 8 (little-endian).
            guard i + 8 <= tpkt, i + 3 < end, b[i + 2] == 8, b[i + 3] == 0 else { return nil }
            return i + 8 == tpkt || (i + 8 + 36 == tpkt) ? .rdp : nil
        }
        // COTP parameters: code, length, value; a TSAP (0xc1/0xc2) must be among them.
        var tsap = false
        while i < tpkt {
            guard i + 1 < end else { return nil }
            let code = b[i], len = Int(b[i + 1])
            guard code == 0xc0 || code == 0xc1 || code == 0xc2 || code == 0xc6 || code == 0xc7 || code == 0x85
                    || code == 0x87 || code == 0x88 || code == 0x89 || code == 0x8a || code == 0x8b || code == 0x8c || code == 0xe0,
                  i + 2 + len <= tpkt else { return nil }
            if code == 0xc1 || code == 0xc2 { tsap = true }
            i += 2 + len
        }
        return tsap ? .isoTransport : nil
    }

    /// The first data TPDU of an ISO-on-TCP session names the application above COTP: S7comm's
    /// protocol id 0x32 (0x72 for S7comm-plus), or an ISO 8327 session CONNECT SPDU (13), which on
    /// port 102 carries MMS (IEC 61850, ICCP). `b` starts at a TPKT.
    public static func isoTransportApplication(_ b: UnsafeRawBufferPointer) -> AppProtocol? {
        guard b.count >= 8, b[0] == 3, b[1] == 0 else { return nil }
        let tpkt = Int(b[2]) << 8 | Int(b[3])
        guard tpkt >= 8, b[4] == 2, b[5] == 0xf0 else { return nil }  // DT TPDU, LI 2
        switch b[7] {
        case 0x32: return b.count >= 10 && b[8] >= 1 && b[8] <= 7 ? .s7comm : nil  // ROSCTR job … userdata
        case 0x72: return .s7comm
        case 0x0d: return .mms
        default: return nil
        }
    }

    // MARK: Industrial

    /// Modbus/TCP request: transaction id, protocol id 0, a length that matches what follows, a unit id
    /// and a request function code (1–127: vendors use the reserved ones, Schneider's UMAS is 90).
    static func isModbus(_ b: UnsafeRawBufferPointer) -> Bool {
        guard b.count >= 8, b.count <= 260, b[2] == 0, b[3] == 0 else { return false }
        let len = Int(b[4]) << 8 | Int(b[5])
        guard len >= 2, len + 6 == b.count else { return false }
        return b[7] >= 1 && b[7] <= 127
    }

    /// DNP3 link frame: start bytes 0x05 0x64, a length of at least 5, and the header's CRC-16/DNP.
    static func isDNP3(_ b: UnsafeRawBufferPointer) -> Bool {
        guard b.count >= 10, b[0] == 0x05, b[1] == 0x64, b[2] >= 5 else { return false }
        var crc: UInt16 = 0
        for i in 0..<8 {
            crc ^= UInt16(b[i])
            for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0xa6bc : crc >> 1 }
        }
        crc = ~crc
        return b[8] == UInt8(crc & 0xff) && b[9] == UInt8(crc >> 8)
    }

    // MARK: Databases, mail retrieval, remote desktop, messaging

    /// PostgreSQL startup, SSL/GSS-encryption request or cancel: a length that matches, and the code.
    static func isPostgreSQL(_ b: UnsafeRawBufferPointer) -> Bool {
        guard b.count >= 8 else { return false }
        let len = Int(b[0]) << 24 | Int(b[1]) << 16 | Int(b[2]) << 8 | Int(b[3])
        let code = UInt32(b[4]) << 24 | UInt32(b[5]) << 16 | UInt32(b[6]) << 8 | UInt32(b[7])
        switch code {
        case 80_877_103, 80_877_104: return len == 8 && b.count == 8   // SSLRequest, GSSENCRequest
        case 80_877_102: return len == 16 && b.count == 16             // CancelRequest
        case 0x0003_0000: return len >= 9 && len <= 10_000 && len == b.count && b[b.count - 1] == 0  // StartupMessage v3
        default: return false
        }
    }

    /// MySQL/MariaDB server greeting: 3-byte length, sequence 0, protocol 10, a printable version
    /// string ended by NUL inside the packet.
    static func isMySQLGreeting(_ b: UnsafeRawBufferPointer) -> Bool {
        guard b.count >= 10, b[3] == 0, b[4] == 10 else { return false }
        let len = Int(b[0]) | Int(b[1]) << 8 | Int(b[2]) << 16
        guard len >= 20, len <= 1024 else { return false }
        var i = 5
        let end = min(b.count, 4 + len)
        while i < end, b[i] != 0 {
            guard b[i] >= 0x20, b[i] < 0x7f else { return false }
            i += 1
        }
        return i < end && i > 5
    }

    /// Redis RESP: an array of bulk strings (`*N\r\n$M\r\n`), as every client command is sent.
    static func isRedis(_ b: UnsafeRawBufferPointer) -> Bool {
        guard b.count >= 8, b[0] == 0x2a else { return false }
        var i = 1
        while i < b.count, i < 6, b[i] >= 0x30, b[i] <= 0x39 { i += 1 }
        guard i > 1, i + 3 < b.count, b[i] == 0x0d, b[i + 1] == 0x0a, b[i + 2] == 0x24 else { return false }
        i += 3
        let digits = i
        while i < b.count, i < digits + 9, b[i] >= 0x30, b[i] <= 0x39 { i += 1 }
        return i > digits && i + 1 < b.count && b[i] == 0x0d && b[i + 1] == 0x0a
    }

    /// MQTT CONNECT: packet type 1, a variable-length remaining length, then the protocol name
    /// `MQTT` (3.1.1, 5) or `MQIsdp` (3.1).
    static func isMQTTConnect(_ b: UnsafeRawBufferPointer) -> Bool {
        guard b.count >= 12, b[0] == 0x10 else { return false }
        var i = 1
        while i < 5, i < b.count, b[i] & 0x80 != 0 { i += 1 }
        i += 1
        guard i + 8 <= b.count, b[i] == 0 else { return false }
        let rest = UnsafeRawBufferPointer(rebasing: b[(i + 1)...])
        return starts(rest, "\u{4}MQTT") || starts(rest, "\u{6}MQIsdp")
    }

    /// Telnet option negotiation: IAC followed by WILL/WONT/DO/DONT (or SB) and an option, repeated
    /// over the whole first segment's negotiation run.
    static func isTelnetNegotiation(_ b: UnsafeRawBufferPointer) -> Bool {
        guard b.count >= 3, b[0] == 0xff, b[1] >= 0xfa, b[1] <= 0xfe else { return false }
        var i = 0
        var commands = 0
        while i + 2 < b.count, b[i] == 0xff, b[i + 1] >= 0xfb, b[i + 1] <= 0xfe { i += 3; commands += 1 }
        // A lone IAC triple followed by anything is not enough: the run must fill the segment, or repeat.
        return commands >= 2 || (commands == 1 && i == b.count)
    }

    /// The TCP client's first bytes for the protocols above.
    static func classifyStructuredClient(_ b: UnsafeRawBufferPointer) -> AppProtocol? {
        if let cr = connectionRequest(b) { return cr == .rdp ? .rdp : .cotp }
        if isONCRPCOverTCP(b) { return .oncRPC }
        if isModbus(b) { return .modbus }
        if isDNP3(b) { return .dnp3 }
        if isPostgreSQL(b) { return .postgresql }
        if isRedis(b) { return .redis }
        if isMQTTConnect(b) { return .mqtt }
        if isTelnetNegotiation(b) { return .telnet }
        return nil
    }

    /// A server that speaks first, for the protocols above and the mail-retrieval and VNC banners.
    static func classifyStructuredGreeting(_ b: UnsafeRawBufferPointer) -> AppProtocol? {
        if isMySQLGreeting(b) { return .mysql }
        // RFB banner: exactly `RFB xxx.yyy\n`.
        if b.count == 12, starts(b, "RFB "), b[7] == 0x2e, b[11] == 0x0a { return .vnc }
        if starts(b, "+OK") && endsLine(b) { return .pop3 }
        if (starts(b, "* OK") || starts(b, "* PREAUTH")) && endsLine(b) { return .imap }
        if isTelnetNegotiation(b) { return .telnet }
        if isDNP3(b) { return .dnp3 }
        return nil
    }

    /// The banner is one text line (CR LF ended, printable): `+OK` or `* OK` followed by binary is not a banner.
    static func endsLine(_ b: UnsafeRawBufferPointer) -> Bool {
        let end = min(b.count, 512)
        for i in 0..<end {
            if b[i] == 0x0a { return i > 0 && b[i - 1] == 0x0d }
            guard b[i] >= 0x20 || b[i] == 0x0d || b[i] == 0x09, b[i] < 0x7f else { return false }
        }
        return false
    }

    // MARK: UDP

    /// STUN (RFC 5389): type with the top two bits clear, a length that is a multiple of 4 and matches
    /// the datagram, and the magic cookie.
    static func isSTUN(_ b: UnsafeRawBufferPointer) -> Bool {
        guard b.count >= 20, b[0] & 0xc0 == 0, b[4] == 0x21, b[5] == 0x12, b[6] == 0xa4, b[7] == 0x42 else { return false }
        let len = Int(b[2]) << 8 | Int(b[3])
        return len & 3 == 0 && len + 20 == b.count
    }

    /// SSDP (UPnP discovery): HTTP over UDP search and notify requests, and their responses on 1900.
    static func isSSDP(_ b: UnsafeRawBufferPointer, sourcePort: UInt16, destinationPort: UInt16) -> Bool {
        if starts(b, "M-SEARCH * HTTP/1.1\r\n") || starts(b, "NOTIFY * HTTP/1.1\r\n") { return true }
        return (sourcePort == 1900 || destinationPort == 1900) && starts(b, "HTTP/1.1 200 OK\r\n")
    }
}
