import Foundation
import XCTest
@testable import Analyzers
import PacketCore
import Events

/// Builds TLS records for tests: a ClientHello from its parts, as a client would send it.
enum HelloBuilder {
    static func u16(_ v: UInt16) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xff)] }

    static func ext(_ type: UInt16, _ body: [UInt8]) -> [UInt8] { u16(type) + u16(UInt16(body.count)) + body }

    static func clientHello(version: UInt16 = 0x0303, ciphers: [UInt16], extensions: [[UInt8]]) -> [UInt8] {
        var body: [UInt8] = u16(version) + [UInt8](repeating: 7, count: 32) + [32] + [UInt8](repeating: 9, count: 32)
        body += u16(UInt16(ciphers.count * 2)) + ciphers.flatMap(u16)
        body += [1, 0]
        let exts = extensions.flatMap { $0 }
        body += u16(UInt16(exts.count)) + exts
        let hs: [UInt8] = [1, UInt8(body.count >> 16), UInt8((body.count >> 8) & 0xff), UInt8(body.count & 0xff)] + body
        return [0x16, 3, 1] + u16(UInt16(hs.count)) + hs
    }

    static func sni(_ name: String) -> [UInt8] {
        let n = Array(name.utf8)
        return ext(0, u16(UInt16(n.count + 3)) + [0] + u16(UInt16(n.count)) + n)
    }

    static func alpn(_ names: [String]) -> [UInt8] {
        let list = names.flatMap { [UInt8($0.utf8.count)] + Array($0.utf8) }
        return ext(16, u16(UInt16(list.count)) + list)
    }

    static func u16List(_ type: UInt16, _ values: [UInt16]) -> [UInt8] { ext(type, u16(UInt16(values.count * 2)) + values.flatMap(u16)) }

    static func versions(_ values: [UInt16]) -> [UInt8] { ext(43, [UInt8(values.count * 2)] + values.flatMap(u16)) }

    /// The example of FoxIO's JA4 README: 15 ciphers, 16 extensions, ALPN h2.
    static func foxIOExample(grease: Bool) -> [UInt8] {
        var ciphers: [UInt16] = [0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014, 0x009c, 0x009d, 0x002f, 0x0035]
        if grease { ciphers.insert(0x2a2a, at: 0) }
        var exts: [[UInt8]] = [
            sni("example.com"), ext(0x0017, []), ext(0xff01, [0]), u16List(0x000a, [0x001d, 0x0017, 0x0018]),
            ext(0x000b, [1, 0]), ext(0x0023, []), alpn(["h2", "http/1.1"]), ext(0x0005, [1, 0, 0, 0, 0]),
            u16List(0x000d, [0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601]),
            ext(0x0012, []), ext(0x0033, u16(0)), ext(0x002d, [1, 1]), versions([0x0304, 0x0303]),
            ext(0x001b, [2, 0, 2]), ext(0x4469, [0, 3, 2, 0x68, 0x32]), ext(0x0015, [0, 0]),
        ]
        if grease { exts.insert(ext(0x3a3a, []), at: 0); exts.append(ext(0xfafa, [0])) }
        return clientHello(version: 0x0303, ciphers: ciphers, extensions: exts)
    }
}

final class TLSFingerprintTests: XCTestCase {
    func parse(_ bytes: [UInt8]) -> ClientHello? {
        bytes.withUnsafeBytes { b in
            if case .parsed(let h) = TLSHandshakeParser.clientHello(b) { return h }
            return nil
        }
    }

    /// FoxIO's documented example: `t13d1516h2_8daaf6152771_e5627efa2ab1`, with and without GREASE.
    func testJA4MatchesFoxIOExample() throws {
        for grease in [false, true] {
            let h = try XCTUnwrap(parse(HelloBuilder.foxIOExample(grease: grease)))
            XCTAssertEqual(TLSFingerprint.ja4(h), "t13d1516h2_8daaf6152771_e5627efa2ab1", "grease \(grease)")
            let raw = TLSFingerprint.ja4Raw(h)
            XCTAssertEqual(raw.ciphers, "002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9")
            XCTAssertEqual(raw.extensions, "0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_0403,0804,0401,0503,0805,0501,0806,0601")
            XCTAssertEqual(String(decoding: h.serverName ?? [], as: UTF8.self), "example.com")
        }
    }

