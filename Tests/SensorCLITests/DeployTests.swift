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
}
