import Events
import Foundation
import PacketCore
import XCTest

final class JSONWriterNestingTests: XCTestCase {
    /// Nested objects and arrays get their commas right and the result is valid JSON.
    func testNestedObjectsAndArraysAreValidJSON() throws {
        var w = JSONWriter()
        w.beginObject()
        w.field("a", 1)
        w.beginObject("spanwatch"); w.beginObject("health")
        w.field("check", "capture_loss")
        w.field("loss_fraction", 0.25)
        w.endObject(); w.endObject()
        w.beginArray("list"); w.element("x"); w.element(Int64(2)); w.endArray()
        w.field("ok", true)
        w.endObject()
        let obj = try JSONSerialization.jsonObject(with: Data(w.bytes)) as? [String: Any]
        let health = (obj?["spanwatch"] as? [String: Any])?["health"] as? [String: Any]
        XCTAssertEqual(health?["check"] as? String, "capture_loss")
        XCTAssertEqual((health?["loss_fraction"] as? NSNumber)?.doubleValue, 0.25)
        let list = obj?["list"] as? [Any]
        XCTAssertEqual(list?.first as? String, "x")
        XCTAssertEqual((list?.last as? NSNumber)?.intValue, 2)
        XCTAssertEqual(obj?["ok"] as? Bool, true)
    }
}
