import XCTest
import TestSupport
@testable import Analyzers
import PacketCore

/// Builds DNS messages byte by byte (names uncompressed unless a pointer is given).
struct DNSBuilder {
    var bytes: [UInt8] = []

    init(id: UInt16 = 0x1234, flags: UInt16 = 0x8180, qd: UInt16 = 1, an: UInt16 = 0, ns: UInt16 = 0, ar: UInt16 = 0) {
        for v in [id, flags, qd, an, ns, ar] { u16(v) }
    }

    mutating func u16(_ v: UInt16) { bytes.append(UInt8(v >> 8)); bytes.append(UInt8(v & 0xFF)) }
    mutating func u32(_ v: UInt32) { u16(UInt16(v >> 16)); u16(UInt16(v & 0xFFFF)) }

    /// Appends a name; `pointer` ends it with a compression pointer instead of the root label.
    mutating func name(_ text: String, pointer: Int? = nil) {
        for label in text.split(separator: ".") where !label.isEmpty {
            bytes.append(UInt8(label.utf8.count))
            bytes.append(contentsOf: label.utf8)
        }
        if let p = pointer { bytes.append(0xC0 | UInt8(p >> 8)); bytes.append(UInt8(p & 0xFF)) } else { bytes.append(0) }
    }

    mutating func question(_ n: String, type: UInt16, cls: UInt16 = 1) { name(n); u16(type); u16(cls) }

    /// A record whose owner is a pointer to `owner` and whose RDATA is built by `rdata`.
    mutating func record(owner: Int, type: UInt16, cls: UInt16 = 1, ttl: UInt32 = 300, rdata: (inout DNSBuilder) -> Void) {
        bytes.append(0xC0 | UInt8(owner >> 8)); bytes.append(UInt8(owner & 0xFF))
        u16(type); u16(cls); u32(ttl)
        let lenAt = bytes.count
        u16(0)
        let start = bytes.count
        rdata(&self)
        let len = bytes.count - start
        bytes[lenAt] = UInt8(len >> 8); bytes[lenAt + 1] = UInt8(len & 0xFF)
    }
}

func withMessage<R>(_ b: [UInt8], _ body: (DNSMessage?) -> R) -> R {
    b.withUnsafeBytes { body(DNSMessage.parse($0)) }
}

func nameText(_ m: DNSMessage, at offset: Int) -> String? {
    var out: [UInt8] = []
    guard DNSText.appendName(m.bytes, at: offset, to: &out) != nil else { return nil }
    return String(decoding: out, as: UTF8.self)
}

func rdataText(_ m: DNSMessage, _ rr: DNSResourceRecord) -> String {
    var out: [UInt8] = []
    DNSText.appendRData(rr, in: m.bytes, to: &out)
    return String(decoding: out, as: UTF8.self)
}

final class DNSMessageTests: XCTestCase {
    /// A response with one record of every rendered type, all owners compressed to the question name.
    func fullResponse() -> [UInt8] {
        var b = DNSBuilder(an: 11, ns: 0, ar: 1)
        b.question("www.Example.com", type: 1)
        let q = 12
        b.record(owner: q, type: 1) { $0.bytes += [192, 0, 2, 1] }
        b.record(owner: q, type: 28) { $0.bytes += [0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 0, count: 11) + [1] }
        b.record(owner: q, type: 5) { $0.name("cdn", pointer: q + 4) }  // cdn.example.com
        b.record(owner: q, type: 15) { $0.u16(10); $0.name("mx", pointer: q + 4) }
        b.record(owner: q, type: 16) { $0.bytes += [5] + Array("hello".utf8) + [5] + Array("world".utf8) }
        b.record(owner: q, type: 33) { $0.u16(1); $0.u16(5); $0.u16(5060); $0.name("sip.example.com") }
        b.record(owner: q, type: 6) { $0.name("ns1", pointer: q + 4); $0.name("hostmaster", pointer: q + 4); for v in [2024010101, 7200, 900, 1209600, 300] as [UInt32] { $0.u32(v) } }
        b.record(owner: q, type: 65) { $0.u16(1); $0.bytes.append(0); $0.u16(1); $0.u16(6); $0.bytes += [2] + Array("h2".utf8) + [2] + Array("h3".utf8); $0.u16(4); $0.u16(4); $0.bytes += [192, 0, 2, 7] }
        b.record(owner: q, type: 10) { $0.bytes += [0xde, 0xad, 0xbe, 0xef] }
        b.record(owner: q, type: 999) { $0.bytes += [1, 2] }
        b.record(owner: q, type: 12) { $0.name("host.example.net") }
        // OPT: root owner, UDP size 1232, DO bit.
        b.bytes.append(0); b.u16(41); b.u16(1232); b.u32(0x0000_8000); b.u16(0)
        return b.bytes
    }

