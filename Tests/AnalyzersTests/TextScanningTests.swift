import XCTest
@testable import Analyzers

/// The byte-level helpers that turn wire text into strings and find head boundaries: each fast path
/// must give exactly what the general one gives.
final class TextScanningTests: XCTestCase {
    func utf16(_ units: [UInt16], limit: Int = 512) -> String {
        let bytes = units.flatMap { [UInt8($0 & 0xff), UInt8($0 >> 8)] }
        return bytes.withUnsafeBytes { utf16LE($0, limit: limit) }
    }

    func testUTF16LEASCIIAndGeneralPathsAgree() {
        XCTAssertEqual(utf16(Array("\\\\srv\\ADMIN$".utf16) + [0, 0]), "\\\\srv\\ADMIN$")
        XCTAssertEqual(utf16([0, 0]), "")
        XCTAssertEqual(utf16([]), "")
        // An interior NUL stays, as UTF-16 decoding keeps it.
        XCTAssertEqual(utf16([0x61, 0, 0x62, 0]), "a\u{0}b")
        // Not ASCII: transcoded, an unpaired surrogate replaced.
        XCTAssertEqual(utf16(Array("café.txt".utf16)), "café.txt")
        XCTAssertEqual(utf16([0x61, 0xD800, 0x62]), "a\u{FFFD}b")
        XCTAssertEqual(utf16(Array("日本".utf16) + [0]), "日本")
        // The limit counts units before trailing NULs are dropped; an odd trailing byte is ignored.
        XCTAssertEqual(utf16(Array("abcdef".utf16), limit: 3), "abc")
        XCTAssertEqual(([0x61, 0, 0x62] as [UInt8]).withUnsafeBytes { utf16LE($0) }, "a")
        XCTAssertEqual(utf16(Array("ab".utf16) + [0x80]), "ab\u{80}")
    }

    func testHeadEndAndLines() {
        func end(_ s: String) -> Int? { Array(s.utf8).withUnsafeBytes { HTTPParser.headEnd($0) } }
        XCTAssertEqual(end("GET / HTTP/1.1\r\nHost: a\r\n\r\nbody"), 27)
        XCTAssertEqual(end("GET / HTTP/1.1\nHost: a\n\nbody"), 24)
        XCTAssertNil(end("GET / HTTP/1.1\r\nHost: a\r\n"))
        XCTAssertNil(end(""))
        XCTAssertEqual(end("\n\n"), 2)
        var lines: [String] = []
        Array("GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\nignored\r\n".utf8).withUnsafeBytes { b in
            HTTPParser.lines(b) { lines.append(String(decoding: $0, as: UTF8.self)); return true }
        }
        XCTAssertEqual(lines, ["GET / HTTP/1.1", "Host: a", "X: y"])
        let h = Array("Content-Type:  text/html \t".utf8).withUnsafeBytes { b in
            HTTPParser.header(b).map { (String(decoding: $0.0, as: UTF8.self), String(decoding: $0.1, as: UTF8.self)) }
        }
        XCTAssertEqual(h?.0, "Content-Type")
        XCTAssertEqual(h?.1, "text/html")
        XCTAssertNil(Array(":x".utf8).withUnsafeBytes { HTTPParser.header($0) })
    }
}
