import Crypto
import XCTest
import _CryptoExtras
@testable import Analyzers
import Events
import PacketCore
import TestSupport

/// Builds protected client Initial packets the way a QUIC client does (RFC 9001 §5.3–5.4), with
/// swift-crypto directly, so tests can produce hellos split over packets, coalesced datagrams, and
/// hostile plaintext behind valid protection. Checked against RFC 9001 A.2 below.
enum InitialBuilder {
    static func varint2(_ v: Int) -> [UInt8] { [UInt8(0x40 | (v >> 8)), UInt8(v & 0xff)] }

    /// The unprotected long header of an Initial packet with a 4-byte packet number.
    static func header(_ v: QUICVersion, dcid: [UInt8], scid: [UInt8] = [], token: [UInt8] = [], pn: UInt32, payloadLength: Int) -> [UInt8] {
        let first: UInt8 = 0xc0 | (v.initialTypeBits << 4) | 0x03
        var h: [UInt8] = [first]
        h += withUnsafeBytes(of: v.rawValue.bigEndian) { Array($0) }
        h += [UInt8(dcid.count)] + dcid + [UInt8(scid.count)] + scid
        h += [UInt8(token.count)] + token  // tokens under 64 bytes: a 1-byte varint
        h += varint2(4 + payloadLength + 16)
        h += withUnsafeBytes(of: pn.bigEndian) { Array($0) }
        return h
    }

    /// Encrypts `payload` under `header` (packet number in its last 4 bytes) and applies header protection.
    static func protect(header: [UInt8], payload: [UInt8], pn: UInt64, keys: QUICInitialKeys) throws -> [UInt8] {
        var nonce = keys.iv
        for i in 0..<8 { nonce[4 + i] ^= UInt8(truncatingIfNeeded: pn >> (8 * UInt64(7 - i))) }
        let box = try AES.GCM.seal(payload, using: SymmetricKey(data: keys.key), nonce: AES.GCM.Nonce(data: nonce), authenticating: header)
        var packet = header + Array(box.ciphertext) + Array(box.tag)
        let pnOffset = header.count - 4
        var sample = Array(packet[(pnOffset + 4)..<(pnOffset + 20)])
        try AES.permute(&sample, key: SymmetricKey(data: keys.headerProtection))
        packet[0] ^= sample[0] & 0x0f
        for i in 0..<4 { packet[pnOffset + i] ^= sample[1 + i] }
        return packet
    }

    /// One protected client Initial carrying `frames`, padded to `padTo` bytes of payload.
    static func initial(_ v: QUICVersion, dcid: [UInt8], pn: UInt32, frames: [UInt8], padTo: Int = 1162) throws -> [UInt8] {
        let payload = frames + [UInt8](repeating: 0, count: max(0, padTo - frames.count))
        let keys = dcid.withUnsafeBytes { QUICInitialKeys(version: v, destinationCID: $0) }
        return try protect(header: header(v, dcid: dcid, pn: pn, payloadLength: payload.count), payload: payload, pn: UInt64(pn), keys: keys)
    }

    static func crypto(offset: Int, _ data: some Collection<UInt8>) -> [UInt8] {
        [0x06] + varint2(offset) + varint2(data.count) + Array(data)
    }

    /// A TLS 1.3 ClientHello handshake message (type and length included) with SNI, ALPN and a
    /// padding extension of `padding` bytes (large hellos span Initial packets, as post-quantum ones do).
    static func clientHello(sni: String?, alpn: [String], padding: Int = 0) -> [UInt8] {
        func u16(_ v: Int) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xff)] }
        var ext: [UInt8] = []
        if let sni {
            let n = Array(sni.utf8)
            ext += u16(0) + u16(n.count + 5) + u16(n.count + 3) + [0] + u16(n.count) + n
        }
        let names = alpn.flatMap { [UInt8($0.utf8.count)] + Array($0.utf8) }
        ext += u16(16) + u16(names.count + 2) + u16(names.count) + names
        ext += u16(43) + u16(3) + [2, 0x03, 0x04]
        ext += u16(10) + u16(4) + u16(2) + u16(0x001d)
        ext += u16(13) + u16(4) + u16(2) + u16(0x0403)
        ext += u16(57) + u16(2) + [0x01, 0x00]
        if padding > 0 { ext += u16(21) + u16(padding) + [UInt8](repeating: 0, count: padding) }
        var body: [UInt8] = [0x03, 0x03] + [UInt8](repeating: 0x11, count: 32) + [0]
        body += u16(6) + u16(0x1301) + u16(0x1302) + u16(0x1303) + [1, 0]
        body += u16(ext.count) + ext
        return [1, UInt8(body.count >> 16), UInt8((body.count >> 8) & 0xff), UInt8(body.count & 0xff)] + body
    }
}

