import XCTest
@testable import Analyzers
import Events
import PacketCore

final class SMBAnalyzerTests: XCTestCase {
    /// Request/response exchanges of an admin-share upload.
    func exchanges() -> [([UInt8], [UInt8])] {
        [
            (Build.netbios(Build.sessionSetup(Array("junk".utf8) + Build.ntlmAuthenticate(user: "alice", domain: "CORP", workstation: "WS01"), message: 2)),
             Build.netbios(Build.sessionSetupResponse(status: 0, message: 2))),
            (Build.netbios(Build.treeConnect("\\\\srv\\ADMIN$", message: 3)), Build.netbios(Build.treeConnectResponse(tree: 7, message: 3))),
            (Build.netbios(Build.create("evil.exe", tree: 7, message: 4, access: 0x4000_0000, disposition: 5)),
             Build.netbios(Build.createResponse(file: 42, tree: 7, message: 4))),
            (Build.netbios(Build.write(file: 42, tree: 7, message: 5, data: [UInt8](repeating: 0x4D, count: 3000))), []),
        ]
    }

    /// Feeds each exchange cut into `chunk`-byte segments (messages spanning segments, and with the
    /// request and response of one exchange sharing nothing but order).
    func run(chunk: Int) -> (FactRecorder, SMBAnalyzer, StreamHarness) {
        let smb = SMBAnalyzer(), rec = FactRecorder(), h = StreamHarness()
        smb.observer = rec
        let ex = exchanges()
        XCTAssertTrue(h.start(smb, first: Array(ex[0].0.prefix(8))))
        for (req, resp) in ex {
            for (bytes, client) in [(req, true), (resp, false)] {
                var i = 0
                while i < bytes.count { h.feed(smb, Array(bytes[i..<min(bytes.count, i + chunk)]), fromClient: client); i += chunk }
            }
        }
        return (rec, smb, h)
    }

    func testSeveralMessagesInOneSegment() {
        let smb = SMBAnalyzer(), rec = FactRecorder(), h = StreamHarness()
        smb.observer = rec
        let two = Build.netbios(Build.treeConnect("\\\\a\\x", message: 1)) + Build.netbios(Build.treeConnect("\\\\a\\y", message: 2))
        XCTAssertTrue(h.start(smb, first: two))
        h.feed(smb, two + Array(two.prefix(5)))
        h.feed(smb, Array(two.dropFirst(5)))
        XCTAssertEqual(rec.list.count, 4)
    }

    func testSessionTreeCreateWriteAcrossSegmentBoundaries() {
        for chunk in [1, 3, 7, 64, 100_000] {
            let (rec, _, _) = run(chunk: chunk)
            let facts = rec.list
            XCTAssertTrue(facts.contains(.treeConnect(path: "\\\\srv\\ADMIN$")), "chunk \(chunk): \(facts)")
            XCTAssertTrue(facts.contains(.authentication(AuthenticationAttempt(method: .ntlm, user: "alice", domain: "CORP", workstation: "WS01", success: true, status: 0))), "chunk \(chunk)")
            XCTAssertTrue(facts.contains(.open(share: "ADMIN$", name: "evil.exe", isPipe: false, writeAccess: true)), "chunk \(chunk): \(facts)")
            XCTAssertTrue(facts.contains(.write(share: "ADMIN$", name: "evil.exe")), "chunk \(chunk): \(facts)")
            XCTAssertEqual(rec.facts.first?.1.client, IPAddress("10.0.0.1"))
        }
    }

    func testLogonFailureStatus() {
        let smb = SMBAnalyzer(), rec = FactRecorder(), h = StreamHarness()
        smb.observer = rec
        let req = Build.netbios(Build.sessionSetup(Build.ntlmAuthenticate(user: "bob", domain: "CORP", workstation: "X"), message: 9))
        XCTAssertTrue(h.start(smb, first: req))
        h.feed(smb, req)
        h.feed(smb, Build.netbios(Build.sessionSetupResponse(status: 0xC000_006D, message: 9)), fromClient: false)
        XCTAssertEqual(rec.list, [.authentication(AuthenticationAttempt(method: .ntlm, user: "bob", domain: "CORP", workstation: "X", success: false, status: 0xC000_006D))])
    }

