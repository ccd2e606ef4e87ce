import XCTest
import TestSupport
@testable import Analyzers
import PacketCore
import Events

/// Seeded random property tests for the parsers that face hostile bytes: a million mutated inputs each
/// (bit flips, byte overwrites with boundary values, truncations, length-field corruption, random
/// bytes) must never trap; every outcome is a value. Same seed, same inputs: a failure reproduces.
final class ParserFuzzTests: XCTestCase {
    static let iterations = 1_000_000

    /// Mutates `seed` into `buf` (reused, so the loop itself does not allocate per input).
    static func mutate(_ seed: [UInt8], into buf: inout [UInt8], _ rng: inout SeededRandom) {
        buf.removeAll(keepingCapacity: true)
        let r = rng.next()
        if r % 16 == 0 {
            let n = Int(rng.next() % 300)
            for _ in 0..<n { buf.append(UInt8(truncatingIfNeeded: rng.next())) }
            return
        }
        buf.append(contentsOf: seed)
        let edits = Int(rng.next() % 4) + 1
        for _ in 0..<edits where !buf.isEmpty {
            let i = Int(rng.next() % UInt64(buf.count))
            switch rng.next() % 6 {
            case 0: buf[i] ^= UInt8(1) << UInt8(rng.next() % 8)
            case 1: buf[i] = [0x00, 0xff, 0x7f, 0x80, 0x01, 0x0a, 0x0d, 0x3a, 0x20][Int(rng.next() % 9)]
            case 2: buf.removeLast(buf.count - i)
            case 3: if i + 1 < buf.count { buf[i] = 0xff; buf[i + 1] = 0xff }  // lengths to the maximum
            case 4: buf.insert(UInt8(truncatingIfNeeded: rng.next()), at: i)
            default: if i + 1 < buf.count { buf.swapAt(i, i + 1) }
            }
        }
    }

    func testTLSParsersNeverTrap() {
        let seeds = [HelloBuilder.foxIOExample(grease: true), HelloBuilder.foxIOExample(grease: false),
                     HelloBuilder.clientHello(ciphers: [0x002f], extensions: [HelloBuilder.alpn(["h2"]), HelloBuilder.sni("x")]),
                     serverHello()]
        var rng = SeededRandom(seed: 0x5eed_71c5)
        var buf: [UInt8] = []
        buf.reserveCapacity(1024)
        var parsed = 0
        for n in 0..<ParserFuzzTests.iterations {
            ParserFuzzTests.mutate(seeds[n % seeds.count], into: &buf, &rng)
            buf.withUnsafeBytes { b in
                if case .parsed(let h) = TLSHandshakeParser.clientHello(b) {
                    parsed += 1
                    if n % 64 == 0 { _ = TLSFingerprint.ja4(h); _ = TLSFingerprint.ja3String(h) }
                }
                if case .parsed = TLSHandshakeParser.serverHello(b) { parsed += 1 }
                _ = ContentClassifier.classifyClient(b)
                _ = ContentClassifier.classifyServerGreeting(b)
                _ = ContentClassifier.classifyDatagram(b, sourcePort: 53, destinationPort: 443)
            }
        }
        XCTAssertGreaterThan(parsed, 1000, "mutations should still produce parseable hellos")
    }

    func testHTTPParsersNeverTrap() {
        let seeds: [[UInt8]] = [
            Array("GET /a/b?c=d HTTP/1.1\r\nHost: example.com:8080\r\nUser-Agent: fuzz/1.0\r\nContent-Length: 12\r\n\r\n".utf8),
            Array("POST http://h.example/x HTTP/1.0\nHost: h.example\nReferer: r\n\n".utf8),
            Array("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5\r\nServer: s\r\n\r\n".utf8),
            Array("HTTP/1.0 404 Not Found\n\n".utf8),
        ]
        var rng = SeededRandom(seed: 0x4777_7770)
        var buf: [UInt8] = []
        buf.reserveCapacity(1024)
        var parsed = 0
        for n in 0..<ParserFuzzTests.iterations {
            ParserFuzzTests.mutate(seeds[n % seeds.count], into: &buf, &rng)
            buf.withUnsafeBytes { b in
                if case .parsed = HTTPParser.request(b) { parsed += 1 }
                if case .parsed = HTTPParser.response(b) { parsed += 1 }
            }
        }
        XCTAssertGreaterThan(parsed, 1000)
    }

    /// Every parse of a valid head from a fuzzed stream position writes valid JSON fields (no trap in the writers).
    func testHTTPFactsWriterOnMutatedHeads() {
        var rng = SeededRandom(seed: 7)
        var buf: [UInt8] = []
        let seed = Array("GET http://[::1]:99999/p?q HTTP/1.1\r\nHost: [::1]:80\r\nUser-Agent: \u{1}\u{ff}\r\n\r\n".utf8)
        var w = JSONWriterShim()
        for _ in 0..<20_000 {
            ParserFuzzTests.mutate(seed, into: &buf, &rng)
            buf.withUnsafeBytes { b in
                if case .parsed(let r) = HTTPParser.request(b) { w.write(HTTPFacts(generation: 0, request: r, response: nil)) }
            }
        }
    }

    func serverHello() -> [UInt8] {
        var body: [UInt8] = [3, 3] + [UInt8](repeating: 1, count: 32) + [0] + [0x13, 0x01] + [0]
        let sv: [UInt8] = [0, 43, 0, 2, 3, 4]  // supported_versions: TLS 1.3
        body += HelloBuilder.u16(UInt16(sv.count)) + sv
        let hs: [UInt8] = [2, 0, UInt8(body.count >> 8), UInt8(body.count & 0xff)] + body
        return [0x16, 3, 3] + HelloBuilder.u16(UInt16(hs.count)) + hs
    }
}

/// Writes HTTP facts into a reused JSON writer (exercises the URL splitting on odd targets).
struct JSONWriterShim {
    var writer = Events.JSONWriter(capacity: 4096)
    mutating func write(_ f: HTTPFacts) {
        writer.reset()
        writer.beginObject()
        HTTPAnalyzer.write(f, into: &writer)
        writer.endObject()
    }
}