/// Drives protocol identification, the QUIC analyser and the TLS facts store with UDP datagrams.
final class QUICDriver {
    let table = FlowTable(configuration: { var c = FlowTableConfiguration(); c.capacity = 4096; return c }())
    let identifier = ProtocolIdentifier(flowCapacity: 4096)
    let tls = TLSAnalyzer(flowCapacity: 4096)
    lazy var quic = QUICAnalyzer(flowCapacity: 4096, tls: tls)
    var time: Int64 = 1_700_000_000_000_000_000
    var frame = [UInt8](repeating: 0, count: 42)

    @discardableResult
    func send(_ datagram: [UInt8], clientPort: UInt16 = 50000, fromServer: Bool = false) -> (slot: Int32, generation: UInt32) {
        time += 1_000_000
        frame.removeSubrange(42...)
        frame.append(contentsOf: datagram)
        var p = DecodedPacket()
        p.timestamp = Timestamp(nanoseconds: time)
        p.ipVersion = 4
        p.ipProtocol = IPProtocol.udp
        let c = IPAddress("192.168.1.10")!, s = IPAddress("198.51.100.7")!
        p.source = fromServer ? s : c
        p.destination = fromServer ? c : s
        p.sourcePort = fromServer ? 443 : clientPort
        p.destinationPort = fromServer ? clientPort : 443
        p.hasPorts = true
        p.payloadOffset = 42
        p.payloadLength = datagram.count
        p.wireLength = frame.count
        p.capturedLength = frame.count
        let u = table.update(p) { _, _, _ in }
        frame.withUnsafeBytes { f in
            let ctx = PacketContext(packet: p, frame: f, linkType: .ethernet, slot: u.slot, fromOriginator: u.fromOriginator, isNewFlow: u.isNew)
            identifier.packet(ctx, flows: table)
            quic.packet(ctx, flows: table)
        }
        return (u.slot, table[u.slot].generation)
    }

    func hello(_ flow: (slot: Int32, generation: UInt32)) -> TLSFacts? { tls.facts(slot: flow.slot, generation: flow.generation) }
}

final class QUICAnalyzerTests: XCTestCase {
    let dcid: [UInt8] = [0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04]

    /// The builder reproduces RFC 9001 A.2's protected packet byte for byte (so packets it builds are real).
    func testBuilderReproducesRFC9001Packet() throws {
        let keys = QUICInitialTests.dcid.withUnsafeBytes { QUICInitialKeys(version: .v1, destinationCID: $0) }
        let header = QUICInitialTests.bytes("c300000001088394c8f03e5157080000449e00000002")
        XCTAssertEqual(try InitialBuilder.protect(header: header, payload: QUICInitialTests.clientPayload, pn: 2, keys: keys),
                       QUICInitialTests.v1ClientInitial)
    }