    func testCompoundedRequestsAndPipeRPC() {
        let smb = SMBAnalyzer(), rec = FactRecorder(), h = StreamHarness()
        smb.observer = rec
        let tree = Build.netbios(Build.treeConnect("\\\\srv\\IPC$", message: 1))
        XCTAssertTrue(h.start(smb, first: tree))
        h.feed(smb, tree)
        h.feed(smb, Build.netbios(Build.treeConnectResponse(tree: 3, message: 1)), fromClient: false)
        // CREATE + WRITE(bind) compounded in one message, as Windows clients send them.
        let svcctl = "367abb81-9844-35f1-ad32-98f038001003"
        h.feed(smb, Build.netbios(Build.compound([Build.create("svcctl", tree: 3, message: 2),
                                                  Build.write(file: 0xFFFF_FFFF_FFFF_FFFF, tree: 3, message: 3, data: Build.rpcBind(svcctl))])))
        h.feed(smb, Build.netbios(Build.createResponse(file: 5, tree: 3, message: 2)), fromClient: false)
        h.feed(smb, Build.netbios(Build.ioctlTransceive(file: 5, tree: 3, message: 4, data: Build.rpcBind(svcctl))))
        h.feed(smb, Build.netbios(Build.ioctlTransceive(file: 5, tree: 3, message: 5, data: Build.rpcRequest(context: 0, opnum: 12))))
        let facts = rec.list
        XCTAssertTrue(facts.contains(.open(share: "IPC$", name: "svcctl", isPipe: true, writeAccess: false)), "\(facts)")
        XCTAssertTrue(facts.contains(.rpcBind(RPCInterface(uuid: svcctl))))
        XCTAssertTrue(facts.contains(.rpcCall(interface: RPCInterface(uuid: svcctl), opnum: 12, pipe: "svcctl")), "\(facts)")
        XCTAssertEqual(RPCInterface(uuid: svcctl).operationName(12), "svcctl.RCreateServiceW")
        XCTAssertEqual(RPCInterface(uuid: svcctl).effect(of: 12), .serviceCreateOrStart)
    }

    func testEncryptedSMB3AndSMB1TreeConnect() {
        let smb = SMBAnalyzer(), rec = FactRecorder(), h = StreamHarness()
        smb.observer = rec
        let transform = Build.netbios([0xFD, 0x53, 0x4D, 0x42] + [UInt8](repeating: 0x11, count: 60))
        XCTAssertTrue(h.start(smb, first: transform))
        h.feed(smb, transform)
        h.feed(smb, Build.netbios(Build.smb1TreeConnect("\\\\HOST\\C$", mid: 4)))
        XCTAssertEqual(rec.list, [.encryptedSMB, .treeConnect(path: "\\\\HOST\\C$")])
        XCTAssertEqual(smb.counters.encryptedMessages, 1)
    }

    func testBoundedBufferingOfLargeMessages() {
        let smb = SMBAnalyzer(messageCap: 1024), h = StreamHarness()
        let big = Build.netbios(Build.write(file: 1, tree: 1, message: 1, data: [UInt8](repeating: 0, count: 100_000)))
        XCTAssertTrue(h.start(smb, first: big))
        var i = 0
        while i < big.count { h.feed(smb, Array(big[i..<min(big.count, i + 1460)])); i += 1460 }
        XCTAssertLessThanOrEqual(smb.counters.bufferedBytes, 1024)
        // The stream stays in sync after the skipped remainder.
        let rec = FactRecorder()
        smb.observer = rec
        h.feed(smb, Build.netbios(Build.treeConnect("\\\\a\\b", message: 2)))
        XCTAssertEqual(rec.list, [.treeConnect(path: "\\\\a\\b")])
    }

    func testNonSMBDesyncIsCountedNotFollowed() {
        let smb = SMBAnalyzer(), h = StreamHarness()
        XCTAssertTrue(h.start(smb, first: Array("GET / HTTP/1.1\r\n".utf8)))
        XCTAssertEqual(h.feed(smb, Array("GET / HTTP/1.1\r\n".utf8)), .doneWithDirection)
        XCTAssertEqual(smb.counters.desyncs, 1)
    }

    func testAdminShareNames() {
        XCTAssertEqual(SMBAnalyzer.shareName("\\\\admin-pc\\c$"), "C$")
        XCTAssertTrue(SMBAnalyzer.isAdminShare("C$"))
        XCTAssertTrue(SMBAnalyzer.isAdminShare("ADMIN$"))
        XCTAssertFalse(SMBAnalyzer.isAdminShare("IPC$"))
        XCTAssertFalse(SMBAnalyzer.isAdminShare("public"))
        XCTAssertTrue(SMBAnalyzer.isRemoteExecutionPipe("PSEXESVC-HOST-1234-stdin"))
        XCTAssertFalse(SMBAnalyzer.isRemoteExecutionPipe("srvsvc"))
    }
}

