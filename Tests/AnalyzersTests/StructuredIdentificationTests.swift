import XCTest
@testable import Analyzers
import PacketCore

/// Protocols that share a first byte or a wire format with another are told apart by structure: each
/// crafted message is named correctly, and each look-alike that older prefix tests misnamed is not.
final class StructuredIdentificationTests: XCTestCase {
    func client(_ b: [UInt8]) -> AppProtocol? { b.withUnsafeBytes { ContentClassifier.classifyClient($0) } }
    func greeting(_ b: [UInt8]) -> ContentClassifier.Greeting { b.withUnsafeBytes { ContentClassifier.classifyServerGreeting($0) } }
    func datagram(_ b: [UInt8], _ sport: UInt16 = 40000, _ dport: UInt16) -> AppProtocol? {
        b.withUnsafeBytes { ContentClassifier.classifyDatagram($0, sourcePort: sport, destinationPort: dport) }
    }
    func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

    /// BER TLV; `long4` writes the length in four octets as Windows does.
    func tlv(_ tag: UInt8, _ value: [UInt8], long4: Bool = false) -> [UInt8] {
        if long4 { return [tag, 0x84, 0, 0, UInt8(value.count >> 8), UInt8(value.count & 0xff)] + value }
        precondition(value.count < 128)
        return [tag, UInt8(value.count)] + value
    }

