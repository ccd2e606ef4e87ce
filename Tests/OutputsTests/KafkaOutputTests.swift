import Events
import Foundation
import PacketCore
import TestSupport
import XCTest
@testable import Outputs

/// The Kafka output against librdkafka's mock cluster running as a real broker on loopback
/// (`kafka-mock-broker`), read back with the real `kcat`.
final class KafkaOutputTests: XCTestCase {
    var broker: BackgroundProcess?

    override func tearDown() {
        _ = broker?.command("quit", timeout: 2)
        broker?.stop()
        broker = nil
    }

    /// Starts the mock cluster; returns its bootstrap address.
    func startBroker(topics: [String]) throws -> String {
        try XCTSkipUnless(TestSupport.hasTool("kcat"), "kcat is not installed (scripts/install-deps.sh test)")
        let exe = TestSupport.builtExecutable("kafka-mock-broker")
        XCTAssertTrue(FileManager.default.isExecutableFile(atPath: exe), "build kafka-mock-broker first")
        let b = try BackgroundProcess(exe, topics.flatMap { ["--topic", "\($0):3"] })
        broker = b
        let boot = try XCTUnwrap(b.readLine(timeout: 20), "mock broker did not start: \(b.standardError)")
        XCTAssertTrue(boot.hasPrefix("127.0.0.1:"), boot)
        return boot
    }

    /// Every message of a topic, as `key<TAB>value` lines, read with kcat until the end of every partition.
    func consume(_ bootstrap: String, topic: String) throws -> [String] {
        let r = try TestSupport.run("kcat", ["-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q",
                                             "-f", "%k\t%s\n", "-X", "log_level=3"])
        XCTAssertEqual(r.status, 0, r.stderr)
        return r.lines
    }

    static var captures: [String] {
        [TestSupport.data("pcaps/large/large-mixed-A.pcap"), TestSupport.data("pcaps/benign/bro.org.pcap")]
    }

    func countOccurrences(_ lines: [String]) -> [String: Int] {
        var m: [String: Int] = [:]
        for l in lines { m[l, default: 0] += 1 }
        return m
    }

    /// Cluster up all along: what stdout gets, Kafka gets, each event exactly once, keyed by community_id.
    func testEveryEventArrivesExactlyOnce() throws {
        let boot = try startBroker(topics: ["events"])
        let spool = try TestSupport.temporaryDirectory("kafka-spool")
        defer { try? FileManager.default.removeItem(at: spool) }
        let kafka = "kafka://\(boot)/events?spool=\(spool.path)&flush_timeout=30s"
        let run = try TestSupport.sensor(["replay", "--output", "stdout", "--output", kafka] + KafkaOutputTests.captures)
        XCTAssertEqual(run.status, 0, run.stderr)
        let expected = run.lines
        XCTAssertGreaterThan(expected.count, 50)
        // A separate stdout-only run gives the same events (the stats event names the outputs, so it differs).
        let alone = try TestSupport.sensor(["replay"] + KafkaOutputTests.captures)
        let notStats = { (l: String) in !l.contains("\"dataset\":\"spanwatch.stats\"") }
        XCTAssertTrue(countOccurrences(alone.lines.filter(notStats)) == countOccurrences(expected.filter(notStats)))

        let messages = try consume(boot, topic: "events")
        let values = messages.map { String($0.split(separator: "\t", maxSplits: 1).last ?? "") }
        XCTAssertEqual(values.count, expected.count, "messages in Kafka vs events on stdout")
        XCTAssertTrue(countOccurrences(values) == countOccurrences(expected), "every event exactly once")
        // Flow events are keyed by their community_id (partition affinity per flow).
        var keyed = 0
        for m in messages {
            let parts = m.split(separator: "\t", maxSplits: 1).map(String.init)
            guard parts.count == 2, let obj = try JSONSerialization.jsonObject(with: Data(parts[1].utf8)) as? [String: Any],
                  let cid = TestSupport.value(obj, "network.community_id") as? String else { continue }
            XCTAssertEqual(parts[0], cid)
            keyed += 1
        }
        XCTAssertGreaterThan(keyed, 10)
        XCTAssertTrue(run.stderr.contains("output delivery"), run.stderr)
        XCTAssertTrue(run.stderr.contains("delivered=\(expected.count)"), run.stderr)
        XCTAssertTrue(run.stderr.contains("dropped=0"), run.stderr)
    }