    func testJA4EdgeCases() throws {
        // No SNI, no ALPN, TLS 1.2 legacy version only, no signature algorithms.
        let bare = try XCTUnwrap(parse(HelloBuilder.clientHello(ciphers: [0x002f], extensions: [HelloBuilder.ext(0x0017, [])])))
        XCTAssertTrue(TLSFingerprint.ja4(bare).hasPrefix("t12i010100_"))
        XCTAssertEqual(TLSFingerprint.ja4Raw(bare).extensions, "0017")
        // Non-alphanumeric ALPN: first and last hex digits; one-character ALPN doubles it.
        let odd = try XCTUnwrap(parse(HelloBuilder.clientHello(ciphers: [0x002f], extensions: [HelloBuilder.alpn(["\u{1}ab\u{3}"])])))
        XCTAssertEqual(String(TLSFingerprint.ja4(odd).prefix(10)), "t12i010103")
        let one = try XCTUnwrap(parse(HelloBuilder.clientHello(ciphers: [0x002f], extensions: [HelloBuilder.alpn(["h"])])))
        XCTAssertEqual(String(TLSFingerprint.ja4(one).prefix(10)), "t12i0101hh")
        // Empty lists hash to zeros.
        let none = try XCTUnwrap(parse(HelloBuilder.clientHello(ciphers: [], extensions: [])))
        XCTAssertEqual(TLSFingerprint.ja4(none), "t12i000000_000000000000_000000000000")
    }

    func testJA3DropsGREASEAndKeepsOrder() throws {
        let h = try XCTUnwrap(parse(HelloBuilder.clientHello(ciphers: [0x0a0a, 0xc02b, 0x002f], extensions: [
            HelloBuilder.ext(0x1a1a, []), HelloBuilder.u16List(10, [0x2a2a, 29, 23]), HelloBuilder.ext(11, [1, 0]), HelloBuilder.sni("a.b"),
        ])))
        XCTAssertEqual(TLSFingerprint.ja3String(h), "771,49195-47,10-11-0,29-23,0")
        XCTAssertEqual(TLSFingerprint.ja3(h), Digest.hex(Digest.md5(Array("771,49195-47,10-11-0,29-23,0".utf8))))
    }

    /// A ClientHello split over TCP segments, and over two TLS records, is read whole.
    func testHelloSpanningSegmentsAndRecords() throws {
        let hello = HelloBuilder.foxIOExample(grease: true)
        // Re-frame the handshake message into two records.
        let hs = Array(hello[5...])
        let cut = 40
        let twoRecords = [0x16, 3, 1] + HelloBuilder.u16(UInt16(cut)) + Array(hs[..<cut]) + [0x16, 3, 1] + HelloBuilder.u16(UInt16(hs.count - cut)) + Array(hs[cut...])
        for bytes in [hello, twoRecords] {
            for split in [1, 3, 5, 6, 9, 50, bytes.count - 1] {
                let tls = TLSAnalyzer(flowCapacity: 64)
                let table = FlowTable(configuration: { var c = FlowTableConfiguration(); c.capacity = 64; return c }())
                var p = DecodedPacket()
                p.ipVersion = 4; p.ipProtocol = IPProtocol.tcp; p.hasPorts = true
                p.source = IPAddress("10.0.0.1")!; p.destination = IPAddress("10.0.0.2")!
                p.sourcePort = 50000; p.destinationPort = 4444; p.tcpFlags = [.syn]
                let u = table.update(p) { _, _, _ in }
                bytes.withUnsafeBytes { b in
                    XCTAssertTrue(tls.wantsStream(table[u.slot], slot: u.slot, firstPayload: b, fromOriginator: true))
                    XCTAssertEqual(tls.stream(UnsafeRawBufferPointer(rebasing: b[..<split]), fromOriginator: true, slot: u.slot, flows: table, at: .zero), .more)
                    XCTAssertEqual(tls.stream(UnsafeRawBufferPointer(rebasing: b[split...]), fromOriginator: true, slot: u.slot, flows: table, at: .zero), .doneWithDirection)
                }
                let f = try XCTUnwrap(tls.facts(slot: u.slot, generation: table[u.slot].generation))
                XCTAssertEqual(f.ja4, "t13d1516h2_8daaf6152771_e5627efa2ab1", "split \(split)")
                XCTAssertEqual(f.serverName, "example.com")
                XCTAssertEqual(table[u.slot].appProtocol, AppProtocol.tls.rawValue)
            }
        }
    }

