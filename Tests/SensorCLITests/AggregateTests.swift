import Foundation
import HostStage
import TestSupport
import XCTest

/// `--host-facts kafka://…` and `sensor aggregate` against librdkafka's mock cluster as a real broker
/// (`kafka-mock-broker`, 4 partitions), with the real `sensor` binary and `kcat`.
final class AggregateTests: XCTestCase {
    var broker: BackgroundProcess?
    static let hostCategories: Set<String> = ["beaconing", "lateral_movement", "dns_tunneling", "nonstandard_port_c2"]

    override func tearDown() {
        _ = broker?.command("quit", timeout: 2)
        broker?.stop()
        broker = nil
    }

    /// A fresh spool directory for the producers (the default is /var/lib/sensor/spool).
    func spoolDirectory() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("agg-spool-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir.path
    }

    func startBroker(_ topics: [String]) throws -> String {
        try XCTSkipUnless(TestSupport.hasTool("kcat"), "kcat is not installed (scripts/install-deps.sh test)")
        let exe = TestSupport.builtExecutable("kafka-mock-broker")
        XCTAssertTrue(FileManager.default.isExecutableFile(atPath: exe), "build kafka-mock-broker first")
        let b = try BackgroundProcess(exe, topics.flatMap { ["--topic", $0] })
        broker = b
        return try XCTUnwrap(b.readLine(timeout: 20), "mock broker did not start: \(b.standardError)")
    }

    /// A capture set with alerts of every cross-flow category (an error at once without `../shared`).
    static func captures() throws -> [String] {
        try TestSupport.requiredCaptures(["beacon", "lateral", "dns-tunnel", "c2-nonstd-port"])
    }

    struct Alerts {
        /// "rule category source destination" per host-stage alert, sorted.
        var identities: [String] = []
        /// Identity per event.id (an alert emitted twice with one id counts once).
        var byID: [String: String] = [:]
        var stats: [String: Any] = [:]
        var hostStage: [String: Any] = [:]
        var other = 0
    }

    static func alerts(_ lines: [String]) throws -> Alerts {
        var a = Alerts()
        for line in lines {
            guard let o = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { continue }
            if let stats = (o["spanwatch"] as? [String: Any])?["stats"] as? [String: Any], let s = stats["aggregate"] as? [String: Any] {
                a.stats = s
                a.hostStage = stats["host_stage"] as? [String: Any] ?? [:]
                continue
            }
            guard let rule = o["rule"] as? [String: Any], let category = rule["category"] as? String else { continue }
            guard hostCategories.contains(category) else { a.other += 1; continue }
            let src = (o["source"] as? [String: Any])?["ip"] as? String ?? "-"
            let dst = (o["destination"] as? [String: Any])?["ip"] as? String ?? "-"
            let identity = "\(rule["id"] as? String ?? "?") \(category) \(src) \(dst)"
            a.identities.append(identity)
            a.byID[(o["event"] as? [String: Any])?["id"] as? String ?? ""] = identity
        }
        a.identities.sort()
        return a
    }

    func replay(_ args: [String]) throws -> [String] {
        let r = try TestSupport.sensor(["replay"] + args + ["--log-level", "error", "--no-flow-events", "--no-dns-events"])
        XCTAssertEqual(r.status, 0, r.stderr)
        return r.lines
    }

    /// Two `replay --flow-shard` processes at once, each publishing its host facts.
    func publishShards(_ url: String, files: [String]) throws {
        // A spool per sensor (as on separate machines: one process may hold a spool).
        let spools = [try spoolDirectory(), try spoolDirectory()]
        let errors = NSLock()
        var problems: [String] = []
        DispatchQueue.concurrentPerform(iterations: 2) { i in
            do {
                let lines = try replay(files + ["--flow-shard", "\(i)/2", "--host-facts", "\(url)?spool=\(spools[i])", "--sensor-name", "shard\(i)"])
                // The cross-flow detectors run in the aggregator, not here.
                let local = try Self.alerts(lines)
                if !local.identities.isEmpty { errors.lock(); problems.append("shard \(i) alerted locally: \(local.identities.prefix(2))"); errors.unlock() }
            } catch {
                errors.lock(); problems.append("\(error)"); errors.unlock()
            }
        }
        XCTAssertEqual(problems, [])
    }

