import Foundation
import TestSupport
import XCTest

/// HTTP transactions and files through the real binary: every request of the shared captures as tshark
/// sees it, every object tshark exports hashed alike, and a crafted keep-alive connection (pipelining,
/// 100-continue, HEAD, 304, chunked bodies) whose 20th request a URL indicator matches.
final class HTTPTransactionCLITests: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws { dir = try TestSupport.temporaryDirectory("http-tx") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }
    func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

    /// Every shared capture in which tshark sees an HTTP request.
    static let captures = ["beacon/cryptowall4_c2.pcapng", "beacon/emotet.pcap", "beacon/malware.pcap", "beacon/wmi_to_powershell_empire.pcap",
                           "benign/bro.org.pcap", "benign/http_espn.pcapng", "benign/http_google.pcapng", "benign/normal_share_traversal.pcap",
                           "benign/wikipedia.pcap", "c2-nonstd-port/http_large_req_8001.pcap", "c2-nonstd-port/metasploit-ms017-010-win7x64.pcap",
                           "lateral/LM_rdp_sharprdp.pcapng", "lateral/winrm_psremote_05-16.pcap"]

    func dataset(_ events: [[String: Any]], _ name: String) -> [[String: Any]] {
        events.filter { TestSupport.value($0, "event.dataset") as? String == name }
    }

    /// tshark's Host header as our `url.domain`: without the port (unless an IPv6 literal), lower case.
    static func domain(_ host: Substring) -> String {
        var h = host
        if !h.hasPrefix("["), let colon = h.lastIndex(of: ":") { h = h[..<colon] }
        return h.lowercased()
    }

    /// HTTP over TCP: SSDP's `M-SEARCH * HTTP/1.1` multicast over UDP, which tshark also lists as
    /// `http.request`, is not HTTP transport and is not parsed.
    func testRequestsPerCommunityIDAgreeWithTshark() throws {
        let schema = try EventSchema.load()
        var total = 0
        for capture in Self.captures {
            let file = TestSupport.data("pcaps/" + capture)
            let t = try TestSupport.run("tshark", ["-r", file, "--enable-protocol", "communityid", "-Y", "http.request and tcp", "-T", "fields",
                                                   "-E", "occurrence=f", "-e", "communityid", "-e", "http.request.method", "-e", "http.host",
                                                   "-e", "http.request.uri"])
            XCTAssertEqual(t.status, 0, t.stderr)
            var expected: [String: Int] = [:]
            for row in t.lines {
                let c = row.split(separator: "\t", omittingEmptySubsequences: false)
                guard c.count == 4 else { continue }
                expected["\(c[0]) \(c[1]) \(Self.domain(c[2])) \(c[3])", default: 0] += 1
            }
            let r = try TestSupport.sensor(["replay", "--no-flow-events", file])
            XCTAssertEqual(r.status, 0, r.stderr)
            let events = try TestSupport.events(r)
            var seen: [String: Int] = [:]
            for e in dataset(events, "spanwatch.http") {
                XCTAssertEqual(schema.problems(e), [], capture)
                guard let method = TestSupport.value(e, "http.request.method") as? String else { continue }
                let cid = TestSupport.value(e, "network.community_id") as? String ?? "?"
                let host = TestSupport.value(e, "url.domain") as? String ?? ""
                let uri = TestSupport.value(e, "url.original") as? String ?? "?"
                seen["\(cid) \(method) \(host) \(uri)", default: 0] += 1
            }
            XCTAssertEqual(Set(seen.keys), Set(expected.keys), capture)
            XCTAssertEqual(seen.values.reduce(0, +), expected.values.reduce(0, +), capture)
            for e in dataset(events, "spanwatch.file") { XCTAssertEqual(schema.problems(e), [], capture) }
            total += expected.values.reduce(0, +)
        }
        XCTAssertGreaterThan(total, 300)
    }

    /// Objects tshark exports that are no HTTP body: in malware.pcap the answer to `GET /` is 44 bytes of
    /// binary C2 data without a status line, which tshark exports as the object and the sensor does not
    /// parse as HTTP.
    static let notHTTPBodies: Set<String> = ["beacon/malware.pcap %2f"]

    /// Bodies are hashed as transferred, chunk framing removed and Content-Encoding kept: what tshark
    /// exports with `http.decompress_body` off.
    func testFileHashesEqualTsharkExportedObjects() throws {
        var compared = 0
        for capture in Self.captures {
            let file = TestSupport.data("pcaps/" + capture)
            let out = dir.appendingPathComponent(capture.replacingOccurrences(of: "/", with: "_"))
            try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
            let t = try TestSupport.run("tshark", ["-r", file, "-o", "http.decompress_body:FALSE", "-q", "--export-objects", "http," + out.path])
            XCTAssertEqual(t.status, 0, t.stderr)
            let r = try TestSupport.sensor(["replay", "--no-flow-events", file])
            XCTAssertEqual(r.status, 0, r.stderr)
            let ours = Set(dataset(try TestSupport.events(r), "spanwatch.file").compactMap { TestSupport.value($0, "file.hash.sha256") as? String })
            for name in try FileManager.default.contentsOfDirectory(atPath: out.path) {
                let p = out.appendingPathComponent(name).path
                let size = try FileManager.default.attributesOfItem(atPath: p)[.size] as? Int ?? 0
                guard size > 0 else { continue }  // an empty body is no file
                if Self.notHTTPBodies.contains("\(capture) \(name)") { continue }
                let sum = String(try TestSupport.run("sha256sum", [p]).stdoutText.prefix(64))
                XCTAssertTrue(ours.contains(sum), "\(capture): \(name) (\(size) bytes, \(sum)) not among our files")
                compared += 1
            }
        }
        XCTAssertGreaterThan(compared, 100)
    }

    /// `files.hashes` / `--file-hashes` choose the digests: SHA-256 alone by default, all three on request,
    /// each equal to the digest of what tshark exports; an unknown name is refused.
    func testFileHashesFollowTheSetting() throws {
        let capture = TestSupport.data("pcaps/benign/bro.org.pcap")
        let out = dir.appendingPathComponent("objects")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        let t = try TestSupport.run("tshark", ["-r", capture, "-o", "http.decompress_body:FALSE", "-q", "--export-objects", "http," + out.path])
        XCTAssertEqual(t.status, 0, t.stderr)
        var exported: [String: (md5: String, sha1: String)] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: out.path) {
            let p = out.appendingPathComponent(name).path
            guard (try FileManager.default.attributesOfItem(atPath: p)[.size] as? Int ?? 0) > 0 else { continue }
            func sum(_ tool: String, _ n: Int) throws -> String { String(try TestSupport.run(tool, [p]).stdoutText.prefix(n)) }
            exported[try sum("sha256sum", 64)] = (try sum("md5sum", 32), try sum("sha1sum", 40))
        }
        XCTAssertGreaterThan(exported.count, 3)
        func files(_ args: [String]) throws -> [[String: Any]] {
            let r = try TestSupport.sensor(["replay", "--no-flow-events"] + args + [capture])
            XCTAssertEqual(r.status, 0, r.stderr)
            return dataset(try TestSupport.events(r), "spanwatch.file")
        }
        let plain = try files([])
        XCTAssertFalse(plain.isEmpty)
        for f in plain {
            XCTAssertNotNil(TestSupport.value(f, "file.hash.sha256"))
            XCTAssertNil(TestSupport.value(f, "file.hash.md5"))
            XCTAssertNil(TestSupport.value(f, "file.hash.sha1"))
        }
        var matched: Set<String> = []
        for f in try files(["--file-hashes", "md5,SHA-1,sha256"]) {
            guard let sha256 = TestSupport.value(f, "file.hash.sha256") as? String, let e = exported[sha256] else { continue }
            XCTAssertEqual(TestSupport.value(f, "file.hash.md5") as? String, e.md5)
            XCTAssertEqual(TestSupport.value(f, "file.hash.sha1") as? String, e.sha1)
            matched.insert(sha256)
        }
        XCTAssertEqual(matched, Set(exported.keys))
        let sha1Only = path("sha1.yaml")
        try "files:\n  hashes: [sha1]\n".write(toFile: sha1Only, atomically: true, encoding: .utf8)
        let viaConfig = try files(["--config", sha1Only])
        XCTAssertEqual(viaConfig.count, plain.count)
        XCTAssertTrue(viaConfig.allSatisfy { TestSupport.value($0, "file.hash.sha1") != nil && TestSupport.value($0, "file.hash.sha256") == nil })
        let bad = path("bad.yaml")
        try "files:\n  hashes: [crc32]\n".write(toFile: bad, atomically: true, encoding: .utf8)
        XCTAssertNotEqual(try TestSupport.sensor(["replay", "--config", bad, capture]).status, 0)
        XCTAssertNotEqual(try TestSupport.sensor(["replay", "--file-hashes", "md4", capture]).status, 0)
    }

    // MARK: A crafted keep-alive connection

    static let client: UInt32 = 0x0A00_0001, server: UInt32 = 0x0A00_0002

    struct Connection {
        var b = TCPCaptureBuilder(expectedPackets: 200, payloadLimit: 2048)
        var cseq: UInt32 = 1000, sseq: UInt32 = 5000

        init() {
            b.segment(src: client, dst: server, sport: 40000, dport: 80, seq: cseq - 1, flags: TCPCaptureBuilder.syn, payload: [])
            b.segment(src: server, dst: client, sport: 80, dport: 40000, seq: sseq - 1, ack: cseq, flags: TCPCaptureBuilder.syn | TCPCaptureBuilder.ack, payload: [])
            b.segment(src: client, dst: server, sport: 40000, dport: 80, seq: cseq, ack: sseq, flags: TCPCaptureBuilder.ack, payload: [])
        }

        mutating func send(_ s: String) { send(Array(s.utf8)) }
        mutating func send(_ p: [UInt8]) {
            b.segment(src: client, dst: server, sport: 40000, dport: 80, seq: cseq, ack: sseq, flags: TCPCaptureBuilder.psh | TCPCaptureBuilder.ack, payload: p)
            cseq &+= UInt32(p.count)
        }
        mutating func reply(_ s: String) { reply(Array(s.utf8)) }
        mutating func reply(_ p: [UInt8]) {
            b.segment(src: server, dst: client, sport: 80, dport: 40000, seq: sseq, ack: cseq, flags: TCPCaptureBuilder.psh | TCPCaptureBuilder.ack, payload: p)
            sseq &+= UInt32(p.count)
        }
        mutating func close() {
            b.segment(src: client, dst: server, sport: 40000, dport: 80, seq: cseq, ack: sseq, flags: 0x11, payload: [])
            b.segment(src: server, dst: client, sport: 80, dport: 40000, seq: sseq, ack: cseq &+ 1, flags: 0x11, payload: [])
        }
    }

    static func get(_ uri: String, method: String = "GET") -> String { "\(method) \(uri) HTTP/1.1\r\nHost: shop.example:8080\r\nUser-Agent: t/1\r\n\r\n" }

    /// 25 requests on one connection; returns the capture and the chunked body's bytes.
    func keepAliveCapture() throws -> (String, String) {
        var c = Connection()
        c.send(Self.get("/item/1"))
        c.reply("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
        // 100-continue: the body follows the interim response; the final response is chunked, split mid-chunk.
        c.send("POST /upload HTTP/1.1\r\nHost: shop.example:8080\r\nExpect: 100-continue\r\nContent-Length: 11\r\n\r\n")
        c.reply("HTTP/1.1 100 Continue\r\n\r\n")
        c.send("upload-data")
        let chunked = "first part, second part"
        c.reply("HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\nb;ext=1\r\nfirst par")
        c.reply("t,\r\n0C\r\n second part\r\n0\r\nX-Trailer: y\r\n\r\n")
        // HEAD and 304: a Content-Length but no body.
        c.send(Self.get("/item/3", method: "HEAD"))
        c.reply("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        c.send(Self.get("/item/4"))
        c.reply("HTTP/1.1 304 Not Modified\r\nContent-Length: 1000\r\n\r\n")
        // Four pipelined requests in one segment, their responses in one segment.
        c.send((5...8).map { Self.get("/item/\($0)") }.joined())
        c.reply((5...8).map { "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n\($0)\($0)" }.joined())
        for i in 9...25 {
            c.send(Self.get(i == 20 ? "/item/20?x=1" : "/item/\(i)"))
            let body = "r\(i)"
            c.reply("HTTP/1.1 200 OK\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
        }
        c.close()
        let p = path("keepalive.pcap")
        try c.b.write(to: p)
        return (p, chunked)
    }

    func testEveryRequestOfAKeepAliveConnection() throws {
        let (capture, chunked) = try keepAliveCapture()
        let schema = try EventSchema.load()
        let r = try TestSupport.sensor(["replay", capture])
        XCTAssertEqual(r.status, 0, r.stderr)
        let events = try TestSupport.events(r)
        let tx = dataset(events, "spanwatch.http")
        XCTAssertEqual(tx.count, 25, r.stdoutText)
        for e in tx { XCTAssertEqual(schema.problems(e), [], "\(e)") }
        XCTAssertEqual(tx.compactMap { TestSupport.value($0, "url.original") as? String },
                       (1...25).map { $0 == 2 ? "/upload" : ($0 == 20 ? "/item/20?x=1" : "/item/\($0)") })
        XCTAssertEqual(tx.compactMap { TestSupport.value($0, "http.response.status_code") as? Int },
                       [200, 201, 200, 304] + Array(repeating: 200, count: 21))
        XCTAssertTrue(tx.allSatisfy { TestSupport.value($0, "spanwatch.http.status") as? String == "answered" })
        XCTAssertEqual(TestSupport.value(tx[19], "url.full") as? String, "http://shop.example:8080/item/20?x=1")
        XCTAssertEqual(TestSupport.value(tx[2], "http.response.body.bytes") as? Int, nil, "HEAD: no body")
        let flow = try XCTUnwrap(dataset(events, "spanwatch.flow").first)
        XCTAssertEqual(TestSupport.value(flow, "spanwatch.http.requests") as? Int, 25)
        XCTAssertEqual(TestSupport.value(flow, "spanwatch.http.responses") as? Int, 26, "the 100 Continue counts as a response")
        XCTAssertEqual(TestSupport.value(flow, "url.original") as? String, "/item/1")
        XCTAssertEqual(Set(tx.compactMap { TestSupport.value($0, "network.community_id") as? String }),
                       [TestSupport.value(flow, "network.community_id") as! String])

        // Files: the upload, the de-chunked body, and the other bodies.
        let files = dataset(events, "spanwatch.file")
        for e in files { XCTAssertEqual(schema.problems(e), [], "\(e)") }
        let chunkedFile = dir.appendingPathComponent("chunked.bin")
        try Data(chunked.utf8).write(to: chunkedFile)
        let sum = String(try TestSupport.run("sha256sum", [chunkedFile.path]).stdoutText.prefix(64))
        let body = try XCTUnwrap(files.first { TestSupport.value($0, "file.hash.sha256") as? String == sum }, "\(files)")
        XCTAssertEqual(TestSupport.value(body, "file.size") as? Int, chunked.utf8.count)
        XCTAssertEqual(TestSupport.value(body, "spanwatch.file.direction") as? String, "download")
        XCTAssertEqual(TestSupport.value(body, "url.full") as? String, "http://shop.example:8080/upload")
        let upload = try XCTUnwrap(files.first { TestSupport.value($0, "spanwatch.file.direction") as? String == "upload" })
        XCTAssertEqual(TestSupport.value(upload, "file.size") as? Int, 11)
        XCTAssertEqual(files.count, 2 + 1 + 4 + 17, "upload, chunked, /item/1, 4 pipelined, 17 more")
        XCTAssertTrue(files.allSatisfy { TestSupport.value($0, "spanwatch.file.incomplete") == nil })

        // The 20th request's URL and the chunked body's hash match in a hunt.
        let feed = path("feed.csv")
        try "type,value\nurl,http://shop.example:8080/item/20?x=1\nsha256,\(sum)\n".write(toFile: feed, atomically: true, encoding: .utf8)
        let h = try TestSupport.sensor(["hunt", "--indicators", feed, capture])
        XCTAssertEqual(h.status, 0, h.stderr)
        let fields = Set(try TestSupport.events(h).compactMap { TestSupport.value($0, "spanwatch.threat_intel.matched.field") as? String })
        XCTAssertEqual(fields, ["url.full", "file.hash.sha256"], h.stdoutText)
    }

    /// A body cut by the end of the capture is reported incomplete; the stats count it.
    func testTruncatedBodyIsMarkedAndCounted() throws {
        var c = Connection()
        c.send(Self.get("/big"))
        c.reply("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
        c.close()
        let p = path("cut.pcap")
        try c.b.write(to: p)
        let r = try TestSupport.sensor(["replay", p])
        XCTAssertEqual(r.status, 0, r.stderr)
        let events = try TestSupport.events(r)
        let file = try XCTUnwrap(dataset(events, "spanwatch.file").first)
        XCTAssertEqual(TestSupport.value(file, "spanwatch.file.incomplete") as? Bool, true)
        XCTAssertEqual(TestSupport.value(file, "file.size") as? Int, 9)
        let stats = try XCTUnwrap(dataset(events, "spanwatch.stats").last, r.stderr)
        XCTAssertEqual(TestSupport.value(stats, "spanwatch.stats.http.truncated_bodies") as? Int, 1)
        XCTAssertEqual(TestSupport.value(stats, "spanwatch.stats.files.incomplete") as? Int, 1)
    }

    /// The per-flow hashing cap stops hashing, marks the file incomplete and is counted; files off
    /// means no `spanwatch.file` events and no file stats.
    func testPerFlowCapAndFilesOff() throws {
        let (capture, _) = try keepAliveCapture()
        let capped = path("capped.yaml")
        try "files:\n  max_bytes_per_flow: 8\n".write(toFile: capped, atomically: true, encoding: .utf8)
        let r = try TestSupport.sensor(["replay", "--config", capped, capture])
        XCTAssertEqual(r.status, 0, r.stderr)
        let events = try TestSupport.events(r)
        let files = dataset(events, "spanwatch.file")
        XCTAssertEqual(files.first.flatMap { TestSupport.value($0, "file.size") as? Int }, 5)
        XCTAssertNil(files.first.flatMap { TestSupport.value($0, "spanwatch.file.incomplete") })
        let upload = try XCTUnwrap(files.first { TestSupport.value($0, "spanwatch.file.direction") as? String == "upload" })
        XCTAssertEqual(TestSupport.value(upload, "file.size") as? Int, 3)
        XCTAssertEqual(TestSupport.value(upload, "spanwatch.file.incomplete") as? Bool, true)
        let stats = try XCTUnwrap(dataset(events, "spanwatch.stats").last)
        XCTAssertGreaterThanOrEqual(TestSupport.value(stats, "spanwatch.stats.files.per_flow_cap") as? Int ?? 0, 1)
        XCTAssertEqual(TestSupport.value(stats, "spanwatch.stats.files.global_cap") as? Int, 0)
        XCTAssertEqual(dataset(events, "spanwatch.http").count, 25)

        let off = path("off.yaml")
        try "files:\n  enabled: false\nhttp:\n  events: false\n".write(toFile: off, atomically: true, encoding: .utf8)
        let o = try TestSupport.sensor(["replay", "--config", off, capture])
        XCTAssertEqual(o.status, 0, o.stderr)
        let quiet = try TestSupport.events(o)
        XCTAssertTrue(dataset(quiet, "spanwatch.file").isEmpty)
        XCTAssertTrue(dataset(quiet, "spanwatch.http").isEmpty)
        XCTAssertNil(TestSupport.value(try XCTUnwrap(dataset(quiet, "spanwatch.stats").last), "spanwatch.stats.files"))
        XCTAssertEqual(TestSupport.value(try XCTUnwrap(dataset(quiet, "spanwatch.flow").first), "spanwatch.http.requests") as? Int, 25)
    }
}