    final class Facts: FactObserver {
        var seen: [String] = []
        var certificates: [String] = []
        func observe(_ fact: ObservedFact, flow: FlowRecord?, at time: Timestamp) {
            switch fact {
            case .tlsCertificate(_, let sha1): certificates.append(sha1 ?? "-")
            case .tlsClientHello(let sni, let ja3, let ja4): seen.append("tls \(sni ?? "-") \(ja3 ?? "-") \(ja4 ?? "-")")
            case .httpRequest(let host, let url): seen.append("http \(host ?? "-") \(url)")
            default: break
            }
        }
    }

    /// One TCP flow 10.0.0.1:50000 → 10.0.0.2:443 in a small table, a TLS analyser and an emitter whose
    /// fact observer records what is published: the stage the analyser-level tests feed by hand.
    struct OneFlow {
        let emitter = EventEmitter(observer: ObserverInfo(name: "t", hostname: "t"), sinks: [])
        let facts = Facts()
        let table = FlowTable(configuration: { var c = FlowTableConfiguration(); c.capacity = 64; return c }())
        let slot: Int32
        let tls: TLSAnalyzer

        init() {
            emitter.factObservers.append(facts)
            var p = DecodedPacket()
            p.ipVersion = 4; p.ipProtocol = IPProtocol.tcp; p.hasPorts = true
            p.source = IPAddress("10.0.0.1")!; p.destination = IPAddress("10.0.0.2")!
            p.sourcePort = 50000; p.destinationPort = 443; p.tcpFlags = [.syn]
            slot = table.update(p) { _, _, _ in }.slot
            tls = TLSAnalyzer(flowCapacity: 64, emitter: emitter)
        }
    }

    /// ClientHello and request facts go to fact observers (threat-intelligence matching).
    func testFactsArePublished() throws {
        let stage = OneFlow()
        let (emitter, facts, table, tls) = (stage.emitter, stage.facts, stage.table, stage.tls)
        let slot = stage.slot
        HelloBuilder.foxIOExample(grease: false).withUnsafeBytes { b in
            _ = tls.wantsStream(table[slot], slot: slot, firstPayload: b, fromOriginator: true)
            _ = tls.stream(b, fromOriginator: true, slot: slot, flows: table, at: .zero)
        }
        let http = HTTPAnalyzer(emitter: emitter)
        Array("GET /x?y=1 HTTP/1.1\r\nHost: Example.COM:8080\r\n\r\n".utf8).withUnsafeBytes { b in
            _ = http.wantsStream(table[slot], slot: slot, firstPayload: b, fromOriginator: true)
            _ = http.stream(b, fromOriginator: true, slot: slot, flows: table, at: .zero)
        }
        XCTAssertEqual(facts.seen.count, 2)
        XCTAssertTrue(facts.seen[0].hasPrefix("tls example.com "), facts.seen[0])
        XCTAssertTrue(facts.seen[0].hasSuffix("t13d1516h2_8daaf6152771_e5627efa2ab1"), facts.seen[0])
        XCTAssertEqual(facts.seen[1], "http example.com http://Example.COM:8080/x?y=1")
    }

    /// MD5, SHA-1 and SHA-256 agree with coreutils' md5sum, sha1sum and sha256sum on every padding boundary and random data.
    func testDigestsAgreeWithCoreutils() throws {
        var rng = SystemRandomNumberGenerator()
        let dir = try TestSupportLite.temporaryDirectory()
        for n in [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 1000, 4097] {
            let data = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let path = dir.appendingPathComponent("d\(n)").path
            XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(data)))
            XCTAssertEqual(Digest.hex(Digest.md5(data)), try TestSupportLite.firstWord("md5sum", path), "md5 \(n)")
            XCTAssertEqual(Digest.hex(Digest.sha1(data)), try TestSupportLite.firstWord("sha1sum", path), "sha1 \(n)")
            XCTAssertEqual(Digest.hex(Digest.sha256(data)), try TestSupportLite.firstWord("sha256sum", path), "sha256 \(n)")
        }
        XCTAssertEqual(Digest.hex(Digest.md5(Array("abc".utf8))), "900150983cd24fb0d6963f7d28e17f72")
        XCTAssertEqual(Digest.hex(Digest.sha256(Array("abc".utf8))), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }
}

/// The few process helpers these tests need (AnalyzersTests does not link TestSupport).
enum TestSupportLite {
    static func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("analyzers-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    static func firstWord(_ tool: String, _ path: String) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = [tool, path]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: data, as: UTF8.self).split(separator: " ").first.map(String.init) ?? ""
    }
}
