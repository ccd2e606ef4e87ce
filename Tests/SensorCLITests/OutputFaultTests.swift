import Foundation
import TestSupport
import XCTest

/// Outputs that fail: a full disk or device loses events, the run says so with exit status 74, the final
/// `spanwatch.stats` shows the loss per output, and a live sensor logs the failure as it starts.
final class OutputFaultTests: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws { dir = try TestSupport.temporaryDirectory("output-fault") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    static let capture = TestSupport.data("pcaps/benign/bro.org.pcap")

    /// The delivery counters of one output in the last `spanwatch.stats` event.
    static func output(_ events: [[String: Any]], _ name: String) throws -> [String: Int] {
        let stats = try XCTUnwrap(events.last { TestSupport.value($0, "event.dataset") as? String == "spanwatch.stats" }, "no stats event")
        let outputs = try XCTUnwrap(TestSupport.value(stats, "spanwatch.stats.outputs") as? [[String: Any]])
        let o = try XCTUnwrap(outputs.first { $0["name"] as? String == name }, "\(outputs)")
        return o.compactMapValues { ($0 as? NSNumber)?.intValue }
    }

    func testFileOutputToFullDeviceExitsWithLossStatus() throws {
        let r = try TestSupport.sensor(["replay", "--output", "stdout", "--output", "file:/dev/full", Self.capture])
        XCTAssertEqual(r.status, 74, r.stderr)
        let full = try Self.output(try TestSupport.events(r), "file:/dev/full")
        XCTAssertGreaterThan(full["accepted"] ?? 0, 5)
        XCTAssertEqual(full["delivered"], 0)
        XCTAssertEqual(full["dropped"], full["accepted"], "the final stats count every event lost so far: \(full)")
        XCTAssertEqual(try Self.output(try TestSupport.events(r), "stdout")["dropped"], 0)
        XCTAssertTrue(r.stderr.contains("error: output file:/dev/full lost"), r.stderr)
        XCTAssertTrue(r.stderr.contains("No space left on device"), r.stderr)
        // Alone, with nothing else to show the stats: the status says it.
        let alone = try TestSupport.sensor(["replay", "--output", "file:/dev/full", Self.capture])
        XCTAssertEqual(alone.status, 74, alone.stderr)
    }