    func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xff), UInt8(v >> 8 & 0xff), UInt8(v & 0xff)] }

    // MARK: UDP look-alikes

    /// The AD domain-controller locator (CLDAP search for Netlogon) opens like SNMP (SEQUENCE, INTEGER 1).
    func testCLDAPIsNotSNMP() {
        let search = tlv(0x04, []) + tlv(0x0a, [0]) + tlv(0x0a, [0]) + tlv(0x02, [0]) + tlv(0x02, [0]) + tlv(0x01, [0])
            + tlv(0x87, bytes("objectClass")) + tlv(0x30, tlv(0x04, bytes("Netlogon")))
        let request = tlv(0x30, tlv(0x02, [1]) + tlv(0x63, search, long4: true), long4: true)
        XCTAssertEqual(datagram(request, 55000, 389), .cldap)
        let done = tlv(0x30, tlv(0x02, [1]) + tlv(0x65, tlv(0x0a, [0]) + tlv(0x04, []) + tlv(0x04, [])))
        XCTAssertEqual(datagram(done, 389, 55000), .cldap)
        // A CLDAP message cut short (the SEQUENCE claims more than the datagram holds) is nothing.
        XCTAssertNil(datagram(Array(request.dropLast(3)), 55000, 389))
        // Real SNMP is still SNMP: v2c get-request and v3.
        let pdu = tlv(0xa0, tlv(0x02, [0x12, 0x34]) + tlv(0x02, [0]) + tlv(0x02, [0]) + tlv(0x30, tlv(0x30, tlv(0x06, [0x2b, 6, 1, 2, 1, 1, 1, 0]) + [0x05, 0])))
        XCTAssertEqual(datagram(tlv(0x30, tlv(0x02, [1]) + tlv(0x04, bytes("public")) + pdu), 40000, 161), .snmp)
        XCTAssertEqual(datagram(tlv(0x30, tlv(0x02, [3]) + tlv(0x30, tlv(0x02, [1]) + tlv(0x02, [0x05, 0xdc]) + tlv(0x04, [4]) + tlv(0x02, [3]))), 40000, 161), .snmp)
    }

    /// An NFS reply (accepted, AUTH_NULL verifier) whose xid has the top bit of its third byte set reads,
    /// to a header-only DNS test, as a response with one answer.
    func testONCRPCRepliesAreNotDNS() {
        let reply = be32(0x5a3b_8001) + be32(1) + be32(0) + be32(0) + be32(0) + be32(0) + be32(0) + be32(1) + be32(0x1ed) + be32(2)
        XCTAssertEqual(datagram(reply, 2049, 801), .oncRPC)
        // Portmap GETPORT call for NFS v3 over UDP.
        let call = be32(0x1234_5678) + be32(0) + be32(2) + be32(100_000) + be32(2) + be32(3) + be32(0) + be32(0) + be32(0) + be32(0)
            + be32(100_003) + be32(3) + be32(17) + be32(0)
        XCTAssertEqual(datagram(call, 801, 111), .oncRPC)
        // Over TCP, behind its record mark.
        XCTAssertEqual(client(be32(0x8000_0000 | UInt32(call.count)) + call), .oncRPC)
        // RPC version 3 does not parse as RPC (nor as DNS); a DNS answer whose record
        // does not fit its datagram is not DNS either.
        XCTAssertNil(datagram(be32(1) + be32(0) + be32(3) + Array(call.dropFirst(12)), 801, 111))
        let truncatedAnswer: [UInt8] = [0x12, 0x34, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0x61, 0, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10]
        XCTAssertNil(datagram(truncatedAnswer, 5353, 5353))
        XCTAssertEqual(datagram(truncatedAnswer + [0, 0, 1], 5353, 5353), .mdns)
    }

    func testSTUNSSDPAndDNP3Datagrams() {
        let stun: [UInt8] = [0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42] + [UInt8](repeating: 7, count: 12)
        XCTAssertEqual(datagram(stun, 50000, 3478), .stun)
        XCTAssertNil(datagram(stun + [0, 0, 0, 0], 50000, 3478))  // the length field says 0
        XCTAssertEqual(datagram(bytes("M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\n\r\n"), 50000, 1900), .ssdp)
        // DNP3 link-layer Request Link Status (CRC checked with tshark's dissector: "correct").
        let dnp3: [UInt8] = [0x05, 0x64, 0x05, 0xc9, 0x01, 0x00, 0x00, 0x04, 0xa6, 0x57]
        XCTAssertEqual(datagram(dnp3, 40000, 20000), .dnp3)
        XCTAssertEqual(client(dnp3), .dnp3)
        var bad = dnp3; bad[9] ^= 1
        XCTAssertNil(client(bad))
    }

    // MARK: ISO transport on TCP 102 and RDP

    /// S7comm and MMS open with a TPKT + X.224 Connection Request, like RDP; their TSAP parameters tell
    /// them apart, and the first data TPDU names the application.
    func testISOTransportIsNotRDP() {
        let s7cr: [UInt8] = [0x03, 0x00, 0x00, 0x16, 0x11, 0xe0, 0x00, 0x00, 0x00, 0x01, 0x00, 0xc0, 0x01, 0x0a, 0xc1, 0x02, 0x01, 0x00, 0xc2, 0x02, 0x01, 0x02]
        XCTAssertEqual(client(s7cr), .cotp)
        let setup: [UInt8] = [0x03, 0x00, 0x00, 0x19, 0x02, 0xf0, 0x80, 0x32, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0xf0, 0x00, 0x00, 0x01, 0x00, 0x01, 0x01, 0xe0]
        XCTAssertEqual(setup.withUnsafeBytes { ContentClassifier.isoTransportApplication($0) }, .s7comm)
        let mmsCR: [UInt8] = [0x03, 0x00, 0x00, 0x16, 0x11, 0xe0, 0x00, 0x00, 0x00, 0x01, 0x00, 0xc1, 0x02, 0x00, 0x01, 0xc2, 0x02, 0x00, 0x01, 0xc0, 0x01, 0x0d]
        XCTAssertEqual(client(mmsCR), .cotp)
        let sessionConnect: [UInt8] = [0x03, 0x00, 0x00, 0x0e, 0x02, 0xf0, 0x80, 0x0d, 0x05, 0x06, 0x13, 0x01, 0x00, 0x16]
        XCTAssertEqual(sessionConnect.withUnsafeBytes { ContentClassifier.isoTransportApplication($0) }, .mms)
        // RDP: cookie and negotiation request; negotiation request alone; neither.
        let cookie = bytes("Cookie: mstshash=alice\r\n")
        let neg: [UInt8] = [0x01, 0x00, 0x08, 0x00, 0x03, 0x00, 0x00, 0x00]
        let body = [0x00, 0x00, 0x00, 0x00, 0x00] + cookie + neg
        let rdp: [UInt8] = [0x03, 0x00, 0x00, UInt8(6 + body.count), UInt8(1 + body.count), 0xe0] + body
        XCTAssertEqual(client(rdp), .rdp)
        XCTAssertEqual(client([3, 0, 0, 0x13, 0x0e, 0xe0, 0, 0, 0, 0, 0, 1, 0, 8, 0, 3, 0, 0, 0]), .rdp)
        XCTAssertEqual(client([3, 0, 0, 0x0b, 0x06, 0xe0, 0, 0, 0, 0, 0]), .rdp)
        // A TPKT whose X.224 length disagrees with it, or whose parameters are unknown codes, is nothing.
        XCTAssertNil(client([3, 0, 0, 0x16, 0x10, 0xe0] + Array(s7cr.dropFirst(6))))
        XCTAssertNil(client([0x03, 0x00, 0x00, 0x0f, 0x0a, 0xe0, 0x00, 0x00, 0x00, 0x01, 0x00, 0x99, 0x02, 0x01, 0x00]))
    }

    // MARK: Other TCP protocols

    func testClientFirstServices() {
        XCTAssertEqual(client(bytes("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") + [0, 0, 0, 4, 0, 0, 0, 0, 0]), .http)  // h2c prior knowledge
        XCTAssertEqual(client([0x00, 0x01, 0x00, 0x00, 0x00, 0x06, 0x01, 0x03, 0x00, 0x00, 0x00, 0x0a]), .modbus)
        XCTAssertNil(client([0x00, 0x01, 0x00, 0x00, 0x00, 0x09, 0x01, 0x03, 0x00, 0x00, 0x00, 0x0a]))  // length disagrees
        XCTAssertEqual(client([0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x5a, 0x00, 0x02]), .modbus)  // Schneider UMAS (function 90)
        let startup = bytes("user\u{0}postgres\u{0}database\u{0}app\u{0}\u{0}")
        XCTAssertEqual(client(be32(UInt32(8 + startup.count)) + be32(0x0003_0000) + startup), .postgresql)
        XCTAssertEqual(client([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]), .postgresql)  // SSLRequest
        XCTAssertEqual(client(bytes("*1\r\n$4\r\nPING\r\n")), .redis)
        XCTAssertEqual(client([0x10, 0x10, 0x00, 0x04] + bytes("MQTT") + [0x04, 0x02, 0x00, 0x3c, 0x00, 0x04] + bytes("abcd")), .mqtt)
        XCTAssertEqual(client([0xff, 0xfd, 0x18, 0xff, 0xfd, 0x20, 0xff, 0xfd, 0x23]), .telnet)
        XCTAssertNil(client([0xff, 0xfd, 0x18, 0x41, 0x42, 0x43]))  // one IAC triple, then something else
        // IRC: the four-parameter USER; FTP's and POP3's one-parameter USER is not IRC.
        XCTAssertEqual(client(bytes("USER guest 0 * :Real Name\r\n")), .irc)
        XCTAssertNil(client(bytes("USER anonymous\r\n")))
    }

    func testServerFirstServices() {
        var mysql: [UInt8] = [0, 0, 0, 0, 0x0a] + bytes("8.0.36\u{0}") + [1, 0, 0, 0] + bytes("abcdefgh") + [0, 0xff, 0xf7, 0x21, 0x02, 0, 0xff, 0xc1, 0x15]
        mysql[0] = UInt8(mysql.count - 4)
        XCTAssertEqual(greeting(mysql), .identified(.mysql))
        XCTAssertEqual(greeting(bytes("RFB 003.008\n")), .identified(.vnc))
        XCTAssertEqual(greeting(bytes("+OK Dovecot ready.\r\n")), .identified(.pop3))
        XCTAssertEqual(greeting(bytes("* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n")), .identified(.imap))
        XCTAssertEqual(greeting(bytes("+OK") + [0, 1, 2, 3]), .unrecognised)
        XCTAssertEqual(greeting(bytes(":irc.example.net 020 * :Please wait while we process your connection.\r\n")), .identified(.irc))
        XCTAssertEqual(greeting(bytes("PING :12345678\r\n")), .identified(.irc))
        XCTAssertEqual(greeting(bytes(":x 4 y")), .unrecognised)
    }
}