    /// A hello larger than one packet, its two halves in two Initials, second half first, CRYPTO
    /// frames shuffled around PING and PADDING (as Chrome sends them): the facts equal the hello's.
    func testHelloSplitOverTwoInitialsOutOfOrder() throws {
        for v in [QUICVersion.v1, .v2] {
            let d = QUICDriver()
            let hello = InitialBuilder.clientHello(sni: "split.example", alpn: ["h3"], padding: 1400)
            XCTAssertGreaterThan(hello.count, 1500)
            let cut = 700
            let second = [0x01, 0x00, 0x00] + InitialBuilder.crypto(offset: cut + 300, hello[(cut + 300)...])
                + [0x01] + InitialBuilder.crypto(offset: cut, hello[cut..<(cut + 300)])
            let first = InitialBuilder.crypto(offset: 0, hello[..<cut])
            let flow = d.send(try InitialBuilder.initial(v, dcid: dcid, pn: 1, frames: second))
            XCTAssertNil(d.hello(flow)?.client)
            d.send(try InitialBuilder.initial(v, dcid: dcid, pn: 0, frames: first))
            let facts = try XCTUnwrap(d.hello(flow))
            XCTAssertEqual(facts.serverName, "split.example")
            XCTAssertEqual(facts.client?.alpn, [Array("h3".utf8)])
            XCTAssertTrue(facts.ja4?.hasPrefix("q13d0307h3_") == true, facts.ja4 ?? "")
            XCTAssertEqual(d.table[flow.slot].appProtocol, AppProtocol.quic.rawValue)
            XCTAssertEqual(d.quic.counters.clientHellos, 1)
            XCTAssertEqual(d.quic.counters.initialsDecrypted, 2)
            // Decided: later Initials are not even parsed.
            d.send(try InitialBuilder.initial(v, dcid: dcid, pn: 2, frames: first))
            XCTAssertEqual(d.quic.counters.initialsDecrypted, 2)
        }
    }

    /// Two Initials coalesced in one datagram with a 0-RTT packet between them: each is found by its Length.
    func testCoalescedPackets() throws {
        let d = QUICDriver()
        let hello = InitialBuilder.clientHello(sni: nil, alpn: ["h3"], padding: 300)
        let a = try InitialBuilder.initial(.v1, dcid: dcid, pn: 0, frames: InitialBuilder.crypto(offset: 0, hello[..<200]), padTo: 200)
        // A 0-RTT packet (type 1, no token field): skipped by its Length, not decrypted.
        let zeroRTT: [UInt8] = [0xd3, 0, 0, 0, 1, UInt8(dcid.count)] + dcid + [0] + InitialBuilder.varint2(40) + [UInt8](repeating: 0x5a, count: 40)
        let b = try InitialBuilder.initial(.v1, dcid: dcid, pn: 1, frames: InitialBuilder.crypto(offset: 200, hello[200...]), padTo: 900)
        // Below the 1200 bytes a client pads Initial datagrams to: not even parsed.
        XCTAssertLessThan((a + zeroRTT).count, 1200)
        d.send(a + zeroRTT)
        XCTAssertEqual(d.quic.counters, QUICCounters())
        let flow = d.send(a + zeroRTT + b)
        XCTAssertGreaterThanOrEqual((a + zeroRTT + b).count, 1200)
        let facts = try XCTUnwrap(d.hello(flow))
        XCTAssertNil(facts.serverName)
        XCTAssertTrue(facts.ja4?.hasPrefix("q13i0306h3_") == true, facts.ja4 ?? "")
    }