final class NTLMAndDCERPCTests: XCTestCase {
    func testNTLMSSPAuthenticate() {
        let m = Build.ntlmAuthenticate(user: "Administrator", domain: "LAB", workstation: "KALI")
        let a = m.withUnsafeBytes { NTLMSSP.authenticate(in: $0) }
        XCTAssertEqual(a, NTLMSSP.Authenticate(user: "Administrator", domain: "LAB", workstation: "KALI", anonymous: false))
        // A type-1 message names nobody.
        let neg = Array("NTLMSSP".utf8) + [0] + Build.le32(1) + [UInt8](repeating: 0, count: 24)
        XCTAssertNil(neg.withUnsafeBytes { NTLMSSP.authenticate(in: $0) })
    }

    func testDCERPCBindRequestAndEndpointMapperPorts() {
        var assoc = DCERPCAssociation()
        var events: [String] = []
        let bind = Build.rpcBind("e3514235-4b06-11d1-ab04-00c04fc2dcd2", context: 1)
        bind.withUnsafeBytes { assoc.clientPDU($0) { e in if case .bind(let i) = e { events.append(i.name ?? "?") } } }
        Build.rpcRequest(context: 1, opnum: 3).withUnsafeBytes { assoc.clientPDU($0) { e in if case .call(let i, let op) = e { events.append(i!.operationName(op)) } } }
        XCTAssertEqual(events, ["drsuapi", "drsuapi.IDL_DRSGetNCChanges"])
        // An ept_map response stub with one TCP tower floor for port 49668.
        let stub: [UInt8] = [0, 0, 0, 0, 1, 0, 7, 2, 0, 0xC2, 0x04, 1, 0, 9, 4, 0, 10, 0, 0, 1]
        XCTAssertEqual(stub.withUnsafeBytes { DCERPC.endpointMapperPorts($0) }, [49668])
    }

    func testDCERPCOverTCPLearnsPortsAndAuthUser() {
        let rpc = DCERPCAnalyzer(), rec = FactRecorder(), h = StreamHarness(serverPort: 135)
        rpc.observer = rec
        let bind = Build.rpcBind("e1af8308-5d1f-11c9-91a4-08002b14a0fa")
        XCTAssertTrue(h.start(rpc, first: bind))
        h.feed(rpc, bind)
        h.feed(rpc, Build.rpcRequest(context: 0, opnum: 3, call: 7))
        let stub: [UInt8] = [UInt8](repeating: 0, count: 20) + [1, 0, 7, 2, 0, 0xC2, 0x05]
        let resp = Build.rpcHeader(type: 2, length: 24 + stub.count, call: 7) + Build.le32(stub.count) + Build.le16(0) + [0, 0] + stub
        h.feed(rpc, resp, fromClient: false)
        XCTAssertTrue(rpc.isLearned(server: IPAddress("10.0.0.2")!, port: 0xC205))
        // A bind carrying NTLMSSP AUTHENTICATE names the account.
        let auth = Build.rpcBind("367abb81-9844-35f1-ad32-98f038001003", context: 1, type: 14,
                                 auth: Build.ntlmAuthenticate(user: "Backdoor", domain: "D", workstation: "W"))
        h.feed(rpc, auth)
        XCTAssertTrue(rec.list.contains(.authentication(AuthenticationAttempt(method: .ntlm, user: "Backdoor", domain: "D", workstation: "W", success: nil, status: 0))), "\(rec.list)")
    }

    func testKerberosASRequestAndError() {
        // AS-REQ for "bob"@LAB.LOCAL, built as DER by hand.
        func tlv(_ tag: UInt8, _ content: [UInt8]) -> [UInt8] { [tag, UInt8(content.count)] + content }
        let name = tlv(0x30, tlv(0xA0, tlv(0x02, [1])) + tlv(0xA1, tlv(0x30, tlv(0x1B, Array("bob".utf8)))))
        let body = tlv(0x30, tlv(0xA0, tlv(0x03, [0, 0x40, 0, 0, 0x10])) + tlv(0xA1, name) + tlv(0xA2, tlv(0x1B, Array("LAB.LOCAL".utf8))))
        let req = tlv(0x6A, tlv(0x30, tlv(0xA1, tlv(0x02, [5])) + tlv(0xA2, tlv(0x02, [10])) + tlv(0xA4, body)))
        XCTAssertEqual(req.withUnsafeBytes { Kerberos.parse($0) }, .asRequest(user: "bob", realm: "LAB.LOCAL"))
        let err = tlv(0x7E, tlv(0x30, tlv(0xA0, tlv(0x02, [5])) + tlv(0xA1, tlv(0x02, [30])) + tlv(0xA6, tlv(0x02, [24]))))
        XCTAssertEqual(err.withUnsafeBytes { Kerberos.parse($0) }, .error(code: 24, user: nil, realm: nil))
    }
}