    func testParsesEveryRenderedType() throws {
        withMessage(fullResponse()) { m in
            guard let m else { return XCTFail("parse failed") }
            XCTAssertTrue(m.isComplete)
            XCTAssertEqual(m.validRecordCount, 12)
            XCTAssertEqual(m.header.id, 0x1234)
            XCTAssertTrue(m.header.isResponse)
            XCTAssertTrue(m.header.recursionDesired)
            XCTAssertTrue(m.header.recursionAvailable)
            XCTAssertEqual(m.edns?.udpPayloadSize, 1232)
            XCTAssertEqual(m.edns?.dnssecOK, true)
            let q = m.firstQuestion!
            XCTAssertEqual(q.type, 1)
            XCTAssertEqual(nameText(m, at: q.nameOffset), "www.Example.com")
            let answers = m.records.filter { $0.section == .answer }
            XCTAssertEqual(answers.count, 11)
            XCTAssertEqual(answers.map { rdataText(m, $0) }, [
                "192.0.2.1",
                "2001:db8::1",
                "cdn.Example.com",
                "10 mx.Example.com",
                "hello world",
                "1 5 5060 sip.example.com",
                "ns1.Example.com hostmaster.Example.com 2024010101 7200 900 1209600 300",
                "1 . alpn=h2,h3 ipv4hint=192.0.2.7",
                "\\# 4 deadbeef",
                "\\# 2 0102",
                "host.example.net",
            ])
            XCTAssertEqual(answers.map { nameText(m, at: $0.nameOffset) }, Array(repeating: "www.Example.com", count: 11))
            XCTAssertEqual(m.records.filter { $0.section == .additional }.map(\.type), [41])
            XCTAssertEqual(m.answerDataBytes, answers.reduce(0) { $0 + $1.rdataLength })
        }
    }

    func testCompressionLoopsAndForwardPointersAreRejected() {
        // Question name is a pointer to itself.
        var selfLoop = DNSBuilder(flags: 0x0100)
        selfLoop.bytes += [0xC0, 12, 0, 1, 0, 1]
        withMessage(selfLoop.bytes) { XCTAssertNil($0) }
        // Two labels pointing at each other: 12 -> "a" then pointer to 16, 16 -> "b" then pointer to 12.
        var mutual = DNSBuilder(flags: 0x0100)
        mutual.bytes += [1, 0x61, 0xC0, 16, 1, 0x62, 0xC0, 12, 0, 1, 0, 1]
        withMessage(mutual.bytes) { XCTAssertNil($0) }
        // A pointer past the end.
        var beyond = DNSBuilder(flags: 0x0100)
        beyond.bytes += [0xC0, 0xFF, 0, 1, 0, 1]
        withMessage(beyond.bytes) { XCTAssertNil($0) }
        // Extended label type 0x40 is obsolete.
        var extended = DNSBuilder(flags: 0x0100)
        extended.bytes += [0x41, 0, 0, 0, 1, 0, 1]
        withMessage(extended.bytes) { XCTAssertNil($0) }
    }

    func testPointerChainsAreFollowedBackwardsOnly() {
        // Each name points to the previous one: a long backward chain is fine up to maxJumps.
        var b = DNSBuilder(flags: 0x0100, qd: 3)
        b.question("example.com", type: 1)        // at 12
        let second = b.bytes.count
        b.bytes += [1, 0x61]; b.bytes += [0xC0, 12]; b.u16(1); b.u16(1)   // a.example.com
        b.bytes += [1, 0x62]; b.bytes += [0xC0, UInt8(second)]; b.u16(1); b.u16(1)  // b.a.example.com
        withMessage(b.bytes) { m in
            guard let m else { return XCTFail() }
            XCTAssertEqual(m.questions.map { nameText(m, at: $0.nameOffset) }, ["example.com", "a.example.com", "b.a.example.com"])
        }
    }