    func aggregate(_ url: String, _ extra: [String] = []) throws -> (Alerts, TestSupport.ProcessResult) {
        let r = try TestSupport.sensor(["aggregate", "--host-facts", url, "--lateness", "2", "--exit-at-end", "--log-level", "error"] + extra)
        XCTAssertEqual(r.status, 0, r.stderr)
        return (try Self.alerts(r.lines), r)
    }

    func testShardedSensorsThroughKafkaGiveTheSingleReplaysAlerts() throws {
        let boot = try startBroker(["hostfacts:4"])
        let files = try Self.captures()
        let single = try Self.alerts(try replay(files))
        let categories = Set(single.identities.map { String($0.split(separator: " ")[1]) })
        XCTAssertEqual(categories, Self.hostCategories, "the capture set should raise every cross-flow category")
        let url = "kafka://\(boot)/hostfacts"
        try publishShards(url, files: files)
        let (merged, run) = try aggregate(url)
        let a = Set(single.identities), b = Set(merged.identities)
        // The aggregator's alerts carry the wall time they were emitted (event.created); a replay's depend
        // on the input alone.
        let created = run.lines.filter { $0.contains("\"spanwatch.alert\"") }
        XCTAssertFalse(created.isEmpty)
        XCTAssertEqual(created.filter { !$0.contains("\"created\":\"") }, [])
        XCTAssertEqual(try replay(files).filter { $0.contains("\"created\":\"") }, [])
        XCTAssertEqual(merged.identities, single.identities,
                       "only from aggregate: \(b.subtracting(a).sorted().prefix(3)); only from replay: \(a.subtracting(b).sorted().prefix(3))")
        // Every record came through the merge in order: none late, none refused.
        XCTAssertEqual(merged.stats["late"] as? Int, 0, run.stdoutText.suffix(600).description)
        XCTAssertEqual(merged.stats["garbage"] as? Int, 0)
        XCTAssertEqual(merged.stats["partitions"] as? Int, 4)
        XCTAssertGreaterThan(merged.stats["facts"] as? Int ?? 0, 1000)
        // The partitions' detectors, summed: every cross-flow alert counted once.
        XCTAssertEqual(merged.hostStage["shards"] as? Int, 4)
        let counted = Self.hostCategories.map { (merged.hostStage[$0] as? [String: Any])?["alerts"] as? Int ?? -1 }.reduce(0, +)
        XCTAssertEqual(counted, merged.identities.count, "\(merged.hostStage)")
    }

    /// Writes one message per file to `partition` with kcat.
    func produceRaw(_ boot: String, topic: String, partition: Int, _ messages: [Data]) throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("agg-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var paths: [String] = []
        for (i, m) in messages.enumerated() {
            let p = dir.appendingPathComponent("m\(i)").path
            try m.write(to: URL(fileURLWithPath: p))
            paths.append(p)
        }
        let r = try TestSupport.run("kcat", ["-P", "-b", boot, "-t", topic, "-p", "\(partition)", "-X", "log_level=3"] + paths)
        XCTAssertEqual(r.status, 0, r.stderr)
    }

    func envelope(_ type: HostFactEnvelope.RecordType, watermark: Int64, sensor: String) -> Data {
        var d = Data(count: HostFactEnvelope.maxHeader)
        let n = d.withUnsafeMutableBytes {
            HostFactEnvelope.writeHeader($0.baseAddress!, type: type, watermark: watermark,
                                         producer: HostFactEnvelope.Producer(sensor: sensor, session: 7, worker: 0))
        }
        return d.prefix(n)
    }

