import Events
import Foundation
import TestSupport
import XCTest

/// Deploy/: the example configuration is accepted as it is, and the systemd unit passes systemd's own checks.
final class DeployTests: XCTestCase {
    func testExampleConfigurationIsAccepted() throws {
        let r = try TestSupport.sensor(["check-config", "Deploy/sensor.example.yaml"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdoutText.contains("OK"))
    }

    func testSystemdUnitVerifiesAndScoresWell() throws {
        guard TestSupport.hasTool("systemd-analyze") else { throw XCTSkip("systemd-analyze not installed") }
        let script = TestSupport.repositoryRoot.appendingPathComponent("Deploy/check-unit.sh").path
        let r = try TestSupport.run(script, [TestSupport.sensorBinary, "2.5"])
        XCTAssertEqual(r.status, 0, r.stderr + r.stdoutText)
        XCTAssertTrue(r.stdoutText.contains("Overall exposure level"), r.stdoutText)
    }

    func testKafkaTopicScriptParses() throws {
        let r = try TestSupport.run("bash", ["-n", TestSupport.repositoryRoot.appendingPathComponent("Deploy/kafka-topics.sh").path])
        XCTAssertEqual(r.status, 0, r.stderr)
    }

    /// `EventDataset` lists exactly the datasets the emitters declare, and Deploy/kafka-topics.sh creates
    /// one topic per dataset, named as the output's `{dataset}` topic names it (run with a stand-in for
    /// kafka-topics.sh that prints its arguments).
    func testKafkaTopicsAreTheRealDatasets() throws {
        var declared = Set<String>()
        let sources = TestSupport.repositoryRoot.appendingPathComponent("Sources")
        let e = try XCTUnwrap(FileManager.default.enumerator(atPath: sources.path))
        while let f = e.nextObject() as? String {
            guard f.hasSuffix(".swift") else { continue }
            let text = try String(contentsOf: sources.appendingPathComponent(f), encoding: .utf8)
            for part in text.components(separatedBy: "dataset: \"spanwatch.").dropFirst() {
                declared.insert("spanwatch." + part.prefix { $0 != "\"" })
            }
        }
        let known = Set(EventDataset.allCases.map(\.qualifiedName))
        XCTAssertEqual(declared, known, "EventDataset must list every dataset an EventDescriptor declares")

        let dir = try TestSupport.temporaryDirectory("topics")
        defer { try? FileManager.default.removeItem(at: dir) }
        let fake = dir.appendingPathComponent("kafka-topics.sh").path
        try "#!/bin/sh\necho \"$@\"\n".write(toFile: fake, atomically: true, encoding: .utf8)
        chmod(fake, 0o755)
        for (template, prefix) in [(nil, ""), ("site1-{dataset}", "site1-")] as [(String?, String)] {
            let r = try TestSupport.run("bash", [TestSupport.repositoryRoot.appendingPathComponent("Deploy/kafka-topics.sh").path, "k1:9092"] + (template.map { [$0] } ?? []),
                                        environment: ["KAFKA_TOPICS": fake, "REPLICATION": "1"])
            XCTAssertEqual(r.status, 0, r.stderr)
            let topics = r.lines.compactMap { l -> String? in
                let w = l.split(separator: " ")
                return w.firstIndex(of: "--topic").map { String(w[w.index(after: $0)]) }
            }
            XCTAssertEqual(topics.count, known.count)
            XCTAssertEqual(Set(topics), Set(known.map { prefix + $0 }))
        }
    }
}
