import Events
import Foundation
import Logging
import Outputs
import PacketCore
import Synchronization
import XCTest
@testable import SensorRuntime

/// The output monitor over a real file output on `/dev/full`: the first failure is logged at once, then
/// at most one line per interval with the counts since the previous line.
final class OutputMonitorTests: XCTestCase {
    /// Keeps what is logged, to read it back (a log handler, not a stand-in for sensor code).
    final class Lines: LogHandler, @unchecked Sendable {
        let lines = Mutex<[(Logger.Level, String, Logger.Metadata)]>([])
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String, file: String, function: String, line: UInt) {
            lines.withLock { $0.append((level, "\(message)", metadata ?? [:])) }
        }
    }

    func testFirstFailureAtOnceThenRateLimitedWithCounts() throws {
        let sink = try StreamSink.file(path: "/dev/full")
        let lines = Lines()
        let monitor = OutputMonitor(sinks: [sink], logger: Logger(label: "test") { _ in lines }, interval: .seconds(60))
        func fail(_ n: Int) throws {
            var json = "{\"event\":{\"kind\":\"alert\"}}"
            for _ in 0..<n {
                json.withUTF8 { sink.write(UnsafeRawBufferPointer($0), metadata: EventMetadata(dataset: "spanwatch.alert", kind: .alert, timestamp: Timestamp(nanoseconds: 0))) }
            }
            try sink.flush()
        }
        let t0 = ContinuousClock.now
        monitor.check(now: t0)
        XCTAssertTrue(lines.lines.withLock { $0.isEmpty }, "nothing failed yet")
        try fail(3)
        monitor.check(now: t0 + .seconds(1))
        var got = lines.lines.withLock { $0 }
        XCTAssertEqual(got.count, 1)
        XCTAssertEqual(got.first?.0, .error)
        XCTAssertEqual(got.first?.1, "output failing")
        XCTAssertEqual(got.first?.2["lost"], "3")
        XCTAssertEqual(got.first?.2["total_dropped_alerts"], "3")
        XCTAssertEqual(got.first?.2["error"], "\(String(cString: strerror(ENOSPC)))")
        // Still failing within the interval: counted, not logged.
        for s in 2..<60 {
            try fail(1)
            monitor.check(now: t0 + .seconds(s))
        }
        XCTAssertEqual(lines.lines.withLock { $0.count }, 1)
        try fail(2)
        monitor.check(now: t0 + .seconds(61))
        got = lines.lines.withLock { $0 }
        XCTAssertEqual(got.count, 2)
        XCTAssertEqual(got.last?.1, "output still failing")
        XCTAssertEqual(got.last?.2["lost"], "60", "58 + 2 since the first line")
        XCTAssertEqual(got.last?.2["total_dropped"], "63")
        XCTAssertEqual(sink.statistics.dropped, 63)
        XCTAssertThrowsError(try sink.close())
    }
}