    /// A producer that announced itself and went quiet (no end record) holds the merge back only for
    /// the lateness bound; records that are not envelopes, or of another schema version, are counted and
    /// skipped.
    func testQuietProducerAndBadRecordsDoNotStallTheMerge() throws {
        let boot = try startBroker(["hostfacts:4"])
        let url = "kafka://\(boot)/hostfacts?spool=\(try spoolDirectory())"
        let files = try TestSupport.requiredCaptures(["beacon", "lateral"])
        var future = envelope(.watermark, watermark: 1, sensor: "future")
        future[2] = HostFactEnvelope.version &+ 1
        for p in 0..<4 {
            try produceRaw(boot, topic: "hostfacts", partition: p, [
                envelope(.watermark, watermark: 1_000_000_000, sensor: "quiet"),
                Data("not a host fact".utf8), Data([0x48, 0x46]), future,
            ])
        }
        let single = try Self.alerts(try replay(files))
        XCTAssertFalse(single.identities.isEmpty)
        _ = try replay(files + ["--host-facts", url, "--sensor-name", "busy"])
        let started = Date()
        let (merged, run) = try aggregate(url)
        let took = Date().timeIntervalSince(started)
        XCTAssertEqual(merged.identities, single.identities)
        XCTAssertEqual(merged.stats["quiet_producers"] as? Int, 4, run.stderr)
        XCTAssertEqual(merged.stats["garbage"] as? Int, 8)
        XCTAssertEqual(merged.stats["unknown_version"] as? Int, 4)
        // Hold (2 s) and lateness (2 s) and the exit check, not a stall.
        XCTAssertLessThan(took, 30)
    }

    /// `--exit-at-end` on a topic no producer writes to stops after `--producer-wait`, saying so, with
    /// exit 66 (a batch run whose sensors never started must not wait forever).
    func testExitAtEndWithoutAProducerStopsAfterTheBound() throws {
        let boot = try startBroker(["hostfacts:4"])
        let started = Date()
        let r = try TestSupport.sensor(["aggregate", "--host-facts", "kafka://\(boot)/hostfacts", "--exit-at-end", "--producer-wait", "3",
                                        "--log-level", "error"])
        let took = Date().timeIntervalSince(started)
        XCTAssertEqual(r.status, 66, r.stderr)
        XCTAssertTrue(r.stderr.contains("no producer appeared on the owned partitions"), r.stderr)
        XCTAssertGreaterThanOrEqual(took, 3)
        // The group join (a few seconds on the mock cluster) and the bound, with room for a loaded machine.
        XCTAssertLessThan(took, 40)
        let a = try Self.alerts(r.lines)
        XCTAssertEqual(a.stats["records"] as? Int, 0, "the end-of-run statistics are still written")
        let refused = try TestSupport.sensor(["aggregate", "--host-facts", "kafka://\(boot)/hostfacts", "--producer-wait", "3"])
        XCTAssertEqual(refused.status, 64, "--producer-wait without --exit-at-end: \(refused.stderr)")
    }

