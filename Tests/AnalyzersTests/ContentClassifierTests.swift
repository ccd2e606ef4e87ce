import XCTest
@testable import Analyzers
import PacketCore

final class ContentClassifierTests: XCTestCase {
    func client(_ bytes: [UInt8]) -> AppProtocol? { bytes.withUnsafeBytes { ContentClassifier.classifyClient($0) } }
    func client(_ text: String) -> AppProtocol? { client(Array(text.utf8)) }
    func greeting(_ text: String) -> ContentClassifier.Greeting { Array(text.utf8).withUnsafeBytes { ContentClassifier.classifyServerGreeting($0) } }

    func testClientFirstProtocols() {
        XCTAssertEqual(client(HelloBuilder.foxIOExample(grease: true)), .tls)
        XCTAssertEqual(client("GET / HTTP/1.1\r\n"), .http)
        XCTAssertEqual(client("POST /x HTTP/1.0\r\n"), .http)
        XCTAssertEqual(client("SSH-2.0-OpenSSH_9.2\r\n"), .ssh)
        XCTAssertEqual(client([0, 0, 0, 0x44, 0xfe, 0x53, 0x4d, 0x42, 0x40, 0]), .smb)
        XCTAssertEqual(client([0, 0, 0, 0x44, 0xff, 0x53, 0x4d, 0x42, 0x72, 0]), .smb)
        XCTAssertEqual(client([3, 0, 0, 0x13, 0x0e, 0xe0, 0, 0, 0, 0, 0, 1, 0, 8, 0, 3, 0, 0, 0]), .rdp)
        XCTAssertEqual(client([5, 0, 11, 3, 0x10, 0, 0, 0, 0x48, 0, 0, 0, 1, 0, 0, 0]), .dceRPC)
        // DNS over TCP: length, then a query for example.com A IN.
        let q: [UInt8] = [0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 7] + Array("example".utf8) + [3] + Array("com".utf8) + [0, 0, 1, 0, 1]
        XCTAssertEqual(client([0, UInt8(q.count)] + q), .dns)
        XCTAssertEqual(client("EHLO mail.example\r\n"), .smtp)
        XCTAssertEqual(client("NICK bot\r\nUSER bot 0 * :bot\r\n"), .irc)
        XCTAssertNil(client([0x4d, 0x5a, 0x90, 0, 3, 0, 0, 0]))  // a PE image is no protocol
        XCTAssertNil(client("GETX / HTTP/1.1"))
    }

    func testServerGreetings() {
        XCTAssertEqual(greeting("SSH-2.0-dropbear\r\n"), .identified(.ssh))
        XCTAssertEqual(greeting("220 ProFTPD Server ready.\r\n"), .identified(.ftp))
        XCTAssertEqual(greeting("220 mx.example ESMTP Postfix\r\n"), .identified(.smtp))
        XCTAssertEqual(greeting("220 welcome\r\n"), .ftpOrSMTP)
        XCTAssertEqual(Array("USER anonymous\r\n".utf8).withUnsafeBytes { ContentClassifier.resolveFTPOrSMTP(client: $0) }, .ftp)
        XCTAssertEqual(Array("HELO x\r\n".utf8).withUnsafeBytes { ContentClassifier.resolveFTPOrSMTP(client: $0) }, .smtp)
        XCTAssertEqual(greeting(":irc.example NOTICE * :*** Looking up your hostname\r\n"), .identified(.irc))
        XCTAssertEqual(greeting("\u{0}\u{1}binary"), .unrecognised)
    }

    func testDatagrams() {
        let q: [UInt8] = [0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3] + Array("www".utf8) + [0, 0, 1, 0, 1]
        q.withUnsafeBytes { b in
            XCTAssertEqual(ContentClassifier.classifyDatagram(b, sourcePort: 40000, destinationPort: 53), .dns)
            XCTAssertEqual(ContentClassifier.classifyDatagram(b, sourcePort: 5353, destinationPort: 5353), .mdns)
            // DNS content on 443 is still DNS: the port does not decide.
            XCTAssertEqual(ContentClassifier.classifyDatagram(b, sourcePort: 40000, destinationPort: 443), .dns)
        }
        let quic: [UInt8] = [0xc3, 0, 0, 0, 1, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0x44, 0xd0]
        quic.withUnsafeBytes { XCTAssertEqual(ContentClassifier.classifyDatagram($0, sourcePort: 5000, destinationPort: 443), .quic) }
        var ntp = [UInt8](repeating: 0, count: 48); ntp[0] = 0x23
        ntp.withUnsafeBytes { XCTAssertEqual(ContentClassifier.classifyDatagram($0, sourcePort: 123, destinationPort: 123), .ntp) }
        [UInt8](repeating: 0x41, count: 40).withUnsafeBytes { XCTAssertNil(ContentClassifier.classifyDatagram($0, sourcePort: 1, destinationPort: 2)) }
    }

    func testFTPDataChannelAnnouncements() {
        XCTAssertEqual(Array("227 Entering Passive Mode (192,168,1,2,19,137).".utf8).withUnsafeBytes { FTPDataChannels.commaPort($0) }, 19 * 256 + 137)
        XCTAssertEqual(Array("PORT 10,0,0,1,4,1".utf8).withUnsafeBytes { FTPDataChannels.commaPort($0) }, 1025)
        XCTAssertEqual(Array("229 Entering Extended Passive Mode (|||6446|)".utf8).withUnsafeBytes { FTPDataChannels.delimitedPort($0, field: 3) }, 6446)
        XCTAssertEqual(Array("EPRT |1|132.235.1.2|6275|".utf8).withUnsafeBytes { FTPDataChannels.delimitedPort($0, field: 3) }, 6275)
        XCTAssertNil(Array("227 nothing here".utf8).withUnsafeBytes { FTPDataChannels.commaPort($0) })
        XCTAssertNil(Array("227 (1,2,3,4,999,1)".utf8).withUnsafeBytes { FTPDataChannels.commaPort($0) })
    }
}