    /// The broker is down while the replay runs: events wait in the spool and arrive once it is back,
    /// still each exactly once.
    func testBrokerDownThenBackStillExactlyOnce() throws {
        let boot = try startBroker(topics: ["events"])
        let spool = try TestSupport.temporaryDirectory("kafka-spool")
        defer { try? FileManager.default.removeItem(at: spool) }
        XCTAssertEqual(broker?.command("down 1"), "ok")
        // A small librdkafka queue, so most events go through the on-disk spool.
        let kafka = "kafka://\(boot)/events?spool=\(spool.path)&flush_timeout=60s&queue.buffering.max.messages=20"
        let sensor = try BackgroundProcess(TestSupport.sensorBinary,
                                           ["replay", "--output", "stdout", "--output", kafka] + KafkaOutputTests.captures,
                                           currentDirectory: TestSupport.repositoryRoot.path)
        // The replay writes everything while the broker is down; the sink spools and keeps probing.
        var stdoutLines: [String] = []
        // The end-of-run statistics wait for delivery (flush_timeout), so the events before them are the sign.
        TestSupport.waitUntil(timeout: 30) {
            while let l = sensor.readLine(timeout: 0.05) { stdoutLines.append(l) }
            return stdoutLines.count > 50
        }
        sleep(2)
        // The spool file holds events now, private to the sensor.
        let spoolFiles = try FileManager.default.contentsOfDirectory(atPath: spool.path)
        XCTAssertEqual(spoolFiles.filter { $0.hasSuffix(".spool") }.count, 1, "\(spoolFiles)")
        let attrs = try FileManager.default.attributesOfItem(atPath: spool.appendingPathComponent(spoolFiles.first { $0.hasSuffix(".spool") }!).path)
        XCTAssertEqual((attrs[.posixPermissions] as? Int) ?? 0, 0o600)
        XCTAssertGreaterThan((attrs[.size] as? Int) ?? 0, 0, "events are in the spool while the broker is down")
        XCTAssertTrue(sensor.process.isRunning, "the sensor waits for the cluster (flush_timeout)")
        XCTAssertEqual(broker?.command("up 1"), "ok")
        XCTAssertTrue(TestSupport.waitUntil(timeout: 60) { !sensor.process.isRunning }, "sensor did not finish after the broker came back")
        sensor.process.waitUntilExit()
        while let l = sensor.readLine(timeout: 0.5) { stdoutLines.append(l) }
        XCTAssertEqual(sensor.process.terminationStatus, 0, sensor.standardError)
        let log = sensor.standardError
        let spooled = log.components(separatedBy: "spooled=").dropFirst().compactMap { Int($0.prefix { $0.isNumber }) }.max() ?? 0
        XCTAssertGreaterThan(spooled, 0, log)
        XCTAssertTrue(log.contains("dropped=0"), log)

        let values = try consume(boot, topic: "events").map { String($0.split(separator: "\t", maxSplits: 1).last ?? "") }
        XCTAssertEqual(values.count, stdoutLines.count)
        XCTAssertTrue(countOccurrences(values) == countOccurrences(stdoutLines), "every event exactly once after the outage")
        // Nothing is left behind in the spool.
        let left = try FileManager.default.attributesOfItem(atPath: spool.appendingPathComponent(spoolFiles.first { $0.hasSuffix(".spool") }!).path)
        XCTAssertEqual((left[.size] as? Int) ?? -1, 0)
    }