    func testNamesLongerThan255BytesAreRejected() {
        var b = DNSBuilder(flags: 0x0100)
        for _ in 0..<5 { b.bytes.append(63); b.bytes += [UInt8](repeating: 0x61, count: 63) }  // 320 bytes
        b.bytes += [0, 0, 1, 0, 1]
        withMessage(b.bytes) { XCTAssertNil($0) }
        var ok = DNSBuilder(flags: 0x0100)
        for _ in 0..<3 { ok.bytes.append(63); ok.bytes += [UInt8](repeating: 0x61, count: 63) }
        ok.bytes.append(61); ok.bytes += [UInt8](repeating: 0x62, count: 61)  // 3*64 + 62 + 1 = 255
        ok.bytes += [0, 0, 1, 0, 1]
        withMessage(ok.bytes) { m in
            XCTAssertNotNil(m)
            XCTAssertEqual(m.flatMap { nameText($0, at: 12) }?.utf8.count, 253)
        }
    }

    func testCutRecordsLeaveTheQuestion() {
        let full = fullResponse()
        // Cut inside the fourth answer: header and question survive, three records validate.
        var cut = Array(full.prefix(12 + 21 + 16 + 28 + 18 + 5))
        withMessage(cut) { m in
            guard let m else { return XCTFail("question should survive") }
            XCTAssertFalse(m.isComplete)
            XCTAssertEqual(m.validRecordCount, 3)
            XCTAssertEqual(Array(m.records).count, 3)
        }
        cut = Array(full.prefix(20))
        withMessage(cut) { XCTAssertNil($0) }
        withMessage(Array(full.prefix(11))) { XCTAssertNil($0) }
    }

    func testMalformedRDataEndsTheWalk() {
        var b = DNSBuilder(an: 2)
        b.question("a.example", type: 1)
        b.record(owner: 12, type: 1) { $0.bytes += [1, 2, 3] }  // A with 3 bytes
        b.record(owner: 12, type: 1) { $0.bytes += [1, 2, 3, 4] }
        withMessage(b.bytes) { m in
            XCTAssertEqual(m?.isComplete, false)
            XCTAssertEqual(m?.validRecordCount, 0)
        }
        var txt = DNSBuilder(an: 1)
        txt.question("a.example", type: 16)
        txt.record(owner: 12, type: 16) { $0.bytes += [9, 0x61] }  // string length past RDATA
        withMessage(txt.bytes) { XCTAssertEqual($0?.validRecordCount, 0) }
    }

    func testExtendedResponseCode() {
        var b = DNSBuilder(flags: 0x8000 | 0x0001, an: 0, ar: 1)
        b.question("x.example", type: 1)
        b.bytes.append(0); b.u16(41); b.u16(512); b.u32(0x0100_0000); b.u16(0)  // ext rcode 1 → 16 | 1
        withMessage(b.bytes) { XCTAssertEqual($0?.responseCode, 17) }
    }

    func testTCPFramingAcrossAndWithinSegments() {
        let a = fullResponse()
        var q = DNSBuilder(flags: 0x0100)
        q.question("example.org", type: 28)
        let b = q.bytes
        var stream: [UInt8] = []
        for m in [a, b, a] { stream += [UInt8(m.count >> 8), UInt8(m.count & 0xFF)] + m }
        let budget = ParserMemoryBudget()
        // Every split point, and every byte on its own.
        for cut in 0...stream.count {
            var framer = DNSTCPFramer()
            var got: [[UInt8]] = []
            stream.withUnsafeBytes { s in
                XCTAssertTrue(framer.feed(UnsafeRawBufferPointer(rebasing: s[..<cut]), budget: budget) { got.append(Array($0)) })
                XCTAssertTrue(framer.feed(UnsafeRawBufferPointer(rebasing: s[cut...]), budget: budget) { got.append(Array($0)) })
            }
            XCTAssertEqual(got, [a, b, a], "split at \(cut)")
            XCTAssertNil(framer.buffer)
        }
        XCTAssertEqual(budget.used, 0)
        var framer = DNSTCPFramer()
        var got: [[UInt8]] = []
        for byte in stream { [byte].withUnsafeBytes { _ = framer.feed($0, budget: budget) { got.append(Array($0)) } } }
        XCTAssertEqual(got, [a, b, a])
    }

