import Foundation
import HostStage
import Outputs
import TestSupport
import XCTest

/// `sensor aggregate`'s checkpoints against the mock cluster (4 partitions), with the real binary:
/// a member SIGKILLed after a checkpoint is succeeded by one that resumes from it, and a checkpoint
/// record that is not one is counted and its partition rebuilt from the log.
extension AggregateTests {
    /// Every record of `topic`'s partitions, in offset order (read with the aggregator's consumer).
    /// Every record of `topic`, per partition: read until a second passes without one once `partitions`
    /// partitions gave some (or 60 s passed: then the caller's count shows what is missing). A loaded
    /// machine can leave a second between one partition's first fetch and another's.
    func records(_ boot: String, topic: String, partitions: Int) throws -> [Int: [Data]] {
        var o = try KafkaOutputOptions(url: "kafka://\(boot)/\(topic)")
        o.properties.append(.init("enable.partition.eof", "false"))
        let c = try KafkaRecordConsumer(options: o, group: "copy-\(UUID().uuidString)")
        var out: [Int: [Data]] = [:]
        var quiet = 0
        let deadline = Date().addingTimeInterval(60)
        while quiet < 10 || (out.count < partitions && Date() < deadline) {
            if c.poll(timeoutMs: 100, { p, _, v in out[p, default: []].append(Data(v)) }) { quiet = 0 } else if !out.isEmpty { quiet += 1 }
        }
        c.close()
        return out
    }

    /// Writes `records[p]` to partition p of `topic` (the key's route is the partition) in `steps`
    /// portions, one every `pause` seconds, each with that portion of every producer's records (in
    /// their order): producers as live sensors' look, never quiet for long. (Portions of the partition's
    /// offsets would not do: two replays publish at their own pace, so a producer's records can sit far
    /// apart in a partition, and the aggregator rightly takes it for quiet after `--lateness`.)
    func trickle(_ records: [Int: [Data]], to boot: String, topic: String, steps: Int, pause: Double) throws {
        var o = try KafkaOutputOptions(url: "kafka://\(boot)/\(topic)?spool=\(try spoolDirectory())")
        o.key = .route
        let sink = try KafkaSink(options: o)
        let byProducer = records.mapValues { values in
            var streams: [HostFactEnvelope.Producer: [Data]] = [:]
            var order: [HostFactEnvelope.Producer] = []
            for v in values {
                guard case .success(let d) = v.withUnsafeBytes({ HostFactEnvelope.decode($0) }) else { continue }
                if streams[d.producer] == nil { order.append(d.producer) }
                streams[d.producer, default: []].append(v)
            }
            return order.map { streams[$0]! }
        }
        for step in 0..<steps {
            for (p, streams) in byProducer {
                let key = withUnsafeBytes(of: UInt64(p).bigEndian) { Data($0) }
                for values in streams {
                    for v in values[(values.count * step / steps)..<(values.count * (step + 1) / steps)] {
                        v.withUnsafeBytes { vb in key.withUnsafeBytes { sink.produce(vb, key: $0) } }
                    }
                }
            }
            Thread.sleep(forTimeInterval: pause)
        }
        try sink.close()
    }

