import XCTest
@testable import ConfigKit

final class ConfigReaderTests: XCTestCase {
    func testTypedReadsCollectEveryIssueWithPosition() throws {
        let text = """
        a: 12
        b: twelve
        c: 90s
        d: 2h
        e: maybe
        f: [x, y]
        g: {nested: 1}
        """
        let root = try XCTUnwrap(try YAMLDocument.parse(text, file: "t.yaml"))
        var r = ConfigReader()
        let t = r.table(root, allowed: ["a", "b", "c", "d", "e", "f"])
        XCTAssertEqual(r.int(t["a"], in: 0...100), 12)
        XCTAssertNil(r.int(t["b"]))
        XCTAssertEqual(r.seconds(t["c"]), 90)
        XCTAssertEqual(r.seconds(t["d"]), 7200)
        XCTAssertNil(r.bool(t["e"]))
        XCTAssertEqual(r.stringList(t["f"]), ["x", "y"])
        XCTAssertNil(r.int(t["a"], in: 0...10))
        XCTAssertEqual(r.issues.map(\.line), [7, 2, 5, 1])
        XCTAssertTrue(r.issues[0].message.contains("unknown key 'g'"))
        XCTAssertEqual(ConfigIssues(r.issues).issues.map(\.line), [1, 2, 5, 7], "reported in file order")
        XCTAssertTrue(r.issues[1].description.hasPrefix("t.yaml:2:"))
    }

    func testUnreadableFileAndSyntaxError() {
        XCTAssertThrowsError(try YAMLDocument.load(path: "/nonexistent/x.yaml")) { e in
            XCTAssertTrue((e as! ConfigIssue).message.contains("cannot read"))
        }
        XCTAssertThrowsError(try YAMLDocument.parse("a: [1,\n b", file: "s.yaml")) { e in
            let i = e as! ConfigIssue
            XCTAssertEqual(i.file, "s.yaml")
            XCTAssertGreaterThan(i.line, 0)
        }
    }
}