    /// A real file system that fills up part-way (a 64 KiB tmpfs): what fits is delivered, the rest is
    /// counted as dropped, and the two add up.
    func testFileOutputOnAFullFileSystem() throws {
        guard getuid() == 0 else { throw XCTSkip("needs root to mount a tmpfs") }
        let mnt = dir.appendingPathComponent("mnt").path
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: false)
        let m = try TestSupport.run("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", mnt])
        guard m.status == 0 else { throw XCTSkip("cannot mount a tmpfs here: \(m.stderr)") }
        defer { _ = try? TestSupport.run("umount", [mnt]) }
        let r = try TestSupport.sensor(["replay", "--output", "stdout", "--output", "file:\(mnt)/events.ndjson",
                                        TestSupport.data("pcaps/large/large-mixed-A.pcap")])
        XCTAssertEqual(r.status, 74, r.stderr)
        let events = try TestSupport.events(r)
        let o = try Self.output(events, "file:\(mnt)/events.ndjson")
        XCTAssertGreaterThan(o["dropped"] ?? 0, 0, "\(o)")
        XCTAssertEqual((o["delivered"] ?? -1) + (o["dropped"] ?? -1), o["accepted"], "\(o)")
        let size = (try FileManager.default.attributesOfItem(atPath: mnt + "/events.ndjson")[.size] as? Int) ?? 0
        XCTAssertLessThanOrEqual(size, 64 << 10)
        XCTAssertGreaterThan(events.count * 100, 64 << 10, "the run writes more than the file system holds")
    }

    /// Live: the failure is logged within seconds of starting, while the sensor runs (with the reason),
    /// counted in the metrics, and the exit status at SIGTERM is 74.
    func testLiveOutputFailureIsLoggedWhenItStarts() throws {
        guard getuid() == 0, TestSupport.hasTool("ip"), TestSupport.hasTool("tcpreplay") else { throw XCTSkip("needs root, ip and tcpreplay") }
        let lab = try VethLab()
        defer { lab.close() }
        let port = TestSupport.freePort()
        let sensor = try lab.startSensor(["--allow-root", "--stats-interval", "1", "--metrics", "127.0.0.1:\(port)",
                                          "--output", "stdout", "--output", "file:/dev/full"])
        try sensor.waitUntilCapturing()
        try lab.replay([TestSupport.data("pcaps/benign/dns.pcap")])
        XCTAssertTrue(sensor.waitFor("output failing", timeout: 10), sensor.stderr)
        XCTAssertTrue(sensor.process.isRunning, "logged while running, not at shutdown")
        let line = try XCTUnwrap(sensor.stderr.split(separator: "\n").first { $0.contains("output failing") })
        XCTAssertTrue(line.contains("file:/dev/full") && line.contains("No space left on device"), String(line))
        let metrics = try lab.scrape(port: port)
        let dropped = metrics.split(separator: "\n").first { $0.hasPrefix("sensor_output_events_dropped_total{output=\"file:/dev/full\"}") }
        XCTAssertGreaterThan(dropped.flatMap { Int($0.split(separator: " ").last ?? "") } ?? 0, 0, metrics)
        // Rate limited: within the first seconds, one line for this output.
        Thread.sleep(forTimeInterval: 2.5)
        XCTAssertEqual(sensor.stderr.components(separatedBy: "output failing").count - 1, 1, sensor.stderr)
        XCTAssertEqual(sensor.terminate(), 74, sensor.stderr)
        let full = try Self.output(try sensor.events(), "file:/dev/full")
        XCTAssertGreaterThan(full["dropped"] ?? 0, 0)
    }

    /// A Kafka spool on a file system that fills up (cluster away, 16 KiB tmpfs): the failure is logged
    /// with its reason, what the spool could not keep is counted as lost (alerts apart), the status is 74,
    /// and no torn record is left in the spool file.
    func testKafkaSpoolOnAFullFileSystem() throws {
        guard getuid() == 0 else { throw XCTSkip("needs root to mount a tmpfs") }
        let mnt = dir.appendingPathComponent("mnt").path
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: false)
        let m = try TestSupport.run("mount", ["-t", "tmpfs", "-o", "size=16k", "tmpfs", mnt])
        guard m.status == 0 else { throw XCTSkip("cannot mount a tmpfs here: \(m.stderr)") }
        defer { _ = try? TestSupport.run("umount", [mnt]) }
        let kafka = "kafka://127.0.0.1:9/events?spool=\(mnt)/spool&flush_timeout=1s"
        let r = try TestSupport.sensor(["replay", "--output", kafka, TestSupport.data("pcaps/large/large-mixed-A.pcap")])
        XCTAssertEqual(r.status, 74, r.stderr)
        let failing = try XCTUnwrap(r.stderr.split(separator: "\n").first { $0.contains("output failing") }, r.stderr)
        XCTAssertTrue(failing.contains("spool write failed: No space left on device"), String(failing))
        let line = try XCTUnwrap(r.stderr.split(separator: "\n").first { $0.contains("output delivery") })
        func count(_ key: String) -> Int { line.components(separatedBy: " \(key)=").dropFirst().first.flatMap { Int($0.prefix { $0.isNumber }) } ?? -1 }
        XCTAssertGreaterThan(count("dropped"), 0, String(line))
        XCTAssertGreaterThan(count("dropped_alerts"), 0, String(line))
        XCTAssertEqual(count("delivered"), 0, String(line))
        XCTAssertTrue(r.stderr.contains("error: output kafka://127.0.0.1:9/events lost"), r.stderr)
        // Whole records only: the next start reads back exactly what was kept.
        let spoolFile = mnt + "/spool/kafka-events.spool"
        let size = (try FileManager.default.attributesOfItem(atPath: spoolFile)[.size] as? Int) ?? -1
        XCTAssertLessThan(size, 16 << 10)
    }

    /// A symlink as `spool=`: refused at start with a clear error, and its target left as it was.
    func testSymlinkedKafkaSpoolIsRefused() throws {
        let target = dir.appendingPathComponent("elsewhere").path
        try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: false)
        chmod(target, 0o755)
        let link = dir.appendingPathComponent("spool").path
        XCTAssertEqual(symlink(target, link), 0)
        let r = try TestSupport.sensor(["replay", "--output", "kafka://127.0.0.1:9/events?spool=\(link)", TestSupport.data("pcaps/benign/dns.pcap")])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains(link) && r.stderr.contains("symbolic link"), r.stderr)
        XCTAssertEqual(try FileManager.default.attributesOfItem(atPath: target)[.posixPermissions] as? Int, 0o755)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: target), [])
    }
}
