import ConfigKit
import XCTest

final class ConfigReaderDurationTests: XCTestCase {
    /// Durations take s/m/h/d suffixes; out-of-range and malformed ones are reported with their line.
    func testDurationsAndTheirErrors() throws {
        let doc = try YAMLDocument.parse("a: 30\nb: 5m\nc: 2h\nd: 1d\ne: soon\nf: 90000\n", file: "t.yaml")!
        var r = ConfigReader()
        let t = r.table(doc, allowed: ["a", "b", "c", "d", "e", "f"])
        XCTAssertEqual(r.seconds(t["a"]), 30)
        XCTAssertEqual(r.seconds(t["b"]), 300)
        XCTAssertEqual(r.seconds(t["c"]), 7200)
        XCTAssertEqual(r.seconds(t["d"]), 86400)
        XCTAssertNil(r.seconds(t["e"]))
        XCTAssertNil(r.seconds(t["f"], in: 1...86400))
        XCTAssertEqual(r.issues.map(\.line), [5, 6])
        XCTAssertTrue(r.issues[0].description.hasPrefix("t.yaml:5:"))
    }
}
