import Foundation
@testable import Report
import XCTest

final class ReportBuilderTests: XCTestCase {
    func testEscapeCoversTextAndBothAttributeQuotes() {
        XCTAssertEqual(HTML.escape(#"<a href="x" title='y'>&</a>"#), "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;")
        XCTAssertEqual(HTML.escape("a\u{0}b\u{1B}c\td\ne"), "a\u{FFFD}b\u{FFFD}c\td\ne")
        XCTAssertEqual(HTML.escape("ünïcødé ✓"), "ünïcødé ✓")
    }

    /// Times from events are hostile too: any fraction length, offsets, junk — never a trap.
    func testEventTimesParseWithoutTrapping() throws {
        let t = try XCTUnwrap(EventTime.parse("2024-02-13T14:34:40.856323Z"))
        XCTAssertEqual(EventTime.format(t), "2024-02-13 14:34:40.856323 UTC")
        XCTAssertEqual(EventTime.parse("2024-02-13T14:34:40.8563231234567Z"), t)
        XCTAssertEqual(EventTime.parse("2024-02-13T14:34:40.8Z"), t - 56323)
        XCTAssertEqual(EventTime.parse("2024-02-13T15:34:40.856323+01:00"), t)
        XCTAssertEqual(EventTime.format(EventTime.parse("1969-12-31T23:59:59.5Z")!), "1969-12-31 23:59:59.500000 UTC")
        for junk in ["", "2024", "2024-13-01T00:00:00Z", "2024-02-13T24:00:00Z", "abcd-ef-ghTij:kl:mnZ", "2024-02-13T14:34:40.Z"] {
            _ = EventTime.parse(junk)
        }
        XCTAssertNil(EventTime.parse("2024-13-01T00:00:00Z"))
    }

    func page(_ lines: [String]) -> String {
        let b = ReportBuilder()
        Data(lines.joined(separator: "\n").utf8).withUnsafeBytes { b.add(ndjson: $0) }
        return b.render(provenance: ReportProvenance(reportVersion: "test"))
    }

    func count(_ needle: String, in s: String) -> Int { s.components(separatedBy: needle).count - 1 }

    /// The beacon chart's points are the pair's established flows with payload between the alert's first
    /// and last start; others (failed attempts, other pairs, outside the window) are not.
    func testBeaconPointsComeFromThePairsFlows() {
        func flow(_ start: String, src: String = "10.0.0.1", port: Int = 443, established: Bool = true, payload: Int = 100) -> String {
            #"{"@timestamp":"\#(start)","event":{"kind":"event","dataset":"spanwatch.flow","start":"\#(start)"},"network":{"transport":"tcp","bytes":500},"source":{"ip":"\#(src)"},"destination":{"ip":"192.0.2.9","port":\#(port)},"spanwatch":{"flow":{"established":\#(established),"orig_payload_bytes":\#(payload)}}}"#
        }
        var lines = (0..<6).map { flow("2024-01-01T00:00:\(String(format: "%02d", 10 + $0 * 5)).000000Z") }
        lines.append(flow("2024-01-01T00:00:12.000000Z", established: false))
        lines.append(flow("2024-01-01T00:00:13.000000Z", payload: 0))
        lines.append(flow("2024-01-01T00:00:14.000000Z", src: "10.0.0.2"))
        lines.append(flow("2024-01-01T00:00:16.000000Z", port: 8443))
        lines.append(flow("2024-01-01T00:00:50.000000Z"))
        lines.append(#"{"@timestamp":"2024-01-01T00:01:00Z","event":{"kind":"alert","dataset":"spanwatch.alert","severity":2},"rule":{"id":"beaconing.destination","category":"beaconing"},"source":{"ip":"10.0.0.1"},"destination":{"ip":"192.0.2.9","port":443},"network":{"transport":"tcp"},"spanwatch":{"beaconing":{"pair":{"type":"source_destination_port","text":"x"},"port":443,"transport":"tcp","connections":6,"first_start":"2024-01-01T00:00:10Z","last_start":"2024-01-01T00:00:35Z"}}}"#)
        let html = page(lines)
        XCTAssertEqual(count("<circle class=\"conn", in: html), 6)
        XCTAssertEqual(count("<article class=\"card", in: html), 1)
    }

    /// A→B then B→C later is a chain; B→C before A→B is not.
    func testLateralChainNeedsTimeOrder() {
        func alert(_ t: String, _ s: String, _ d: String) -> String {
            #"{"@timestamp":"\#(t)","event":{"kind":"alert","dataset":"spanwatch.alert","severity":3},"rule":{"id":"lateral_movement.admin_share","category":"lateral_movement"},"source":{"ip":"\#(s)"},"destination":{"ip":"\#(d)","port":445},"spanwatch":{"lateral_movement":{"targets":["\#(d)"]}}}"#
        }
        let chained = page([alert("2024-01-01T00:00:00Z", "10.0.0.1", "10.0.0.2"), alert("2024-01-01T01:00:00Z", "10.0.0.2", "10.0.0.3")])
        XCTAssertEqual(count("class=\"edge chain\"", in: chained), 2)
        XCTAssertEqual(count("<g class=\"node\"", in: chained), 3)
        let reversed = page([alert("2024-01-01T01:00:00Z", "10.0.0.1", "10.0.0.2"), alert("2024-01-01T00:00:00Z", "10.0.0.2", "10.0.0.3")])
        XCTAssertEqual(count("class=\"edge chain\"", in: reversed), 0)
        XCTAssertEqual(count("class=\"edge\"", in: reversed), 2)
    }

    /// Lines that are not JSON objects are counted in the summary, not fatal.
    func testJunkLinesAreCounted() {
        let html = page(["not json", "[1,2]", "{\"event\":{\"kind\":\"event\",\"dataset\":\"spanwatch.dns\"}}", "   "])
        XCTAssertTrue(html.contains("report: lines that are not JSON objects</th><td>2</td>"), html)
    }
}