    /// Seeded mutation fuzzing: real DNS payloads from the shared captures (extracted with tshark), plus
    /// hand-built ones, mutated (bit flips, byte sets, pointer bytes, truncation, extension, splices) and
    /// random buffers of random lengths. Every input is parsed and fully walked and rendered; the parser
    /// must return nil or a view whose every read stays in bounds, never trap or hang.
    func testMutationFuzzOneMillionInputs() throws {
        var corpus: [[UInt8]] = [fullResponse()]
        if TestSupportProbe.hasTshark {
            for file in ["dns-tunnel/iodine.pcap", "benign/http_espn.pcapng", "dns-tunnel/dnsextrator.pcap"] {
                corpus += try TestSupportProbe.udpPayloads(file)
            }
        }
        XCTAssertGreaterThan(corpus.count, 1)
        var rng = SeededRandom(seed: 0x5EED_D15E)
        let iterations = 1_000_000
        var parsed = 0, records = 0
        var scratch: [UInt8] = []
        scratch.reserveCapacity(1 << 16)
        var input = [UInt8](repeating: 0, count: 4096)
        for i in 0..<iterations {
            var n: Int
            if i % 16 == 15 {
                // Random bytes of random length.
                n = Int(rng.next() % 600)
                for k in 0..<n { input[k] = UInt8(truncatingIfNeeded: rng.next()) }
            } else {
                let base = corpus[Int(rng.next() % UInt64(corpus.count))]
                n = base.count
                for k in 0..<n { input[k] = base[k] }
                let mutations = 1 + Int(rng.next() % 4)
                for _ in 0..<mutations {
                    let r = rng.next()
                    switch r % 6 {
                    case 0: if n > 0 { input[Int(rng.next() % UInt64(n))] ^= UInt8(1 << (r >> 8 & 7)) }
                    case 1: if n > 0 { input[Int(rng.next() % UInt64(n))] = UInt8(truncatingIfNeeded: rng.next()) }
                    case 2: if n > 1 { let k = Int(rng.next() % UInt64(n - 1)); input[k] = 0xC0 | UInt8(truncatingIfNeeded: rng.next() & 0x3F); input[k + 1] = UInt8(truncatingIfNeeded: rng.next()) }
                    case 3: n = Int(rng.next() % UInt64(n + 1))
                    case 4: let extra = Int(rng.next() % 64); for k in n..<min(input.count, n + extra) { input[k] = UInt8(truncatingIfNeeded: rng.next()) }; n = min(input.count, n + extra)
                    default: if n > 4 { let k = 4 + Int(rng.next() % 8); if k + 1 < n { input[k] = UInt8(truncatingIfNeeded: rng.next() & 0x03); input[k + 1] = UInt8(truncatingIfNeeded: rng.next()) } }
                    }
                }
            }
            input.withUnsafeBytes { all in
                let buf = UnsafeRawBufferPointer(rebasing: all[..<n])
                guard let m = DNSMessage.parse(buf) else { return }
                parsed += 1
                // Walk and render everything on a sample (rendering is the slow part of a debug build).
                if i % 4 == 0 {
                    for q in m.questions { scratch.removeAll(keepingCapacity: true); DNSText.appendName(buf, at: q.nameOffset, to: &scratch) }
                    for rr in m.records {
                        records += 1
                        scratch.removeAll(keepingCapacity: true)
                        DNSText.appendName(buf, at: rr.nameOffset, to: &scratch)
                        DNSText.appendRData(rr, in: buf, to: &scratch)
                    }
                }
            }
        }
        XCTAssertGreaterThan(parsed, iterations / 10, "the mutator should keep many inputs parseable")
        XCTAssertGreaterThan(records, 0)
    }
}
