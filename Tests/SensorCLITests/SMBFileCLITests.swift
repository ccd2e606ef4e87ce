import Foundation
import TestSupport
import XCTest

/// SMB2 reads and writes hashed through the real binary agree with `tshark --export-objects smb`.
final class SMBFileCLITests: XCTestCase {
    func sums(_ capture: String) throws -> (tshark: Set<String>, writes: [String], reads: [String], events: [[String: Any]]) {
        let dir = try TestSupport.temporaryDirectory("smb-files")
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = TestSupport.data("pcaps/" + capture)
        let t = try TestSupport.run("tshark", ["-r", file, "-q", "--export-objects", "smb," + dir.path])
        XCTAssertEqual(t.status, 0, t.stderr)
        var tshark = Set<String>()
        for name in try FileManager.default.contentsOfDirectory(atPath: dir.path) {
            tshark.insert(String(try TestSupport.run("sha256sum", [dir.appendingPathComponent(name).path]).stdoutText.prefix(64)))
        }
        let r = try TestSupport.sensor(["replay", "--no-flow-events", file])
        XCTAssertEqual(r.status, 0, r.stderr)
        let files = try TestSupport.events(r).filter { TestSupport.value($0, "event.dataset") as? String == "spanwatch.file" }
        func of(_ op: String) -> [String] {
            files.filter { TestSupport.value($0, "spanwatch.file.operation") as? String == op }.compactMap { TestSupport.value($0, "file.hash.sha256") as? String }
        }
        return (tshark, of("write"), of("read"), files)
    }

    func testWrittenFilesEqualTsharkExportedObjects() throws {
        let schema = try EventSchema.load()
        var compared = 0
        for capture in ["benign/smb2readwrite.pcap", "benign/smb2-peter.pcap"] {
            let s = try sums(capture)
            XCTAssertFalse(s.writes.isEmpty, capture)
            for w in s.writes { XCTAssertTrue(s.tshark.contains(w), "\(capture): written file \(w) is not among tshark's objects"); compared += 1 }
            for e in s.events {
                XCTAssertEqual(schema.problems(e), [], capture)
                XCTAssertEqual(TestSupport.value(e, "spanwatch.file.source") as? String, "smb")
            }
        }
        // smb2readwrite.pcap: one file written, one read; both equal tshark's.
        let rw = try sums("benign/smb2readwrite.pcap")
        XCTAssertEqual(Set(rw.writes + rw.reads), rw.tshark)
        XCTAssertGreaterThanOrEqual(compared, 10)
    }
}