    /// Two sensors' host facts reach the topic over 3 s, as from live sensors (staged on another topic
    /// first, so the kill falls mid-stream whatever the machine's speed). An aggregator SIGKILLed after its
    /// first checkpoint is succeeded by a new member of the group, which resumes the checkpointed
    /// partitions and reads the rest.
    func testKilledAggregatorsSuccessorResumesFromItsCheckpoint() throws {
        let boot = try startBroker(["staging:4", "hostfacts:4", "hostfacts-checkpoints:4"])
        let files = try Self.captures()
        let single = try Self.alerts(try replay(files))
        try publishShards("kafka://\(boot)/staging", files: files)
        let staged = try records(boot, topic: "staging", partitions: 4)
        let published = staged.values.reduce(0) { $0 + $1.count }
        XCTAssertEqual(staged.count, 4)

        // Short sessions: the successor's join waits for the dead member's session to expire.
        let consumer = "kafka://\(boot)/hostfacts?session.timeout.ms=3000&heartbeat.interval.ms=300"
        let args = ["aggregate", "--host-facts", consumer, "--group", "failover", "--lateness", "2", "--checkpoint-interval", "300r"]
        let victim = try BackgroundProcess(TestSupport.sensorBinary, args + ["--log-level", "info"], currentDirectory: TestSupport.repositoryRoot.path)
        XCTAssertTrue(TestSupport.waitUntil(timeout: 30) { victim.standardError.contains("partitions assigned") }, victim.standardError)
        let publishing = DispatchGroup()
        // Written by the publishing task, read after `publishing.wait` (which orders the two).
        final class Outcome: @unchecked Sendable { var trickled = false }
        let outcome = Outcome()
        DispatchQueue.global().async(group: publishing) {
            outcome.trickled = (try? self.trickle(staged, to: boot, topic: "hostfacts", steps: 20, pause: 0.15)) != nil
        }
        var killed: [String] = []
        let checkpointed = TestSupport.waitUntil(timeout: 30) {
            if let l = victim.readLine(timeout: 0.01) { killed.append(l) }
            return victim.standardError.contains("checkpoint committed")
        }
        XCTAssertTrue(checkpointed, "no checkpoint: \(victim.standardError.suffix(2000))")
        kill(victim.process.processIdentifier, SIGKILL)
        victim.process.waitUntilExit()
        killed += drain(victim, idle: 0.5)
        XCTAssertNil(try Self.alerts(killed).stats["records"], "killed before its end-of-run statistics")
        XCTAssertEqual(publishing.wait(timeout: .now() + 30), .success)
        XCTAssertTrue(outcome.trickled)
        let (after, run) = try aggregate(consumer, ["--group", "failover", "--checkpoint-interval", "300r", "--log-level", "info"])
        XCTAssertGreaterThanOrEqual(after.stats["restored"] as? Int ?? 0, 1, run.stderr.suffix(3000).description)
        XCTAssertTrue(run.stderr.contains("partition restored from its checkpoint"), run.stderr.suffix(2000).description)
        XCTAssertEqual(after.stats["checkpoint_refused"] as? Int, 0)
        // Restored partitions were read from their checkpoints' offsets, not from the start; the
        // partitions' record counts continue the checkpoints' (each record counted once).
        let read = after.stats["read"] as? Int ?? 0
        XCTAssertLessThan(read, published, "the successor read every record again")
        XCTAssertEqual(after.stats["records"] as? Int, published)
        XCTAssertGreaterThan(after.identities.count, 0, "nothing left to detect after the kill")
        // Up to the checkpoint and after it, the merge applied every record in order (the single
        // replay's alerts are expected only then).
        XCTAssertEqual(after.stats["late"] as? Int, 0, run.stderr.suffix(2000).description)
        XCTAssertEqual(after.stats["quiet_producers"] as? Int, 0)
        // Counted once per event.id, the two members' alerts are the single replay's: nothing lost, and
        // what both emitted (after the checkpoint, before the kill) kept its id.
        let union = try Self.alerts(killed + run.lines)
        let a = Set(single.identities), b = Set(union.byID.values)
        XCTAssertEqual(union.byID.values.sorted(), single.identities,
                       "only after failover: \(b.subtracting(a).sorted().prefix(3)); missing: \(a.subtracting(b).sorted().prefix(3))")
        print("failover figures: published \(published), successor read \(read), reread \(after.stats["reread"] ?? "-"), late \(after.stats["late"] ?? "-"), quiet \(after.stats["quiet_producers"] ?? "-"), restored \(after.stats["restored"] ?? "-"), alerts before kill \(try Self.alerts(killed).identities.count), after \(after.identities.count)")
    }

    func testCorruptCheckpointIsCountedAndThePartitionRebuiltFromTheLog() throws {
        let boot = try startBroker(["hostfacts:4", "hostfacts-checkpoints:4"])
        let url = "kafka://\(boot)/hostfacts"
        let files = try TestSupport.requiredCaptures(["beacon", "lateral"])
        let single = try Self.alerts(try replay(files))
        XCTAssertFalse(single.identities.isEmpty)
        _ = try replay(files + ["--host-facts", "\(url)?spool=\(try spoolDirectory())", "--sensor-name", "one"])
        // Group "corrupt", partition 1: a record under its key that is not a checkpoint.
        let r = try TestSupport.run("kcat", ["-P", "-b", boot, "-t", "hostfacts-checkpoints", "-p", "1", "-K", "|", "-X", "log_level=3"],
                                    stdin: Data("corrupt/1|HC\u{1}not a checkpoint at all\n".utf8))
        XCTAssertEqual(r.status, 0, r.stderr)
        let (merged, run) = try aggregate(url, ["--group", "corrupt"])
        XCTAssertEqual(merged.stats["checkpoint_refused"] as? Int, 1, run.stderr)
        XCTAssertEqual(merged.stats["restored"] as? Int, 0)
        XCTAssertEqual(merged.identities, single.identities)
        // Its end state was checkpointed: a later member of the group resumes there and reads nothing again.
        XCTAssertGreaterThan(merged.stats["checkpoints"] as? Int ?? 0, 0)
        // The Elastic template maps every field of the statistics event.
        let line = try XCTUnwrap(run.lines.first { $0.contains("\"aggregate\":{") })
        let event = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        XCTAssertEqual(ElasticArtefactsTests.unmapped(event, try ElasticArtefactsTests.mappings()), [])
    }
}