    /// A cluster that cannot be reached at start is an error naming it, for the producer and the
    /// aggregator alike (the mock cluster creates any topic asked for, so a missing topic is not tested here;
    /// the producer asks the cluster not to create one: `allow.auto.create.topics=false`).
    func testUnreachableClusterIsAClearError() throws {
        let nobody = "kafka://127.0.0.1:\(TestSupport.freePort())/hostfacts?flush_timeout=2"
        let file = try TestSupport.requiredCaptures(["beacon"])[0]
        let r = try TestSupport.sensor(["replay", file, "--host-facts", "\(nobody)&spool=\(try spoolDirectory())", "--log-level", "error"])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("cannot read the topic's metadata"), r.stderr)
        let a = try TestSupport.sensor(["aggregate", "--host-facts", nobody, "--log-level", "error"])
        XCTAssertEqual(a.status, 1, a.stderr)
        XCTAssertTrue(a.stderr.contains("cannot read the topic's metadata"), a.stderr)
        let bad = try TestSupport.sensor(["replay", file, "--host-facts", "syslog+udp://127.0.0.1:514"])
        XCTAssertEqual(bad.status, 64, bad.stderr)
        let noTopic = try TestSupport.sensor(["aggregate"])
        XCTAssertEqual(noTopic.status, 64, noTopic.stderr)
    }

    /// `host_facts:` in the YAML is checked as the flag is.
    func testHostFactsInTheConfigFile() throws {
        let dir = try spoolDirectory()
        let good = dir + "/good.yaml", bad = dir + "/bad.yaml"
        try "host_facts: \"kafka://127.0.0.1:9092/sensor-hostfacts?spool=/var/lib/sensor/spool\"\n".write(toFile: good, atomically: true, encoding: .utf8)
        try "host_facts: \"kafka://127.0.0.1:9092/hf-{dataset}\"\n".write(toFile: bad, atomically: true, encoding: .utf8)
        let ok = try TestSupport.sensor(["check-config", good])
        XCTAssertEqual(ok.status, 0, ok.stderr)
        let refused = try TestSupport.sensor(["check-config", bad])
        XCTAssertEqual(refused.status, 78, refused.stderr)
        XCTAssertTrue((refused.stderr + refused.stdoutText).contains("bad.yaml:1"), refused.stderr)
    }

    /// Every line `p` writes until `timeout` passes with none.
    func drain(_ p: BackgroundProcess, idle timeout: Double) -> [String] {
        var lines: [String] = []
        while true {
            if let l = p.readLine(timeout: p.process.isRunning ? timeout : 0.5) { lines.append(l) } else { break }
        }
        return lines
    }

    /// Two aggregators in one group, then two where one is killed with SIGKILL after its first alert and
    /// the other takes over its partitions: each time the union of what was emitted is the single replay's alert set, and an alert
    /// emitted twice (a partition rebuilt by its new owner) carries the same `event.id` both times.
    func testGroupMembersAndATakeoverEmitEveryAlertWithOneID() throws {
        let boot = try startBroker(["hostfacts:4"])
        let url = "kafka://\(boot)/hostfacts"
        let files = try Self.captures()
        let single = try Self.alerts(try replay(files))
        try publishShards(url, files: files)
        // Short sessions, so the group notices a killed member within seconds.
        let consumer = url + "?session.timeout.ms=6000&heartbeat.interval.ms=500"

        // Counted once per event.id, the alerts are the single replay's: every re-emitted alert kept its id.
        func check(_ lines: [String], _ what: String) throws {
            let a = try Self.alerts(lines)
            XCTAssertEqual(a.byID.values.sorted(), single.identities, what)
            XCTAssertGreaterThanOrEqual(a.identities.count, a.byID.count)
        }

        // Two members at once, each to the end of the producers' streams.
        var both: [[String]] = [[], []]
        let lock = NSLock()
        DispatchQueue.concurrentPerform(iterations: 2) { i in
            let r = try? TestSupport.sensor(["aggregate", "--host-facts", consumer, "--group", "pair", "--lateness", "2",
                                             "--exit-at-end", "--log-level", "error"])
            XCTAssertEqual(r?.status, 0, r?.stderr ?? "")
            lock.lock(); both[i] = r?.lines ?? []; lock.unlock()
        }
        try check(both[0] + both[1], "two members")

        // Two members; one is SIGKILLed after its first alert, and the survivor takes over its partitions.
        let args = ["aggregate", "--host-facts", consumer, "--group", "takeover", "--lateness", "2", "--log-level", "info"]
        let cwd = TestSupport.repositoryRoot.path
        let victim = try BackgroundProcess(TestSupport.sensorBinary, args, currentDirectory: cwd)
        let survivor = try BackgroundProcess(TestSupport.sensorBinary, args, currentDirectory: cwd)
        XCTAssertTrue(TestSupport.waitUntil(timeout: 60) {
            victim.standardError.contains("partitions assigned") && survivor.standardError.contains("partitions assigned")
        }, "both members should own partitions: \(victim.standardError) \(survivor.standardError)")
        var killed: [String] = []
        while let l = victim.readLine(timeout: 60) {
            killed.append(l)
            if l.contains("\"spanwatch.alert\"") { break }
        }
        kill(victim.process.processIdentifier, SIGKILL)
        victim.process.waitUntilExit()
        killed += drain(victim, idle: 0.5)
        // The survivor's output until it owns every partition (the group noticed the death), then until it
        // has been quiet for a while (the rebuilt partitions' alerts are out).
        var kept: [String] = []
        let tookOver = TestSupport.waitUntil(timeout: 60) {
            if let l = survivor.readLine(timeout: 0.05) { kept.append(l) }
            return survivor.standardError.split(separator: "\n").last(where: { $0.contains("partitions assigned") })?.contains("[0, 1, 2, 3]") ?? false
        }
        XCTAssertTrue(tookOver, "the survivor should take every partition: \(survivor.standardError)")
        let before = kept.count
        while let l = survivor.readLine(timeout: 8) { kept.append(l) }
        survivor.stop()
        kept += drain(survivor, idle: 0.5)
        XCTAssertGreaterThan(try Self.alerts(Array(kept[before...])).identities.count, 0, "nothing re-emitted after the takeover")
        try check(killed + kept, "after SIGKILL")
    }
}