    /// After a Retry the client resends its hello in an Initial to the DCID the server chose: keys
    /// derived from the first Initial fail there, so the analyser derives them from the new DCID.
    func testHelloAfterRetryUnderANewDestinationCID() throws {
        let d = QUICDriver()
        let hello = InitialBuilder.clientHello(sni: "retry.example", alpn: ["h3"])
        let flow = d.send(try InitialBuilder.initial(.v1, dcid: dcid, pn: 0, frames: InitialBuilder.crypto(offset: 0, hello[..<40])))
        XCTAssertNil(d.hello(flow))
        let chosen: [UInt8] = [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
        d.send(try InitialBuilder.initial(.v1, dcid: chosen, pn: 1, frames: InitialBuilder.crypto(offset: 0, hello)))
        XCTAssertEqual(d.hello(flow)?.serverName, "retry.example")
        XCTAssertEqual(d.quic.counters.initialsUndecryptable, 0)
    }

    /// A QUIC flow's facts outlive its end for the detectors of that round (and active-timeout reports
    /// keep them), then go at the next tick — but never take a newer flow's facts in the same slot along.
    func testFactsEndWithTheFlowAndSpareTheSlotsNextFlow() throws {
        let d = QUICDriver()
        let flow = d.send(try InitialBuilder.initial(.v1, dcid: dcid, pn: 0,
                                                     frames: InitialBuilder.crypto(offset: 0, InitialBuilder.clientHello(sni: "first.example", alpn: ["h3"]))))
        d.quic.flowEnded(d.table[flow.slot], reason: .activeTimeout, slot: flow.slot)
        d.tls.tick(Timestamp(nanoseconds: d.time))
        XCTAssertEqual(d.hello(flow)?.serverName, "first.example")
        d.quic.flowEnded(d.table[flow.slot], reason: .idleTimeout, slot: flow.slot)
        XCTAssertEqual(d.hello(flow)?.serverName, "first.example", "detectors of this round still see it")
        var next = ClientHello()
        next.serverName = Array("second.example".utf8)
        d.tls.quicClientHello(next, slot: flow.slot, flows: d.table, at: Timestamp(nanoseconds: d.time))
        d.tls.tick(Timestamp(nanoseconds: d.time))
        XCTAssertEqual(d.hello(flow)?.serverName, "second.example")
        d.quic.flowEnded(d.table[flow.slot], reason: .idleTimeout, slot: flow.slot)
        d.tls.tick(Timestamp(nanoseconds: d.time))
        XCTAssertNil(d.hello(flow))
    }

    /// Initials that do not authenticate (a capture joined mid-handshake, forged packets) are tried
    /// `maxInitialPackets` times, then the flow is left alone; the server's datagrams are never read.
    func testUndecryptableFlowIsAbandonedAfterThreeInitials() throws {
        let d = QUICDriver()
        var packet = try InitialBuilder.initial(.v1, dcid: dcid, pn: 0, frames: InitialBuilder.crypto(offset: 0, [1, 0, 0, 1, 0]))
        packet[packet.count - 1] ^= 1  // bad tag
        var flow = d.send(packet)
        d.send(packet, fromServer: true)
        XCTAssertEqual(d.quic.counters.initialsUndecryptable, 1)
        for _ in 0..<5 { flow = d.send(packet) }
        XCTAssertEqual(d.quic.counters.initialsUndecryptable, 3)
        XCTAssertEqual(d.quic.counters.abandoned, 1)
        XCTAssertNil(d.hello(flow))
        // A CRYPTO stream that does not begin with a ClientHello is given up at once.
        let other = QUICDriver()
        other.send(try InitialBuilder.initial(.v1, dcid: dcid, pn: 0, frames: InitialBuilder.crypto(offset: 0, [2, 0, 0, 1, 0])))
        XCTAssertEqual(other.quic.counters.abandoned, 1)
        XCTAssertEqual(other.quic.counters.initialsDecrypted, 1)
    }

    /// More flows assembling at once than assembly slots: the oldest is evicted and counted, the rest complete.
    func testAssemblySlotsAreBoundedAndEvictOldest() throws {
        let d = QUICDriver()
        let hello = InitialBuilder.clientHello(sni: "many.example", alpn: ["h3"], padding: 100)
        let n = QUICAnalyzer.maxPending + 4
        var flows: [(slot: Int32, generation: UInt32)] = []
        for i in 0..<n {
            flows.append(d.send(try InitialBuilder.initial(.v1, dcid: dcid, pn: 0, frames: InitialBuilder.crypto(offset: 0, hello[..<50])),
                                clientPort: UInt16(40000 + i)))
        }
        XCTAssertEqual(d.quic.counters.pendingEvictions, 4)
        for i in 0..<n {
            d.send(try InitialBuilder.initial(.v1, dcid: dcid, pn: 1, frames: InitialBuilder.crypto(offset: 50, hello[50...])),
                   clientPort: UInt16(40000 + i))
        }
        XCTAssertEqual(flows.filter { d.hello($0) != nil }.count, QUICAnalyzer.maxPending)
        XCTAssertEqual(d.quic.counters.clientHellos, UInt64(QUICAnalyzer.maxPending))
    }

    /// Seeded fuzzing (1M inputs): mutated protected datagrams through the header parser and the
    /// analyser, mutated plaintext through the frame walker and hello assembly, and — the space
    /// only a decrypting analyser reaches — hostile frames behind valid protection. Nothing traps.
    func testQUICParsersNeverTrapOnAMillionInputs() throws {
        var rng = SeededRandom(seed: 0x5eed_0c1c)
        let hello = InitialBuilder.clientHello(sni: "fuzz.example", alpn: ["h3", "h3-29"], padding: 64)
        let framesSeeds: [[UInt8]] = [
            InitialBuilder.crypto(offset: 0, hello),
            [0x02, 0x05, 0x00, 0x01, 0x00, 0x01, 0x02] + InitialBuilder.crypto(offset: 10, hello[10...]),
            [0x03, 0x40, 0x10, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03, 0x01, 0x00] + [0x1c, 0x01, 0x06, 0x02, 0x61, 0x62],
            Array(QUICInitialTests.clientPayload.prefix(260)),
        ]
        let datagramSeeds = [QUICInitialTests.v1ClientInitial, QUICInitialTests.v2ClientInitial,
                             try InitialBuilder.initial(.v1, dcid: dcid, pn: 0, frames: framesSeeds[1], padTo: 300)]
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: QUICAnalyzer.cryptoBound, alignment: 16)
        defer { buffer.deallocate() }
        var ranges: [Range<Int>] = []
        ranges.reserveCapacity(16)
        var input: [UInt8] = []
        var outcomes = [0, 0, 0]
        let start = Date()
        for i in 0..<1_000_000 {
            if i % 2 == 0 {
                ParserFuzzTests.mutate(datagramSeeds[i / 2 % datagramSeeds.count], into: &input, &rng)
                input.withUnsafeBytes { d in
                    var offset = 0
                    while let h = QUICPacketParser.longHeader(d, at: offset), h.end > offset {
                        XCTAssertLessThanOrEqual(h.end, d.count)
                        offset = h.end
                    }
                }
            } else {
                ParserFuzzTests.mutate(framesSeeds[i / 2 % framesSeeds.count], into: &input, &rng)
                ranges.removeAll(keepingCapacity: true)
                let ok = input.withUnsafeBytes { p in
                    QUICPacketParser.initialFrames(p) { off, data in QUICAnalyzer.store(data, at: off, into: buffer, ranges: &ranges) }
                }
                XCTAssertLessThanOrEqual(ranges.count, 16)
                let contiguous = ranges.first?.lowerBound == 0 ? ranges[0].upperBound : 0
                switch QUICAnalyzer.clientHello(UnsafeRawBufferPointer(buffer), contiguous: contiguous) {
                case .parsed: outcomes[0] += ok ? 1 : 0
                case .needMore: outcomes[1] += 1
                case .invalid: outcomes[2] += 1
                }
            }
        }
        XCTAssertGreaterThan(outcomes[0], 1000, "mutations keep some hellos valid: \(outcomes)")
        XCTAssertGreaterThan(outcomes[2], 1000, "and break others: \(outcomes)")
        // Through the analyser: mutated datagrams (mostly failing authentication) and validly
        // protected hostile plaintext, on fresh flows, never trap; the counters account for all.
        let d = QUICDriver()
        for i in 0..<10_000 {
            if i % 2 == 0 {
                ParserFuzzTests.mutate(datagramSeeds[i / 2 % datagramSeeds.count], into: &input, &rng)
                guard input.count > 7 else { continue }
                input[0] |= 0xc0
                if input.count < 1200 { input += [UInt8](repeating: 0, count: 1200 - input.count) }
            } else {
                ParserFuzzTests.mutate(framesSeeds[i / 2 % framesSeeds.count], into: &input, &rng)
                input = try InitialBuilder.initial(.v1, dcid: dcid, pn: UInt32(i % 3), frames: input, padTo: 1200)
            }
            d.send(input, clientPort: UInt16(1024 + i % 60000))
        }
        let c = d.quic.counters
        XCTAssertGreaterThan(c.initialsDecrypted, 2500)
        XCTAssertGreaterThan(c.clientHellos, 50)
        XCTAssertGreaterThan(c.initialsUndecryptable, 500)
        XCTAssertLessThan(Date().timeIntervalSince(start), 60)
    }
}
