@testable import Outputs
import Foundation
import TestSupport
import XCTest

final class SpoolTests: XCTestCase {
    func append(_ s: Spool, _ text: String, topic: String = "t", key: String = "k") -> Bool {
        var t = topic, k = key, p = text
        return t.withUTF8 { tb in k.withUTF8 { kb in p.withUTF8 { pb in
            s.append(topic: UnsafeRawBufferPointer(tb), key: UnsafeRawBufferPointer(kb), payload: UnsafeRawBufferPointer(pb))
        } } }
    }

    func drain(_ s: Spool, limit: Int = .max, refuseAfter: Int = .max) -> [String] {
        var out: [String] = []
        s.consume(limit: limit) { r in
            guard out.count < refuseAfter else { return false }
            out.append("\(r.topic)|\(String(decoding: r.key, as: UTF8.self))|\(String(decoding: r.payload, as: UTF8.self))")
            return true
        }
        return out
    }

    func testOrderBoundPermissionsAndRestart() throws {
        let base = try TestSupport.temporaryDirectory("spool")
        defer { try? FileManager.default.removeItem(at: base) }
        let dir = base.appendingPathComponent("spool").path
        var s: Spool? = try Spool(directory: dir, name: "a.spool", maxBytes: 10 * 30)
        for i in 0..<10 { XCTAssertTrue(append(s!, "event-\(i)")) }  // 8 + 1 + 1 + 7 = 17 bytes each
        XCTAssertEqual(s!.unreadRecords, 10)
        // The bound: 300 bytes hold 17 records of 17 bytes.
        var accepted = 0
        for i in 10..<30 where append(s!, "event-\(i)") { accepted += 1 }
        XCTAssertEqual(accepted, 7)
        // A refused record stays first.
        XCTAssertEqual(drain(s!, refuseAfter: 3), ["t|k|event-0", "t|k|event-1", "t|k|event-2"])
        XCTAssertEqual(drain(s!, limit: 2), ["t|k|event-3", "t|k|event-4"])
        try s!.close()
        s = nil
        let dirMode = try FileManager.default.attributesOfItem(atPath: dir)[.posixPermissions] as? Int
        XCTAssertEqual(dirMode, 0o700)
        let fileMode = try FileManager.default.attributesOfItem(atPath: dir + "/a.spool")[.posixPermissions] as? Int
        XCTAssertEqual(fileMode, 0o600)
        // The next start resumes with what was not read.
        let again = try Spool(directory: dir, name: "a.spool", maxBytes: 1 << 20)
        XCTAssertEqual(again.unreadRecords, 12)
        let rest = drain(again)
        XCTAssertEqual(rest.first, "t|k|event-5")
        XCTAssertEqual(rest.count, 12)
        XCTAssertTrue(again.isEmpty)
        XCTAssertEqual(try FileManager.default.attributesOfItem(atPath: dir + "/a.spool")[.size] as? Int, 0)
    }

    func testTornTailIsCutOff() throws {
        let base = try TestSupport.temporaryDirectory("spool")
        defer { try? FileManager.default.removeItem(at: base) }
        var s: Spool? = try Spool(directory: base.path, name: "b.spool", maxBytes: 1 << 20)
        XCTAssertTrue(append(s!, "one"))
        XCTAssertTrue(append(s!, "two"))
        try s!.close()
        s = nil
        let path = base.path + "/b.spool"
        let h = try XCTUnwrap(FileHandle(forWritingAtPath: path))
        h.seekToEndOfFile()
        h.write(Data([99, 0, 0, 0, 1]))  // a header cut short by a crash
        h.closeFile()
        let again = try Spool(directory: base.path, name: "b.spool", maxBytes: 1 << 20)
        XCTAssertEqual(drain(again), ["t|k|one", "t|k|two"])
    }

    func testSecondProcessCannotShareASpool() throws {
        let base = try TestSupport.temporaryDirectory("spool")
        defer { try? FileManager.default.removeItem(at: base) }
        let first = try Spool(directory: base.path, name: "c.spool", maxBytes: 1 << 20)
        XCTAssertThrowsError(try Spool(directory: base.path, name: "c.spool", maxBytes: 1 << 20))
        _ = first
    }

    /// A symlink given as the spool directory is refused, and the directory it points to keeps its mode
    /// (it was followed and chmod-ed 0700 before). A symlink in place of the spool file is refused too.
    func testSymlinkedSpoolDirectoryOrFileIsRefusedAndNothingIsChanged() throws {
        let base = try TestSupport.temporaryDirectory("spool")
        defer { try? FileManager.default.removeItem(at: base) }
        let target = base.appendingPathComponent("shared").path
        try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: false)
        chmod(target, 0o755)
        let link = base.appendingPathComponent("spool").path
        XCTAssertEqual(symlink(target, link), 0)
        XCTAssertThrowsError(try Spool(directory: link, name: "a.spool", maxBytes: 1 << 20)) { e in
            XCTAssertTrue("\(e)".contains("symbolic link"), "\(e)")
        }
        XCTAssertEqual(try FileManager.default.attributesOfItem(atPath: target)[.posixPermissions] as? Int, 0o755)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: target), [])

        let real = base.appendingPathComponent("real").path
        try FileManager.default.createDirectory(atPath: real, withIntermediateDirectories: false)
        let victim = base.appendingPathComponent("victim").path
        try "keep".write(toFile: victim, atomically: true, encoding: .utf8)
        XCTAssertEqual(symlink(victim, real + "/a.spool"), 0)
        XCTAssertThrowsError(try Spool(directory: real, name: "a.spool", maxBytes: 1 << 20)) { e in
            XCTAssertTrue("\(e)".contains("symbolic link"), "\(e)")
        }
        XCTAssertEqual(try String(contentsOfFile: victim, encoding: .utf8), "keep")
    }

    /// A spool directory of another user is refused (events would be readable or replaceable by them).
    func testForeignSpoolDirectoryIsRefused() throws {
        let base = try TestSupport.temporaryDirectory("spool")
        defer { try? FileManager.default.removeItem(at: base) }
        let dir = base.appendingPathComponent("theirs").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false)
        guard getuid() == 0 else { throw XCTSkip("needs root to give the directory away") }
        XCTAssertEqual(chown(dir, 65534, 65534), 0)
        XCTAssertThrowsError(try Spool(directory: dir, name: "a.spool", maxBytes: 1 << 20)) { e in
            XCTAssertTrue("\(e)".contains("belongs to uid 65534"), "\(e)")
        }
    }

    /// Room is made by discarding the oldest records first; the rest stays in order.
    func testDiscardOldest() throws {
        let base = try TestSupport.temporaryDirectory("spool")
        defer { try? FileManager.default.removeItem(at: base) }
        let s = try Spool(directory: base.path, name: "d.spool", maxBytes: 1 << 20)
        for i in 0..<10 { XCTAssertTrue(append(s, "event-\(i)")) }  // 17 bytes each
        XCTAssertEqual(s.discardOldest(freeing: 20), 2)
        XCTAssertEqual(s.unreadRecords, 8)
        XCTAssertEqual(s.unreadBytes, 8 * 17)
        XCTAssertEqual(drain(s, limit: 1), ["t|k|event-2"])
        XCTAssertEqual(s.discardOldest(freeing: 1 << 20), 7)
        XCTAssertTrue(s.isEmpty)
        XCTAssertEqual(s.unreadBytes, 0)
    }
}
