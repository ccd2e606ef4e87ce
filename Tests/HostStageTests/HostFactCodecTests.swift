import Analyzers
import Detectors
@testable import HostStage
import PacketCore
import TestSupport
import XCTest

/// Property test of the one wire form of `HostFact`: random facts of every kind come back as they went
/// in, every truncation of a record is refused (never misread), and a record with bytes left over is too.
final class HostFactCodecTests: XCTestCase {
    var rng = SeededRandom(seed: 0x5EED)
    let buffer = UnsafeMutableRawPointer.allocate(byteCount: HostFactWriter.capacity, alignment: 16)
    let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: HostFactCodec.maxDNSName, alignment: 8)
    /// Backing for the DNS name of the fact under test (the fact only points at it).
    let dnsName = UnsafeMutableRawBufferPointer.allocate(byteCount: 256, alignment: 8)
    /// Its lower-cased form, as the DNS analyser hands it over.
    let dnsLower = UnsafeMutableRawBufferPointer.allocate(byteCount: 256, alignment: 8)

    override func tearDown() {
        buffer.deallocate()
        scratch.deallocate()
        dnsName.deallocate()
        dnsLower.deallocate()
    }

    func int<T: FixedWidthInteger>(_: T.Type = T.self) -> T { T.random(in: .min ... .max, using: &rng) }
    func time() -> Timestamp { Timestamp(nanoseconds: Int64.random(in: Timestamp.validRange, using: &rng)) }
    func ip() -> IPAddress {
        Bool.random(using: &rng) ? IPAddress(high: 0, low: 0xFFFF_0000_0000 | UInt64(int(UInt32.self)), isIPv6: false)
            : IPAddress(high: int(), low: int(), isIPv6: true)
    }
    /// Up to `max` UTF-8 bytes of mixed-width characters (never cut by the codec).
    func text(max: Int = HostFactWriter.maxString) -> String {
        let alphabet: [Character] = ["a", "Z", "0", "-", ".", "\\", "$", "é", "ß", "中", "😀", " "]
        var s = ""
        let n = Int.random(in: 0...40, using: &rng)
        for _ in 0..<n {
            let c = alphabet.randomElement(using: &rng)!
            if s.utf8.count + String(c).utf8.count > max { break }
            s.append(c)
        }
        return s
    }
    func optionalText() -> String? { Bool.random(using: &rng) ? text() : nil }

    func flow() -> FlowRecord {
        let table = FlowTable(configuration: { var c = FlowTableConfiguration(); c.capacity = 1024; return c }())
        var p = DecodedPacket()
        p.timestamp = time()
        p.ipVersion = 4
        p.ipProtocol = [IPProtocol.tcp, IPProtocol.udp].randomElement(using: &rng)!
        p.hasPorts = true
        p.source = IPAddress(high: 0, low: 0xFFFF_0000_0000 | UInt64(int(UInt32.self)), isIPv6: false)
        p.destination = IPAddress(high: 0, low: 0xFFFF_0000_0000 | UInt64(int(UInt32.self)), isIPv6: false)
        p.sourcePort = int()
        p.destinationPort = int()
        p.tcpFlags = TCPFlags(rawValue: int())
        p.payloadLength = Int.random(in: 0...1400, using: &rng)
        p.wireLength = 54 + p.payloadLength
        p.capturedLength = p.wireLength
        let slot = table.update(p) { _, _, _ in }.slot
        var r = table[slot]
        r.packetsA = int(); r.packetsB = int(); r.bytesA = int(); r.bytesB = int()
        r.payloadBytesA = int(); r.payloadBytesB = int()
        r.appProtocol = int(); r.vlan = int(); r.generation = int()
        r.lastSeen = time()
        return r
    }

    func labels() -> FlowLabels {
        var l = FlowLabels()
        l.hasTLS = Bool.random(using: &rng)
        l.hasHTTP = Bool.random(using: &rng)
        l.identifiedUnknown = Bool.random(using: &rng)
        l.hasClientHello = Bool.random(using: &rng)
        l.serverName = optionalText()
        if l.hasClientHello && l.serverName == nil {
            l.alpn = (0..<Int.random(in: 0...HostFactWriter.maxALPN, using: &rng)).map { _ in text(max: 64) }
            l.ja3 = optionalText()
            l.ja4 = optionalText()
        }
        l.httpHost = optionalText()
        return l
    }

    func remoteAccess() -> RemoteAccessFact {
        switch Int.random(in: 0...11, using: &rng) {
        case 0: return .treeConnect(path: text())
        case 1: return .open(share: text(), name: text(), isPipe: Bool.random(using: &rng), writeAccess: Bool.random(using: &rng))
        case 2: return .write(share: text(), name: text())
        case 3:
            return .authentication(AuthenticationAttempt(method: Bool.random(using: &rng) ? .ntlm : .kerberos, user: text(), domain: text(),
                                                         workstation: text(), success: [nil, true, false].randomElement(using: &rng)!,
                                                         status: int()))
        case 4: return .rpcBind(RPCInterface(uuid: text()))
        case 5: return .rpcCall(interface: Bool.random(using: &rng) ? RPCInterface(uuid: text()) : nil, opnum: int(), pipe: optionalText())
        case 6: return .dcomActivation(className: optionalText())
        case 7: return .wmiProcessCreate
        case 8: return .encryptedSMB
        case 10: return .exploit(ExploitSignature.allCases.randomElement(using: &rng)!)
        case 11: return .rpcCallInferred(interface: RPCInterface(uuid: text()), opnum: int())
        default: return .kerberosServer
        }
    }

    func dns() -> DNSMessageFacts {
        let bytes = Array(text(max: 255).utf8)
        dnsName.copyBytes(from: bytes)
        dnsLower.copyBytes(from: bytes.map { $0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0 })
        let stored = UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(dnsName)[..<bytes.count])
        let lower = UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(dnsLower)[..<bytes.count])
        return DNSMessageFacts(
            at: time(), client: ip(), server: ip(), clientPort: int(), serverPort: int(), ipProtocol: int(),
            appProtocol: [AppProtocol.dns, .mdns, .llmnr].randomElement(using: &rng)!, isResponse: Bool.random(using: &rng), id: int(),
            queryType: int(), responseCode: int(), name: stored, lowercaseName: lower,
            registeredDomainStart: Int.random(in: -1...bytes.count, using: &rng), publicSuffixStart: Int.random(in: -1...bytes.count, using: &rng),
            messageLength: Int.random(in: 0...65535, using: &rng), answerCount: Int.random(in: 0...100, using: &rng),
            answerDataBytes: Int.random(in: 0...65535, using: &rng),
            answerPayload: DNSAnswerPayload(bytes: Int.random(in: 0...65535, using: &rng), entropy: Float.random(in: 0...8, using: &rng),
                                            hash: UInt64.random(in: 0...UInt64.max, using: &rng)))
    }

    func fact(_ kind: HostFactKind) -> HostFact {
        switch kind {
        case .clockStarted: return .clockStarted(time())
        case .flowEnded: return .flowEnded(flow(), [FlowEndReason.idleTimeout, .activeTimeout, .tcpClosed, .evicted, .reused, .endOfInput].randomElement(using: &rng)!, labels())
        case .tcpFlowStarted: return .tcpFlowStarted(source: ip(), destination: ip(), port: int(), at: time())
        case .tcpAccepted: return .tcpAccepted(server: ip(), client: ip(), port: int(), at: time())
        case .remoteAccess: return .remoteAccess(remoteAccess(), SessionEndpoints(client: ip(), server: ip(), serverPort: int()), at: time())
        case .dnsMessage: return .dnsMessage(dns())
        case .flowElsewhere: return .flowElsewhere(flow())
        case .tick: return .tick(time())
        case .ftpDataAnnounced: return .ftpDataAnnounced(FTPDataChannels.Expected(host: ip(), port: int(), until: time()), at: time())
        case .httpRequest:
            return .httpRequest(HTTPRequestFact(client: ip(), server: ip(), serverPort: int(), time: time(), host: optionalText(),
                                                bytes: Int.random(in: 0...Int.max, using: &rng)))
        case .udpRequest:
            return .udpRequest(UDPRequestFact(client: ip(), clientPort: int(), server: ip(), serverPort: int(), flowStart: time(), time: time(),
                                              bytes: Int.random(in: 0...Int(UInt32.max), using: &rng), serverName: optionalText()))
        }
    }

    func same(_ a: FlowRecord, _ b: FlowRecord) -> Bool {
        withUnsafeBytes(of: a) { x in withUnsafeBytes(of: b) { y in x.elementsEqual(y) } }
    }

    func same(_ a: DNSMessageFacts, _ b: DNSMessageFacts) -> Bool {
        a.timestamp == b.timestamp && a.client == b.client && a.server == b.server && a.clientPort == b.clientPort
            && a.serverPort == b.serverPort && a.ipProtocol == b.ipProtocol && a.appProtocol == b.appProtocol
            && a.isResponse == b.isResponse && a.id == b.id && a.queryType == b.queryType && a.responseCode == b.responseCode
            && a.name.elementsEqual(b.name) && a.lowercaseName.elementsEqual(b.lowercaseName)
            && a.registeredDomainStart == b.registeredDomainStart && a.publicSuffixStart == b.publicSuffixStart
            && a.messageLength == b.messageLength && a.answerCount == b.answerCount && a.answerDataBytes == b.answerDataBytes
            && a.answerPayload == b.answerPayload
    }

    func same(_ a: HostFact, _ b: HostFact) -> Bool {
        switch (a, b) {
        case (.clockStarted(let x), .clockStarted(let y)), (.tick(let x), .tick(let y)): return x == y
        case (.flowEnded(let f, let r, let l), .flowEnded(let g, let s, let m)): return same(f, g) && r == s && l == m
        case (.tcpFlowStarted(let a1, let b1, let p1, let t1), .tcpFlowStarted(let a2, let b2, let p2, let t2)),
             (.tcpAccepted(let a1, let b1, let p1, let t1), .tcpAccepted(let a2, let b2, let p2, let t2)):
            return a1 == a2 && b1 == b2 && p1 == p2 && t1 == t2
        case (.remoteAccess(let f, let e, let t), .remoteAccess(let g, let d, let u)): return f == g && e == d && t == u
        case (.dnsMessage(let x), .dnsMessage(let y)): return same(x, y)
        case (.flowElsewhere(let f), .flowElsewhere(let g)): return same(f, g)
        case (.ftpDataAnnounced(let c, let t), .ftpDataAnnounced(let d, let u)): return c == d && t == u
        case (.httpRequest(let x), .httpRequest(let y)): return x == y
        case (.udpRequest(let x), .udpRequest(let y)): return x == y
        default: return false
        }
    }

    func testRandomFactsOfEveryKindRoundTrip() {
        var checked: [HostFactKind: Int] = [:]
        for i in 0..<4000 {
            let kind = HostFactKind.allCases[i % HostFactKind.allCases.count]
            let f = fact(kind)
            let stamp: Int64 = int()
            var w = HostFactWriter(base: buffer)
            HostFactCodec.encode(f, stamp: stamp, into: &w)
            XCTAssertLessThanOrEqual(w.count, HostFactWriter.capacity)
            guard let (s, back) = HostFactCodec.decode(w.bytes, scratch: scratch) else {
                XCTFail("\(kind) did not decode: \(f)")
                continue
            }
            XCTAssertEqual(s, stamp)
            XCTAssertEqual(back.kind, kind)
            XCTAssertTrue(same(f, back), "\(kind): \(f) came back as \(back)")
            // Every proper prefix is refused, and so is the record with a byte more.
            let cut = Int.random(in: 0..<w.count, using: &rng)
            XCTAssertNil(HostFactCodec.decode(UnsafeRawBufferPointer(rebasing: w.bytes[..<cut]), scratch: scratch), "\(kind) cut at \(cut)")
            w.u8(0)
            XCTAssertNil(HostFactCodec.decode(w.bytes, scratch: scratch), "\(kind) with a trailing byte")
            checked[kind, default: 0] += 1
        }
        XCTAssertEqual(Set(checked.keys), Set(HostFactKind.allCases))
    }

    /// `carriesWhole` says exactly which facts come back unchanged (an inline stage gets those as they
    /// are, the others through their record): random facts, half of them with one field past what a
    /// record carries.
    func testCarriesWholeIsExactlyTheRoundTrip() {
        var whole = 0, changed = 0
        for i in 0..<4000 {
            let kind = HostFactKind.allCases[i % HostFactKind.allCases.count]
            let f = Bool.random(using: &rng) ? stretched(fact(kind)) : fact(kind)
            var w = HostFactWriter(base: buffer)
            HostFactCodec.encode(f, stamp: 0, into: &w)
            let unchanged = HostFactCodec.decode(w.bytes, scratch: scratch).map { same(f, $0.fact) } ?? false
            XCTAssertEqual(HostFactCodec.carriesWhole(f), unchanged, "\(kind): \(f)")
            if unchanged { whole += 1 } else { changed += 1 }
        }
        XCTAssertGreaterThan(whole, 2000)
        XCTAssertGreaterThan(changed, 500)
    }

    /// A string longer than a record carries (cut at a character boundary).
    func long() -> String { String(repeating: Bool.random(using: &rng) ? "a" : "é", count: 257 + Int.random(in: 0...300, using: &rng)) }

    /// `f` with one field past what its record carries, where its kind has such a field.
    func stretched(_ f: HostFact) -> HostFact {
        let pick = Int.random(in: 0...5, using: &rng)
        switch f {
        case .flowEnded(let flow, let reason, var l):
            switch pick {
            case 0: l.serverName = long()
            case 1: l.httpHost = long()
            case 2: l.hasClientHello = true; l.serverName = nil; l.alpn = (0...HostFactWriter.maxALPN).map { _ in "h2" }
            case 3: l.hasClientHello = true; l.serverName = nil; l.alpn = [String(repeating: "x", count: 65)]
            case 4: l.serverName = text() + "s"; l.alpn = ["h2"]
            default: l.hasClientHello = true; l.serverName = nil; l.ja4 = long()
            }
            return .flowEnded(flow, reason, l)
        case .remoteAccess(let r, let ep, let t):
            let stretchedFact: RemoteAccessFact
            switch pick {
            case 0: stretchedFact = .treeConnect(path: long())
            case 1: stretchedFact = .open(share: text(), name: long(), isPipe: true, writeAccess: false)
            case 2: stretchedFact = .authentication(AuthenticationAttempt(method: .ntlm, user: text(), domain: long(), success: false, status: 1))
            case 3: var i = RPCInterface(uuid: text()); i.name = "renamed"; stretchedFact = .rpcBind(i)
            case 4: stretchedFact = .rpcCall(interface: nil, opnum: 1, pipe: long())
            default: stretchedFact = r == .kerberosServer ? .dcomActivation(className: long()) : .write(share: long(), name: text())
            }
            return .remoteAccess(stretchedFact, ep, at: t)
        case .dnsMessage(var d):
            switch pick {
            case 0: d.registeredDomainStart = d.name.count + 1
            case 1: d.answerPayload.entropy = [Float.nan, 8.5, -1].randomElement(using: &rng)!
            case 2: d.messageLength = -1
            case 3: d.answerPayload.bytes = Int(Int32.max) + 1
            case 4: d.answerCount = Int(UInt32.max) + 1
            default:
                // A lower-cased name that is not the name's.
                dnsLower.storeBytes(of: 0x21, toByteOffset: 0, as: UInt8.self)
                d.name = UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(dnsName)[..<max(d.name.count, 1)])
                d.lowercaseName = UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(dnsLower)[..<max(d.name.count, 1)])
                dnsName.storeBytes(of: 0x41, toByteOffset: 0, as: UInt8.self)
            }
            return .dnsMessage(d)
        case .httpRequest(var q):
            if pick < 3 { q.host = long() } else { q.bytes = -1 - Int.random(in: 0...1000, using: &rng) }
            return .httpRequest(q)
        case .udpRequest(var q):
            switch pick {
            case 0, 1: q.serverName = long()
            case 2, 3: q.bytes = Int(UInt32.max) + 1
            default: q.bytes = -1
            }
            return .udpRequest(q)
        case .clockStarted, .tick, .tcpFlowStarted, .tcpAccepted, .flowElsewhere, .ftpDataAnnounced:
            return f
        }
    }

    func testAnUnknownKindIsRefused() {
        var w = HostFactWriter(base: buffer)
        HostFactCodec.encode(.tick(Timestamp(nanoseconds: 1)), stamp: 1, into: &w)
        buffer.storeBytes(of: UInt8(0xEE), toByteOffset: 8, as: UInt8.self)
        XCTAssertNil(HostFactCodec.decode(w.bytes, scratch: scratch))
    }
}
