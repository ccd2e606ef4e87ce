import XCTest
import TestSupport
@testable import Analyzers
import PacketCore

/// What the answers of a response carry back (the downstream of a TXT/NULL/CNAME/MX tunnel).
final class DNSAnswerPayloadTests: XCTestCase {
    func measure(_ b: DNSBuilder, type: UInt16) -> DNSAnswerPayload? {
        withMessage(b.bytes) { m in m.map { DNSAnswerPayload.measure($0, questionType: type) } }
    }

    func entropy(_ s: String) -> Float {
        var counts: [Character: Int] = [:]
        for c in s { counts[c, default: 0] += 1 }
        let n = Double(s.count)
        return Float(-counts.values.reduce(0.0) { $0 + Double($1) / n * log2(Double($1) / n) })
    }

    func testTXTStringsAreCountedWithoutTheirLengthBytes() throws {
        var b = DNSBuilder(an: 1)
        b.question("x.t.example.com", type: DNSRecordType.txt)
        b.record(owner: 12, type: DNSRecordType.txt) { r in
            for s in ["aGVsbG8", "d29ybGQhIQ"] { r.bytes.append(UInt8(s.utf8.count)); r.bytes += Array(s.utf8) }
        }
        let p = try XCTUnwrap(measure(b, type: DNSRecordType.txt))
        XCTAssertEqual(p.bytes, 17)
        XCTAssertEqual(p.entropy, entropy("aGVsbG8d29ybGQhIQ"), accuracy: 1e-5)
        XCTAssertNotEqual(p.hash, 0)
    }

    func testCNAMEAndMXTargetsAreExpandedAcrossCompression() throws {
        var b = DNSBuilder(an: 2)
        b.question("q.example.com", type: DNSRecordType.mx)
        // MX preference, then "mail7f3a" followed by a pointer to "example.com" in the question.
        b.record(owner: 12, type: DNSRecordType.mx) { r in r.u16(10); r.name("mail7f3a", pointer: 14) }
        b.record(owner: 12, type: DNSRecordType.mx) { r in r.u16(20); r.name("b", pointer: 14) }
        let p = try XCTUnwrap(measure(b, type: DNSRecordType.mx))
        XCTAssertEqual(p.bytes, "mail7f3aexamplecombexamplecom".count)
        XCTAssertEqual(p.entropy, entropy("mail7f3aexamplecombexamplecom"), accuracy: 1e-5)
    }

    func testOrdinaryAnswersCarryNoPayload() throws {
        // A CNAME chain in front of the address an A question asked for.
        var a = DNSBuilder(an: 2)
        a.question("www.example.com", type: DNSRecordType.a)
        a.record(owner: 12, type: DNSRecordType.cname) { r in r.name("www.example.com.edgekey.net") }
        a.record(owner: 12, type: DNSRecordType.a) { r in r.bytes += [192, 0, 2, 1] }
        XCTAssertEqual(try XCTUnwrap(measure(a, type: DNSRecordType.a)), DNSAnswerPayload())
        // An HTTPS answer (ordinary for browsers, with opaque parameters).
        var h = DNSBuilder(an: 1)
        h.question("www.example.com", type: DNSRecordType.https)
        h.record(owner: 12, type: DNSRecordType.https) { r in r.u16(1); r.bytes.append(0); r.u16(5); r.u16(8); r.bytes += Array("ECHCONFG".utf8) }
        XCTAssertEqual(try XCTUnwrap(measure(h, type: DNSRecordType.https)), DNSAnswerPayload())
        // A query carries no answers.
        var q = DNSBuilder(flags: 0x0100)
        q.question("x.example.com", type: DNSRecordType.txt)
        XCTAssertEqual(try XCTUnwrap(measure(q, type: DNSRecordType.txt)), DNSAnswerPayload())
    }

    /// iodine's A mode: the A question is answered by one CNAME whose target is the encoded downstream
    /// (`h<data>.<data>.<2 letters>`), with no address — directly, or with NXDOMAIN through a resolver
    /// that chased the target.
    func testAnAQuestionAnsweredByAliasesAloneCountsTheAliases() throws {
        let target = "hbvg4y3tnmzsmorqlebkwcxpdq3yyzdjvn5gq2kfmwrqlvt6ohbxe5rg.ql7fk3sdj2lqzmdw4qmbt.xe"
        for flags: UInt16 in [0x8580, 0x8183] {
            var b = DNSBuilder(flags: flags, an: 1)
            b.question("pa0r1z.t1.example.com", type: DNSRecordType.a)
            b.record(owner: 12, type: DNSRecordType.cname) { r in r.name(target) }
            let p = try XCTUnwrap(measure(b, type: DNSRecordType.a))
            let chars = target.replacingOccurrences(of: ".", with: "")
            XCTAssertEqual(p.bytes, chars.count)
            XCTAssertEqual(p.entropy, entropy(chars), accuracy: 1e-5)
        }
        // The same alias followed by the address it leads to is an ordinary chain; so is an AAAA question
        // whose chain ends without an IPv6 address (a host without one).
        var chain = DNSBuilder(an: 2)
        chain.question("pa0r1z.t1.example.com", type: DNSRecordType.a)
        chain.record(owner: 12, type: DNSRecordType.cname) { r in r.name(target) }
        chain.record(owner: 12, type: DNSRecordType.a) { r in r.bytes += [192, 0, 2, 1] }
        XCTAssertEqual(try XCTUnwrap(measure(chain, type: DNSRecordType.a)), DNSAnswerPayload())
        var v6 = DNSBuilder(an: 1)
        v6.question("www.example.com", type: DNSRecordType.aaaa)
        v6.record(owner: 12, type: DNSRecordType.cname) { r in r.name("www.example.com.edgekey.net") }
        XCTAssertEqual(try XCTUnwrap(measure(v6, type: DNSRecordType.aaaa)), DNSAnswerPayload())
    }

    func testAnyQuestionCountsEveryUnusualType() throws {
        var b = DNSBuilder(an: 2)
        b.question("x.example.com", type: DNSRecordType.any)
        b.record(owner: 12, type: DNSRecordType.a) { r in r.bytes += [192, 0, 2, 1] }
        b.record(owner: 12, type: DNSRecordType.null) { r in r.bytes += [1, 2, 3, 4, 5] }
        XCTAssertEqual(try XCTUnwrap(measure(b, type: DNSRecordType.any)).bytes, 5)
    }

    func testTheAnalyserHandsThePayloadToObservers() {
        final class Collector: DNSMessageObserver {
            var payloads: [DNSAnswerPayload] = []
            func dnsMessage(_ facts: DNSMessageFacts) { payloads.append(facts.answerPayload) }
        }
        let d = UDPDriver()
        let o = Collector()
        d.analyzer.addObserver(o)
        var q = DNSBuilder(id: 9, flags: 0x0100)
        q.question("abc.t.example.com", type: DNSRecordType.txt)
        var r = DNSBuilder(id: 9, an: 1)
        r.question("abc.t.example.com", type: DNSRecordType.txt)
        r.record(owner: 12, type: DNSRecordType.txt) { $0.bytes.append(6); $0.bytes += Array("Zm9vYm".utf8) }
        d.send(q.bytes, response: false)
        d.send(r.bytes, response: true)
        XCTAssertEqual(o.payloads.map(\.bytes), [0, 6])
    }
}
