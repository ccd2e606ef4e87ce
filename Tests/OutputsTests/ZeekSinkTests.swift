import Events
import PacketCore
@testable import Outputs
import XCTest

/// The Zeek output's spec and its in-place event scanner (the logs themselves: SensorCLITests.ZeekOutputTests).
final class ZeekSinkTests: XCTestCase {
    func testSpec() throws {
        XCTAssertEqual(try OutputSpec(parsing: "zeek:/var/log/zeek"), OutputSpec(.zeek(directory: "/var/log/zeek")))
        XCTAssertEqual(try OutputSpec(parsing: " zeek:/x ").description, "zeek:/x")
        XCTAssertThrowsError(try OutputSpec(parsing: "zeek:"))
        XCTAssertThrowsError(try OutputSpec(.zeek(directory: "/nonexistent/zeek")).makeSink())
    }

    func scan(_ text: String, _ paths: [String]) -> [String]? {
        var s = EventFieldScanner(paths: paths)
        var bytes = Array(text.utf8)
        return bytes.withUnsafeMutableBytes { b -> [String]? in
            guard s.scan(UnsafeRawBufferPointer(b)) else { return nil }
            return s.hits.map { "\(paths[$0.slot])=\(String(decoding: b[$0.start..<$0.end], as: UTF8.self))" }
        }
    }

    func testScannerFindsWantedLeavesAndSharesArrayPaths() {
        let e = #"{"@timestamp":"2024-05-01T12:00:00.000001Z","source":{"ip":"10.0.0.1","port":5},"dns":{"answers":[{"data":"a","ttl":1},{"data":"b\"c","ttl":2}]},"x":[1,[2,{"y":true}]],"n":-1.5e3,"z":null}"#
        XCTAssertEqual(scan(e, ["source.ip", "dns.answers.data", "dns.answers.ttl", "x.y", "n", "z", "source"]), [
            #"source.ip="10.0.0.1""#, #"dns.answers.data="a""#, "dns.answers.ttl=1", #"dns.answers.data="b\"c""#, "dns.answers.ttl=2",
            "x.y=true", "n=-1.5e3", "z=null",
        ])
    }

    func testScannerRejectsWhatIsNotOneJSONObject() {
        let nested = String(repeating: "{\"a\":", count: 40) + "1" + String(repeating: "}", count: 40)
        for bad in ["", "[]", "{", #"{"a":1"#, #"{"a":1}x"#, #"{"a":01}"#, #"{"a":"\x"}"#, #"{"a":"\u12"}"#, #"{"a":tru}"#,
                    #"{"a":1,}"#, #"{a:1}"#, "{\"a\":\"\u{1}\"}", #"{"a":-}"#, #"{"a":1.}"#, #"{"a":1e}"#, nested] {
            XCTAssertNil(scan(bad, ["a"]), bad)
        }
        XCTAssertEqual(scan(#" { "a" : [ ] , "b":{} } "#, ["a", "b"]), [])
    }
}

/// Events that lack what a Zeek line needs give no line and no trap (found by the `zeek` fuzz target: a DNS
/// event without `destination.ip` was force-unwrapped).
final class ZeekSinkPartialEventTests: XCTestCase {
    func testEventsWithoutBothAddressesWriteNoConnectionLine() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("zeek-partial-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(at: dir) }
        let sink = try ZeekSink(directory: dir.path)
        let t = Timestamp(seconds: 1_714_564_800)
        let events: [(StaticString, String)] = [
            ("spanwatch.dns", #"{"@timestamp":"2024-05-01T12:00:00.000000Z","source":{"ip":"10.0.0.1"},"dns":{"id":"7"}}"#),
            ("spanwatch.flow", #"{"source":{"ip":5},"destination":{"ip":"10.0.0.2"}}"#),
            ("spanwatch.alert", #"{"rule":{"id":"x.y"},"message":"m","source":{"ip":"10.0.0.1"}}"#),
            ("spanwatch.flow", #"{"source":{"ip":"10.0.0.1"},"destination":{"ip":"10.0.0.2"},"network":{"transport":"udp"}}"#),
        ]
        for (dataset, json) in events {
            var bytes = Array(json.utf8)
            bytes.withUnsafeMutableBytes { sink.write(UnsafeRawBufferPointer($0), metadata: EventMetadata(dataset: dataset, kind: .event, timestamp: t)) }
        }
        try sink.close()
        let day = dir.appendingPathComponent("2024-05-01")
        let files = try FileManager.default.contentsOfDirectory(atPath: day.path).sorted()
        XCTAssertEqual(files, ["conn.12:00:00-13:00:00.log", "notice.12:00:00-13:00:00.log"])
        let conn = try String(contentsOf: day.appendingPathComponent(files[0]), encoding: .utf8)
        XCTAssertEqual(conn.split(separator: "\n").count, 1, "only the flow with both addresses")
        let notice = try String(contentsOf: day.appendingPathComponent(files[1]), encoding: .utf8)
        XCTAssertTrue(notice.contains(#""note":"Sensor::x_y""#), notice)
        XCTAssertFalse(notice.contains("id.orig_h"), "an alert without both addresses has no id.*")
        XCTAssertEqual(sink.statistics.accepted, 4)
    }
}