    /// Topic per dataset: `{dataset}` in the topic routes flows and stats to their own topics.
    func testTopicPerDataset() throws {
        let boot = try startBroker(topics: ["ev-spanwatch.flow", "ev-spanwatch.stats"])
        let spool = try TestSupport.temporaryDirectory("kafka-spool")
        defer { try? FileManager.default.removeItem(at: spool) }
        let kafka = "kafka://\(boot)/ev-{dataset}?spool=\(spool.path)&key=source_ip&compression.codec=zstd"
        let run = try TestSupport.sensor(["replay", "--output", "stdout", "--output", kafka, TestSupport.data("pcaps/beacon/test-cc-capture-2.pcap")])
        XCTAssertEqual(run.status, 0, run.stderr)
        let flows = run.lines.filter { $0.contains("\"dataset\":\"spanwatch.flow\"") }
        let got = try consume(boot, topic: "ev-spanwatch.flow")
        XCTAssertEqual(got.count, flows.count)
        for m in got.prefix(20) {
            let parts = m.split(separator: "\t", maxSplits: 1).map(String.init)
            let obj = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(parts[1].utf8)) as? [String: Any])
            XCTAssertEqual(parts[0], TestSupport.value(obj, "source.ip") as? String, "keyed by source.ip")
        }
        XCTAssertEqual(try consume(boot, topic: "ev-spanwatch.stats").count, 1)
    }

    /// Every record carries `dataset`, `sensor` and `schema_version` headers (read back with kcat's %h),
    /// re-sent spooled records too; the end-of-run statistics are written after the final flush, so on a
    /// clean run they show every event accepted so far as delivered.
    func testHeadersAndFinalStatistics() throws {
        let boot = try startBroker(topics: ["events"])
        let spool = try TestSupport.temporaryDirectory("kafka-spool")
        defer { try? FileManager.default.removeItem(at: spool) }
        let kafka = "kafka://\(boot)/events?spool=\(spool.path)&flush_timeout=30s"
        let run = try TestSupport.sensor(["replay", "--quiet", "--sensor-name", "tap-7", "--output", kafka, TestSupport.data("pcaps/benign/dns.pcap")])
        XCTAssertEqual(run.status, 0, run.stderr)
        let r = try TestSupport.run("kcat", ["-C", "-b", boot, "-t", "events", "-o", "beginning", "-e", "-q", "-f", "%h\t%s\n", "-X", "log_level=3"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertGreaterThan(r.lines.count, 10)
        var stats: [String: Any]?
        for line in r.lines {
            let parts = line.split(separator: "\t", maxSplits: 1).map(String.init)
            XCTAssertEqual(parts.count, 2, line)
            let headers = Set(parts[0].split(separator: ",").map(String.init))
            let obj = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(parts[1].utf8)) as? [String: Any])
            let dataset = try XCTUnwrap(TestSupport.value(obj, "event.dataset") as? String)
            XCTAssertEqual(headers, ["dataset=\(dataset)", "sensor=tap-7", "schema_version=8.11.0"], line)
            if dataset == "spanwatch.stats" { stats = obj }
        }
        let outputs = try XCTUnwrap(TestSupport.value(try XCTUnwrap(stats), "spanwatch.stats.outputs") as? [[String: Any]])
        let accepted = try XCTUnwrap(outputs.first?["accepted"] as? Int), delivered = try XCTUnwrap(outputs.first?["delivered"] as? Int)
        XCTAssertEqual(accepted, r.lines.count - 1, "every event before the statistics")
        XCTAssertEqual(delivered, accepted, "statistics written after the final flush")

        // Spooled while the cluster is away, re-sent by the next start: the headers come back out of the payload.
        XCTAssertEqual(broker?.command("down 1"), "ok")
        let down = try TestSupport.sensor(["replay", "--quiet", "--sensor-name", "tap-8", "--output", kafka.replacingOccurrences(of: "=30s", with: "=1s"),
                                           TestSupport.data("pcaps/benign/dns.pcap")])
        XCTAssertEqual(down.status, 74, down.stderr)
        XCTAssertEqual(broker?.command("up 1"), "ok")
        let up = try TestSupport.sensor(["replay", "--quiet", "--sensor-name", "tap-9", "--output", kafka, "--bpf", "udp port 1", TestSupport.data("pcaps/benign/dns.pcap")])
        XCTAssertEqual(up.status, 0, up.stderr)
        let again = try TestSupport.run("kcat", ["-C", "-b", boot, "-t", "events", "-o", "beginning", "-e", "-q", "-f", "%h\n", "-X", "log_level=3"])
        let resent = again.lines.filter { $0.contains("sensor=tap-8") }
        XCTAssertEqual(resent.count, r.lines.count, "the spooled run's events, each with its headers")
        XCTAssertTrue(resent.allSatisfy { $0.contains("dataset=spanwatch.") && $0.contains("schema_version=8.11.0") }, "\(resent.prefix(3))")
    }

    /// No `spool=`: `$STATE_DIRECTORY/spool` under systemd, missing parents made 0700 (a per-user state
    /// directory otherwise, checked below without running the binary: tests may run as root, whose
    /// default is /var/lib/sensor/spool). librdkafka's complaints come through our log, not raw on stderr.
    func testDefaultSpoolAndLibrdkafkaLog() throws {
        let home = try TestSupport.temporaryDirectory("kafka-home")
        defer { try? FileManager.default.removeItem(at: home) }
        let state = home.appendingPathComponent("a/b/sensor").path
        let port = TestSupport.freePort()
        let r = try TestSupport.run(TestSupport.sensorBinary, ["replay", "--quiet", "--output", "kafka://127.0.0.1:\(port)/events?flush_timeout=1s",
                                                                TestSupport.data("pcaps/benign/dns.pcap")],
                                    environment: ["STATE_DIRECTORY": state])
        XCTAssertEqual(r.status, 74, "undelivered events wait in the spool: \(r.stderr)")
        let spool = state + "/spool"
        for dir in [home.appendingPathComponent("a").path, home.appendingPathComponent("a/b").path, state, spool] {
            let mode = try XCTUnwrap(try FileManager.default.attributesOfItem(atPath: dir)[.posixPermissions] as? Int)
            XCTAssertEqual(mode, 0o700, dir)
        }
        XCTAssertGreaterThan(try FileManager.default.contentsOfDirectory(atPath: spool).count, 0)
        XCTAssertTrue(r.stderr.contains("librdkafka:"), r.stderr)
        XCTAssertFalse(r.stderr.split(separator: "\n").contains { $0.hasPrefix("%") }, r.stderr)

        XCTAssertEqual(KafkaOutputOptions.defaultSpoolDirectory(environment: ["STATE_DIRECTORY": "/var/lib/sensor:/var/lib/other"], euid: 997),
                       "/var/lib/sensor/spool")
        XCTAssertEqual(KafkaOutputOptions.defaultSpoolDirectory(environment: ["HOME": "/home/a"], euid: 1000), "/home/a/.local/state/sensor/spool")
        XCTAssertEqual(KafkaOutputOptions.defaultSpoolDirectory(environment: ["XDG_STATE_HOME": "/s", "HOME": "/home/a"], euid: 1000), "/s/sensor/spool")
        XCTAssertEqual(KafkaOutputOptions.defaultSpoolDirectory(environment: [:], euid: 0), "/var/lib/sensor/spool")
    }

    /// The cluster stays away past `flush_timeout`: the sensor exits with the events spooled on disk, and
    /// the next start sends them first. A small spool bound drops the excess, counted and reported.
    func testSpoolSurvivesExitAndBoundDropsAreCounted() throws {
        let boot = try startBroker(topics: ["events"])
        let spool = try TestSupport.temporaryDirectory("kafka-spool")
        defer { try? FileManager.default.removeItem(at: spool) }
        let capture = TestSupport.data("pcaps/beacon/test-cc-capture-2.pcap")
        XCTAssertEqual(broker?.command("down 1"), "ok")
        let kafka = "kafka://\(boot)/events?spool=\(spool.path)&flush_timeout=1s&queue.buffering.max.messages=10"
        let first = try TestSupport.sensor(["replay", "--output", "stdout", "--output", kafka, capture])
        // Nothing lost, but nothing delivered either: a batch run says so (74), naming the spool.
        XCTAssertEqual(first.status, 74, first.stderr)
        XCTAssertTrue(first.stderr.contains("error: output kafka://\(boot)/events delivered 0 of"), first.stderr)
        let events = first.lines
        let kafkaLine = try XCTUnwrap(first.stderr.split(separator: "\n").first { $0.contains("output=kafka://") && $0.contains("output delivery") })
        XCTAssertTrue(kafkaLine.contains("delivered=0") && kafkaLine.contains("dropped=0") && !kafkaLine.contains("spool_bytes=0 "), String(kafkaLine))

        // Back up: a second run sends the first run's events, then its own.
        XCTAssertEqual(broker?.command("up 1"), "ok")
        let second = try TestSupport.sensor(["replay", "--output", "stdout", "--output", kafka.replacingOccurrences(of: "flush_timeout=1s", with: "flush_timeout=30s"), capture])
        XCTAssertEqual(second.status, 0, second.stderr)
        XCTAssertEqual(second.lines.count, events.count)
        let values = try consume(boot, topic: "events").map { String($0.split(separator: "\t", maxSplits: 1).last ?? "") }
        XCTAssertEqual(values.count, 2 * events.count)
        // (The two runs' stats events differ: they carry each run's delivery counters.)
        XCTAssertTrue(countOccurrences(values) == countOccurrences(events + second.lines), "each run's events exactly once")

        // A spool bound too small for the outage: the excess is dropped and counted, never silently.
        XCTAssertEqual(broker?.command("down 1"), "ok")
        let bounded = try TestSupport.sensor(["replay", "--output", kafka + "&spool_max_bytes=32KiB", capture])
        XCTAssertEqual(bounded.status, 74, "events lost: the documented exit status. \(bounded.stderr)")
        let line = try XCTUnwrap(bounded.stderr.split(separator: "\n").first { $0.contains("output delivery") })
        let dropped = line.components(separatedBy: "dropped=").dropFirst().first.flatMap { Int($0.prefix { $0.isNumber }) } ?? 0
        XCTAssertGreaterThan(dropped, 0, String(line))
        XCTAssertTrue(bounded.stderr.contains("error: output kafka://\(boot)/events lost \(dropped) of"), bounded.stderr)
    }

    /// SIGTERM part-way with the cluster away: the sensor stops within the flush deadline, spooling what
    /// did not get out; the next run sends it. Every event either run printed is in Kafka exactly once.
    func testSIGTERMSpoolsWhatDidNotGetOut() throws {
        let boot = try startBroker(topics: ["events"])
        let spool = try TestSupport.temporaryDirectory("kafka-spool")
        defer { try? FileManager.default.removeItem(at: spool) }
        XCTAssertEqual(broker?.command("down 1"), "ok")
        let kafka = "kafka://\(boot)/events?spool=\(spool.path)&flush_timeout=2s"
        let sensor = try BackgroundProcess(TestSupport.sensorBinary,
                                           ["replay", "--output", "stdout", "--output", kafka, TestSupport.data("pcaps/large/large-mixed-A.pcap")],
                                           currentDirectory: TestSupport.repositoryRoot.path)
        var first: [String] = []
        TestSupport.waitUntil(timeout: 20) {
            while let l = sensor.readLine(timeout: 0.02) { first.append(l) }
            return !first.isEmpty
        }
        let started = Date()
        kill(sensor.process.processIdentifier, SIGTERM)
        XCTAssertTrue(TestSupport.waitUntil(timeout: 15) { !sensor.process.isRunning }, "SIGTERM must end the run within the flush deadline")
        XCTAssertLessThan(Date().timeIntervalSince(started), 10)
        while let l = sensor.readLine(timeout: 0.5) { first.append(l) }
        XCTAssertTrue(sensor.standardError.contains("output delivery"), sensor.standardError)
        XCTAssertTrue(sensor.standardError.contains("dropped=0"), sensor.standardError)

        XCTAssertEqual(broker?.command("up 1"), "ok")
        let second = try TestSupport.sensor(["replay", "--output", "stdout", "--output", kafka.replacingOccurrences(of: "=2s", with: "=30s"),
                                             TestSupport.data("pcaps/benign/dns.pcap")])
        XCTAssertEqual(second.status, 0, second.stderr)
        let values = try consume(boot, topic: "events").map { String($0.split(separator: "\t", maxSplits: 1).last ?? "") }
        XCTAssertEqual(values.count, first.count + second.lines.count)
        XCTAssertTrue(countOccurrences(values) == countOccurrences(first + second.lines), "every printed event exactly once")
    }

    func testBadKafkaPropertyIsRejectedAtStart() throws {
        let r = try TestSupport.sensor(["replay", "--output", "kafka://127.0.0.1:9/t?no.such.property=1", TestSupport.data("pcaps/benign/dns.pcap")])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("no.such.property"), r.stderr)
    }

    /// A full spool drops flow events before alerts: with the cluster down and a 32 KiB spool, 400 flow
    /// events then 40 alerts of about 500 bytes each go through the real librdkafka; every alert is kept
    /// (older flow events make room), the excess flow events are dropped and counted. Back up, the next
    /// start re-sends the alerts first.
    func testFullSpoolDropsFlowEventsBeforeAlerts() throws {
        try XCTSkipUnless(TestSupport.hasTool("kcat"), "kcat is not installed (scripts/install-deps.sh test)")
        let b = try BackgroundProcess(TestSupport.builtExecutable("kafka-mock-broker"), ["--topic", "events:1"])
        broker = b
        let boot = try XCTUnwrap(b.readLine(timeout: 20), "mock broker did not start: \(b.standardError)")
        let spool = try TestSupport.temporaryDirectory("kafka-spool")
        defer { try? FileManager.default.removeItem(at: spool) }
        XCTAssertEqual(broker?.command("down 1"), "ok")
        var options = try KafkaOutputOptions(url: "kafka://\(boot)/events?key=none&spool=\(spool.path)&spool_max_bytes=32KiB&flush_timeout=1s&queue.buffering.max.messages=10")
        let pad = String(repeating: "x", count: 450)
        func write(_ sink: KafkaSink, _ kind: EventKind, _ i: Int) {
            var json = "{\"event\":{\"kind\":\"\(kind.name)\"},\"n\":\(i),\"pad\":\"\(pad)\"}"
            json.withUTF8 { sink.write(UnsafeRawBufferPointer($0), metadata: EventMetadata(dataset: kind == .alert ? "spanwatch.alert" : "spanwatch.flow", kind: kind,
                                                                                           timestamp: Timestamp(nanoseconds: 0))) }
        }
        var sink: KafkaSink? = try KafkaSink(options: options)
        for i in 0..<400 { write(sink!, .event, i) }
        for i in 0..<40 { write(sink!, .alert, i) }
        try sink!.close()
        let st = sink!.statistics
        sink = nil
        XCTAssertEqual(st.accepted, 440)
        XCTAssertEqual(st.droppedAlerts, 0, "no alert is dropped while flow events can make room")
        XCTAssertGreaterThan(st.dropped, 300, "flow events beyond the bound are dropped and counted")

        // What is on disk: every alert, and the flow events that still fit.
        // (Read from a copy: reading a spool to its end empties it.)
        try FileManager.default.copyItem(atPath: spool.path + "/kafka-events.alerts", toPath: spool.path + "/copy.alerts")
        let alerts = try Spool(directory: spool.path, name: "copy.alerts", maxBytes: 1 << 20)
        let alertBytes = alerts.unreadBytes
        var alertNumbers: [Int] = []
        alerts.consume(limit: .max) { r in
            let text = String(decoding: r.payload, as: UTF8.self)
            XCTAssertTrue(text.contains("\"kind\":\"alert\""), text)
            alertNumbers.append(Int(text.components(separatedBy: "\"n\":")[1].prefix { $0.isNumber })!)
            return true
        }
        XCTAssertEqual(alertNumbers, Array(0..<40), "every alert, in order")
        try alerts.close()
        try FileManager.default.removeItem(atPath: spool.path + "/copy.alerts")
        let flows = try Spool(directory: spool.path, name: "kafka-events.spool", maxBytes: 1 << 20)
        let flowCount = Int(flows.unreadRecords)
        XCTAssertGreaterThan(flowCount, 0)
        XCTAssertEqual(UInt64(flowCount) + 40 + st.dropped, 440, "each event is spooled or counted as dropped")
        XCTAssertLessThanOrEqual(flows.unreadBytes + alertBytes, 32 << 10, "one bound for both spools")
        try flows.close()

        // Cluster back: a new sink re-sends the alerts before the flow events.
        XCTAssertEqual(broker?.command("up 1"), "ok")
        options.flushTimeout = 30
        let again = try KafkaSink(options: options)
        try again.close()
        XCTAssertEqual(again.statistics.delivered, UInt64(40 + flowCount), "\(again.statistics)")
        let kinds = try consume(boot, topic: "events").map { $0.contains("\"kind\":\"alert\"") }
        XCTAssertEqual(kinds.count, 40 + flowCount)
        XCTAssertEqual(kinds.prefix(40).filter { $0 }.count, 40, "alerts first")
    }
}
