import Foundation
import PacketCore
import XCTest
@testable import Events

/// The writer's in-place renderings (times, addresses, numbers, escaped text) give exactly the bytes of
/// the plain renderings they replace: event output, and so `event.id`, depends on every byte.
final class JSONWriterValueTests: XCTestCase {
    /// The text of `"k":<value>` minus the key, as the writer made it.
    func value(_ write: (inout JSONWriter) -> Void) -> String {
        var w = JSONWriter(capacity: 16)
        w.beginObject()
        write(&w)
        w.endObject()
        let text = String(decoding: w.bytes, as: UTF8.self)
        return String(text.dropFirst(#"{"k":"#.count).dropLast())
    }

    func testTimesMatchRFC3339() {
        var rng = SystemRandomNumberGenerator()
        var samples: [Int64] = [0, -1, 1, 999, -999_999_999, -1_000_000_000, 86_399_999_999_999, 86_400_000_000_000,
                                1_704_067_200_000_000_000, 1_704_067_199_999_999_999, .max, .min, .min + 1]
        for _ in 0..<20_000 { samples.append(Int64.random(in: .min ... .max, using: &rng)) }
        // Consecutive times on one day and across midnight, as the day cache sees them.
        var t: Int64 = 1_704_153_599_000_000_000
        for _ in 0..<5_000 { samples.append(t); t &+= Int64.random(in: 0...1_000_000, using: &rng) }
        var w = JSONWriter(capacity: 16)
        for ns in samples {
            let ts = Timestamp(nanoseconds: ns)
            w.reset(); w.beginObject(); w.field("k", ts); w.endObject()
            XCTAssertEqual(String(decoding: w.bytes, as: UTF8.self), #"{"k":""# + RFC3339.string(ts) + #""}"#, "\(ns)")
        }
        for secs in [Int64(0), -1, 253_402_300_799, 253_402_300_800, -62_167_219_200, -62_167_219_201, .max, .min] + (0..<5_000).map({ _ in Int64.random(in: .min ... .max, using: &rng) }) {
            var reference: [UInt8] = []
            RFC3339.append(epochSeconds: secs, to: &reference)
            XCTAssertEqual(value { $0.field("k", epochSeconds: secs) }, "\"" + String(decoding: reference, as: UTF8.self) + "\"", "\(secs)")
        }
    }

    func testAddressesMatchTheirText() {
        var rng = SystemRandomNumberGenerator()
        var addresses: [IPAddress] = [IPAddress(ipv4: 0), IPAddress(ipv4: .max), IPAddress(ipv4: 0x0A00_0001), IPAddress(ipv4: 0x6463_0A09)]
        for _ in 0..<20_000 { addresses.append(IPAddress(ipv4: UInt32.random(in: 0 ... .max, using: &rng))) }
        for _ in 0..<2_000 {
            addresses.append(IPAddress(high: UInt64.random(in: 0 ... .max, using: &rng), low: UInt64.random(in: 0...0xffff, using: &rng), isIPv6: true))
        }
        for a in addresses {
            XCTAssertEqual(value { $0.field("k", a) }, "\"\(a)\"")
            XCTAssertEqual(value { w in w.beginArray("k"); w.element(a); w.endArray() }, "[\"\(a)\"]")
        }
    }

    func testNumbersMatchTheirText() {
        var rng = SystemRandomNumberGenerator()
        var numbers: [UInt64] = [0, 9, 10, 99, 100, 999, 1000, 9_999_999_999, 10_000_000_000, .max, .max - 1]
        var p: UInt64 = 1
        for _ in 0..<19 { numbers += [p - 1, p, p + 1]; p *= 10 }
        for _ in 0..<20_000 { numbers.append(UInt64.random(in: 0 ... .max, using: &rng) >> UInt64.random(in: 0...63, using: &rng)) }
        for n in numbers {
            XCTAssertEqual(value { $0.field("k", n) }, String(n))
            XCTAssertEqual(value { $0.field("k", decimalString: n) }, "\"\(n)\"")
            XCTAssertEqual(value { $0.field("k", Int64(bitPattern: n)) }, String(Int64(bitPattern: n)))
        }
    }

    /// Text that is mostly plain ASCII with escapes and multi-byte sequences at every offset of the
    /// eight-byte steps, against a byte-at-a-time escaper.
    func testEscapingMatchesByteAtATime() {
        var rng = SystemRandomNumberGenerator()
        let specials: [[UInt8]] = [[34], [92], [10], [13], [9], [0], [0x1f], [0x7f], [0x80], [0xff], [0xc3, 0xbc], [0xe4, 0xb8, 0xad],
                                   [0xf0, 0x9f, 0x98, 0x80], [0xc3], [0xe4, 0xb8], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80]]
        for _ in 0..<20_000 {
            var raw: [UInt8] = []
            let n = Int.random(in: 0...80, using: &rng)
            while raw.count < n {
                if Int.random(in: 0..<12, using: &rng) == 0 {
                    raw += specials.randomElement(using: &rng)!
                } else {
                    raw.append(UInt8.random(in: 0x20...0x7e, using: &rng))
                }
            }
            let got = raw.withUnsafeBytes { b in value { $0.field("k", bytes: b) } }
            XCTAssertEqual(got, "\"" + Self.referenceEscape(raw) + "\"", "\(raw)")
        }
    }

    /// The escaping rules spelled out one byte at a time.
    static func referenceEscape(_ s: [UInt8]) -> String {
        var out: [UInt8] = []
        var i = 0
        func hex(_ c: UInt8) -> [UInt8] { Array(String(format: "\\u%04x", c).utf8) }
        while i < s.count {
            let c = s[i]
            switch c {
            case 34, 92: out += [92, c]; i += 1
            case 10: out += [92, 110]; i += 1
            case 13: out += [92, 114]; i += 1
            case 9: out += [92, 116]; i += 1
            case 0..<0x20: out += hex(c); i += 1
            case 0x20..<0x80: out.append(c); i += 1
            default:
                let len = s.withUnsafeBytes { JSONWriter.validUTF8Length($0, i) }
                if len > 0 { out += s[i..<(i + len)]; i += len } else { out += hex(c); i += 1 }
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
