import XCTest
import ConfigKit
import PacketCore
@testable import SensorRuntime

final class ConfigurationTests: XCTestCase {
    func testExampleConfigParses() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let c = try SensorConfiguration.load(path: root.appendingPathComponent("Deploy/sensor.example.yaml").path)
        XCTAssertEqual(c.sensorName, "sensor-dc1-span0")
        XCTAssertEqual(c.flows.tcpTimeout.nanoseconds, 300_000_000_000)
        XCTAssertEqual(c.flows.activeTimeout.nanoseconds, 1_800_000_000_000)
        XCTAssertEqual(c.homeNetworks.count, 4)
        XCTAssertEqual(c.outputs, [.stdout])
    }

    func testEveryErrorIsReportedWithItsLine() {
        let text = """
        sensor:
          name: s1
        flows:
          max: lots
          timeouts:
            udp: -5
        network:
          home: [10.0.0.0/8, not-a-net]
        outputz: []
        """
        XCTAssertThrowsError(try SensorConfiguration.parse(text: text, file: "c.yaml")) { error in
            let issues = (error as! ConfigIssues).issues
            XCTAssertEqual(issues.map(\.line), [4, 6, 8, 9], "\(issues)")
            XCTAssertTrue(issues[0].description.hasPrefix("c.yaml:4:"), issues[0].description)
            XCTAssertTrue(issues[0].message.contains("flows.max"))
            XCTAssertTrue(issues[2].message.contains("not-a-net"))
            XCTAssertTrue(issues[3].message.contains("unknown key 'outputz'"))
        }
    }

    /// `flows.max` is bounded (every analyser sizes a side table by it): the top is accepted, one more
    /// (or the 100,000,000 that once reserved 5.4 GB at start) is an error at its line and column.
    func testFlowCapacityIsBounded() throws {
        let top = FlowTableConfiguration.capacityRange.upperBound
        XCTAssertEqual(top, 16_777_216)
        XCTAssertEqual(try SensorConfiguration.parse(text: "flows:\n  max: \(top)\n").flows.capacity, top)
        for value in ["\(top + 1)", "100000000", "99999999999999", "1023"] {
            XCTAssertThrowsError(try SensorConfiguration.parse(text: "flows:\n  events: true\n  max: \(value)\n", file: "f.yaml"), value) { error in
                let issues = (error as! ConfigIssues).issues
                XCTAssertEqual(issues.count, 1, "\(issues)")
                XCTAssertTrue(issues.first?.description.hasPrefix("f.yaml:3:8: ") == true, "\(issues)")
                XCTAssertTrue(issues.first?.message.contains("between 1024 and 16777216") == true, "\(issues)")
            }
        }
    }

    func testReassemblyBounds() throws {
        let c = try SensorConfiguration.parse(text: """
        reassembly:
          held_per_flow: 1048576
          held_segments_per_flow: 64
          held_per_worker: 8388608
          parser_buffers_per_worker: 4194304
        """)
        XCTAssertEqual(c.reassembly.maxPendingBytesPerFlow, 1 << 20)
        XCTAssertEqual(c.reassembly.maxHeldSegmentsPerFlow, 64)
        XCTAssertEqual(c.reassembly.maxPendingBytesTotal, 8 << 20)
        XCTAssertEqual(c.parserMemoryLimit, 4 << 20)
        XCTAssertThrowsError(try SensorConfiguration.parse(text: "reassembly:\n  held_per_worker: 1\n  held_per_flowz: 5\n")) { error in
            XCTAssertEqual((error as! ConfigIssues).issues.map(\.line), [2, 3])
        }
    }

    func testSyntaxErrorHasLine() {
        XCTAssertThrowsError(try SensorConfiguration.parse(text: "flows:\n  max: [1, 2\n", file: "bad.yaml")) { error in
            let issue = (error as! ConfigIssues).issues[0]
            XCTAssertEqual(issue.file, "bad.yaml")
            XCTAssertGreaterThanOrEqual(issue.line, 2)
            XCTAssertTrue(issue.message.contains("YAML syntax"))
        }
    }

    func testDurationsAndBooleans() throws {
        let c = try SensorConfiguration.parse(text: "flows:\n  events: off\n  timeouts: {tcp: 2h, udp: 90, active: 0}\n")
        XCTAssertFalse(c.flowEvents)
        XCTAssertEqual(c.flows.tcpTimeout.nanoseconds, 7_200_000_000_000)
        XCTAssertEqual(c.flows.udpTimeout.nanoseconds, 90_000_000_000)
        XCTAssertEqual(c.flows.activeTimeout.nanoseconds, 0)
    }

    func testAnalyserFamiliesSwitch() throws {
        let c = try SensorConfiguration.parse(text: "dns: {enabled: false}\nc2: {enabled: false}\nlateral_movement:\n  enabled: no\n")
        XCTAssertFalse(c.dnsEnabled)
        XCTAssertFalse(c.c2Enabled)
        XCTAssertFalse(c.lateralMovementEnabled)
        let d = try SensorConfiguration.parse(text: "sensor: {name: s}\n")
        XCTAssertTrue(d.c2Enabled && d.lateralMovementEnabled && d.dnsEnabled)
        XCTAssertThrowsError(try SensorConfiguration.parse(text: "c2:\n  enabled: maybe\nlateral_movement: {on: true}\n", file: "f.yaml")) { error in
            let issues = (error as! ConfigIssues).issues
            XCTAssertEqual(issues.map(\.line), [2, 3], "\(issues)")
        }
    }
}
