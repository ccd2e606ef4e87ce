import Events
import Foundation
import PacketCore
import TestSupport
import XCTest
@testable import Outputs

/// The file output's own rotation by age, and `reopen` (what SIGHUP calls).
final class FileOutputTests: XCTestCase {
    func write(_ sink: StreamSink, _ n: Int) {
        var json = "{\"n\":\(n)}"
        json.withUTF8 { sink.write(UnsafeRawBufferPointer($0), metadata: EventMetadata(dataset: "spanwatch.flow", kind: .event, timestamp: Timestamp(nanoseconds: 0))) }
    }

    func testRotationByAgeAndReopen() throws {
        let dir = try TestSupport.temporaryDirectory("file-output")
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("e.json").path
        guard case .file(let options) = try OutputSpec(parsing: "file:\(path)?rotate_interval=1s").target else { return XCTFail() }
        let sink = try StreamSink.file(options)
        write(sink, 1)
        try sink.flush()
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["e.json"])
        usleep(1_100_000)
        // Due: a flush on a quiet output rotates too.
        try sink.flush()
        write(sink, 2)
        try sink.flush()
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
        XCTAssertEqual(files.count, 2, "\(files)")
        let rotated = try XCTUnwrap(files.first { $0 != "e.json" })
        XCTAssertEqual(try String(contentsOfFile: dir.appendingPathComponent(rotated).path, encoding: .utf8), "{\"n\":1}\n")
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "{\"n\":2}\n")

        // logrotate's rename, then reopen: the buffered event goes to the old file, later ones to a new one.
        write(sink, 3)
        try FileManager.default.moveItem(atPath: path, toPath: path + ".old")
        sink.reopen()
        write(sink, 4)
        try sink.close()
        XCTAssertEqual(try String(contentsOfFile: path + ".old", encoding: .utf8), "{\"n\":2}\n{\"n\":3}\n")
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "{\"n\":4}\n")
        XCTAssertEqual(sink.statistics.delivered, 4)
    }
}
