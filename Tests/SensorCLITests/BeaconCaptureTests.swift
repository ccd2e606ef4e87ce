import Foundation
import TestSupport
import XCTest

/// Beaconing through the real binary on crafted and merged captures: HTTP polling inside one keep-alive
/// connection (the HTTP analyser's requests reach the host stage), and a real beacon capture merged with
/// an older unrelated one (a pair's observation span is its own).
final class BeaconCaptureTests: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws { dir = try TestSupport.temporaryDirectory("beacon-capture") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }
    func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

    func beacons(_ file: String) throws -> [[String: Any]] {
        let r = try TestSupport.sensor(["replay", file])
        XCTAssertEqual(r.status, 0, r.stderr)
        return try TestSupport.events(r).filter { TestSupport.value($0, "rule.category") as? String == "beaconing" }
    }

    /// One TCP connection from 10.0.0.5 to the internal server 10.0.9.9:8080 carrying `requests` GETs,
    /// each answered, `every` seconds apart.
    func keepAlive(requests: Int, every: UInt32) -> PcapFileWriter {
        typealias S = SyntheticTraffic
        var w = PcapFileWriter()
        let c: [UInt8] = [10, 0, 0, 5], srv: [UInt8] = [10, 0, 9, 9]
        let sport: UInt16 = 41234, dport: UInt16 = 8080
        var cseq: UInt32 = 1000, sseq: UInt32 = 9000
        func send(_ fromClient: Bool, _ t: UInt32, _ us: UInt32, _ flags: UInt8, _ payload: [UInt8] = []) {
            let seg = fromClient ? S.tcp(sport: sport, dport: dport, seq: cseq, ack: sseq, flags: flags, payload: payload)
                : S.tcp(sport: dport, dport: sport, seq: sseq, ack: cseq, flags: flags, payload: payload)
            w.record(seconds: t, micros: us, bytes: S.frame(src: fromClient ? c : srv, dst: fromClient ? srv : c, proto: 6, l4: seg))
            let n = UInt32(payload.count) + (flags & 0x03 != 0 ? 1 : 0)
            if fromClient { cseq &+= n } else { sseq &+= n }
        }
        let t0 = S.epoch
        send(true, t0, 0, 0x02)
        send(false, t0, 1000, 0x12)
        send(true, t0, 2000, 0x10)
        for i in 0..<requests {
            let t = t0 + UInt32(i) * every + 1
            let req = Array("GET /tasks?id=\(i % 10) HTTP/1.1\r\nHost: intranet-agent\r\nUser-Agent: agent/1.0\r\n\r\n".utf8)
            let body = Array("{\"task\":null}".utf8)
            let resp = Array("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\n\r\n".utf8) + body
            send(true, t, 0, 0x18, req)
            send(false, t, 3000, 0x18, resp)
            send(true, t, 4000, 0x10)
        }
        let end = t0 + UInt32(requests) * every
        send(true, end, 0, 0x11)
        send(false, end, 1000, 0x11)
        send(true, end, 2000, 0x10)
        return w
    }

    /// An HTTP agent polling an internal server every minute inside one keep-alive connection: one flow,
    /// twenty requests, each a start of the beacon (before, one flow was one start and nothing was seen).
    func testKeepAliveHTTPPollingIsABeacon() throws {
        let file = path("keepalive.pcap")
        try keepAlive(requests: 20, every: 60).write(to: file)
        let found = try beacons(file)
        let destination = found.filter { TestSupport.value($0, "rule.id") as? String == "beaconing.destination" }
        XCTAssertEqual(destination.count, 1, "\(found)")
        guard let a = destination.first else { return }
        XCTAssertEqual(TestSupport.value(a, "destination.ip") as? String, "10.0.9.9")
        XCTAssertEqual(TestSupport.value(a, "destination.port") as? Int, 8080)
        // Scored every minute of packet time: the alert comes once enough requests are in, each one a start.
        let n = try XCTUnwrap(TestSupport.value(a, "spanwatch.beaconing.connections") as? Int)
        XCTAssertTrue((5...20).contains(n), "\(n)")
        XCTAssertEqual(TestSupport.value(a, "spanwatch.beaconing.distinct_starts") as? Int, n)
        XCTAssertEqual(TestSupport.value(a, "spanwatch.beaconing.protocol") as? String, "http")
        XCTAssertEqual(TestSupport.value(a, "spanwatch.beaconing.interval_median") as? Double ?? 0, 60, accuracy: 0.01)
        // Three requests in one connection: too few starts, nothing.
        let short = path("short.pcap")
        try keepAlive(requests: 3, every: 60).write(to: short)
        XCTAssertTrue(try beacons(short).isEmpty)
    }

    /// `hunt` over a directory and mergecap put unrelated captures into one replay. The test-cc beacon
    /// merged with a benign capture ten years older is still reported, with about the same score.
    func testMergedOlderCaptureKeepsTheBeacon() throws {
        try XCTSkipUnless(TestSupport.hasTool("mergecap"), "mergecap is installed by scripts/install-deps.sh test")
        let beacon = TestSupport.data("pcaps/beacon/test-cc-capture-2.pcap")
        let merged = path("merged.pcap")
        let r = try TestSupport.run("mergecap", ["-F", "pcap", "-w", merged, beacon, TestSupport.data("pcaps/benign/bro.org.pcap")])
        XCTAssertEqual(r.status, 0, r.stderr)
        let alone = try beacons(beacon), together = try beacons(merged)
        XCTAssertEqual(alone.count, 1, "\(alone)")
        XCTAssertEqual(together.count, 1, "\(together)")
        guard let a = alone.first, let b = together.first else { return }
        for key in ["source.ip", "destination.ip", "destination.port", "rule.id"] {
            XCTAssertEqual("\(TestSupport.value(a, key) ?? "-")", "\(TestSupport.value(b, key) ?? "-")", key)
        }
        let sa = try XCTUnwrap(TestSupport.value(a, "spanwatch.beaconing.score") as? Double)
        let sb = try XCTUnwrap(TestSupport.value(b, "spanwatch.beaconing.score") as? Double)
        // Scoring rounds fall at other packet times in the merged replay (its clock starts in 2014), so the
        // alert may come a round earlier or later: the score differs by at most that round's starts.
        XCTAssertEqual(sa, sb, accuracy: 0.05)
        XCTAssertGreaterThanOrEqual(sb, 0.8)
    }
}
