@testable import Analyzers
import XCTest

/// The HTTP body reader over every framing, fed whole and one byte at a time, and the streaming file
/// digests against known values.
final class HTTPBodyReaderTests: XCTestCase {
    /// Feeds `wire` in pieces of `piece` bytes; returns the entity bytes and where the body ended.
    func read(_ framing: HTTPBodyFraming, _ wire: String, piece: Int) -> (String, HTTPBodyReader.Progress) {
        var r = HTTPBodyReader(framing)
        var entity: [UInt8] = []
        let bytes = Array(wire.utf8)
        var at = 0
        var last = HTTPBodyReader.Progress.more
        while at < bytes.count {
            let end = min(bytes.count, at + piece)
            last = bytes[at..<end].withUnsafeBytes { r.consume($0) { entity.append(contentsOf: $0) } }
            if case .complete(let used) = last { return (String(decoding: entity, as: UTF8.self), .complete(consumed: at + used)) }
            if last == .malformed { break }
            at = end
        }
        return (String(decoding: entity, as: UTF8.self), last)
    }

    func testChunkedWithExtensionsAndTrailersWholeAndBytewise() {
        let wire = "5;name=v\r\nhello\r\n0B\r\n, wonderful\r\n1 \r\n!\r\n0\r\nX-Checksum: 1\r\nY: 2\r\n\r\nGET /next"
        for piece in [wire.utf8.count, 1, 3, 7] {
            let (entity, progress) = read(.chunked, wire, piece: piece)
            XCTAssertEqual(entity, "hello, wonderful!", "piece \(piece)")
            XCTAssertEqual(progress, .complete(consumed: wire.utf8.count - "GET /next".utf8.count), "piece \(piece)")
        }
    }

    func testLengthAndUntilClose() {
        XCTAssertEqual(read(.length(5), "helloHTTP/1.1", piece: 2).0, "hello")
        XCTAssertEqual(read(.length(5), "helloHTTP/1.1", piece: 2).1, .complete(consumed: 5))
        XCTAssertEqual(read(.length(10), "hello", piece: 1).1, .more)
        XCTAssertEqual(read(.untilClose, "all of it", piece: 4).0, "all of it")
        XCTAssertEqual(read(.none, "HTTP/1.1 200", piece: 4).1, .complete(consumed: 0))
    }

    func testHostileChunkFramingIsMalformedNotATrap() {
        // A size past 2^60, a missing size, a non-hex size, data not followed by CRLF, an endless size line.
        for wire in ["FFFFFFFFFFFFFFFFFF\r\n", "\r\nabc", "zz\r\n", "3\r\nabcX\r\n", String(repeating: "0", count: 5000)] {
            XCTAssertEqual(read(.chunked, wire, piece: 1).1, .malformed, wire.prefix(20).description)
            XCTAssertEqual(read(.chunked, wire, piece: 4096).1, .malformed, wire.prefix(20).description)
        }
    }

    func testParserReportsFramingFromHeads() throws {
        func request(_ s: String) -> HTTPRequestHead? {
            Array(s.utf8).withUnsafeBytes { if case .parsed(let r) = HTTPParser.request($0) { return r } else { return nil } }
        }
        func response(_ s: String) -> HTTPResponseHead? {
            Array(s.utf8).withUnsafeBytes { if case .parsed(let r) = HTTPParser.response($0) { return r } else { return nil } }
        }
        let post = try XCTUnwrap(request("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\n\r\nbody"))
        XCTAssertEqual(post.bodyFraming, .chunked)
        XCTAssertEqual(post.headLength, "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n".utf8.count)
        XCTAssertEqual(try XCTUnwrap(request("GET / HTTP/1.1\r\n\r\n")).bodyFraming, .none)
        XCTAssertEqual(try XCTUnwrap(request("PUT / HTTP/1.1\r\nContent-Length: 7\r\n\r\n")).bodyFraming, .length(7))
        let ok = try XCTUnwrap(response("HTTP/1.1 200 OK\r\nContent-Length: 9\r\nContent-Encoding: gzip\r\n\r\n"))
        XCTAssertEqual(ok.bodyFraming(answeringHead: false), .length(9))
        XCTAssertEqual(ok.bodyFraming(answeringHead: true), .none)
        XCTAssertEqual(ok.contentEncoding, Array("gzip".utf8))
        XCTAssertEqual(try XCTUnwrap(response("HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n")).bodyFraming(answeringHead: false), .none)
        XCTAssertEqual(try XCTUnwrap(response("HTTP/1.0 200 OK\r\n\r\n")).bodyFraming(answeringHead: false), .untilClose)
        XCTAssertEqual(try XCTUnwrap(response("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, identity\r\n\r\n")).bodyFraming(answeringHead: false), .untilClose)
    }

    func testStreamingDigestsAndMagic() {
        var h = FileHasher(algorithms: .all)
        let png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + Array(repeating: 7, count: 100)
        for i in stride(from: 0, to: png.count, by: 3) { png[i..<min(png.count, i + 3)].withUnsafeBytes { h.update($0) } }
        let d = h.finish()
        XCTAssertEqual(d.size, 108)
        XCTAssertEqual(d.mimeType.map { "\($0)" }, "image/png")
        XCTAssertEqual(d.sha256, Digest.hex(Digest.sha256(png)))
        XCTAssertEqual(d.md5, Digest.hex(Digest.md5(png)))
        XCTAssertEqual(d.sha1, Digest.hex(Digest.sha1(png)))
        var abc = FileHasher(algorithms: .all)
        Array("abc".utf8).withUnsafeBytes { abc.update($0) }
        XCTAssertEqual(abc.finish().sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertNil(abc.finish().mimeType)
    }
}
