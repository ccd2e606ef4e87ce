import Foundation
import SensorRuntime
import TestSupport
import XCTest

/// Deploy/prometheus: the alert rules pass Prometheus's own checks with a test series for every alert,
/// and the rules and the Grafana dashboard name only metrics a live sensor exports, each with help text.
final class MonitoringTests: XCTestCase {
    static let directory = TestSupport.repositoryRoot.appendingPathComponent("Deploy/prometheus")
    static let rules = directory.appendingPathComponent("sensor-alerts.yml")
    static let ruleTests = directory.appendingPathComponent("sensor-alerts.test.yml")
    static let dashboard = directory.appendingPathComponent("grafana-dashboard.json")

    /// Metric names (`sensor_…`) a file mentions.
    static func metricNames(in url: URL) throws -> Set<String> {
        let text = try String(contentsOf: url, encoding: .utf8)
        let regex = try NSRegularExpression(pattern: "\\bsensor_[a-z0-9_]+")
        let range = NSRange(text.startIndex..., in: text)
        return Set(regex.matches(in: text, range: range).map { String(text[Range($0.range, in: text)!]) })
    }

    func testAlertRulesPassPromtoolWithATestForEveryAlert() throws {
        guard TestSupport.hasTool("promtool") else { throw XCTSkip("promtool not installed (scripts/install-deps.sh test: prometheus)") }
        let check = try TestSupport.run("promtool", ["check", "rules", Self.rules.path])
        XCTAssertEqual(check.status, 0, check.stderr + check.stdoutText)
        XCTAssertTrue(check.stdoutText.contains("SUCCESS: 7 rules found"), check.stdoutText)
        let test = try TestSupport.run("promtool", ["test", "rules", Self.ruleTests.path], currentDirectory: Self.directory.path)
        XCTAssertEqual(test.status, 0, test.stderr + test.stdoutText)
        XCTAssertTrue(test.stdoutText.contains("SUCCESS"), test.stdoutText)

        // Every alert is tested firing (a non-empty exp_alerts) and quiet (an empty one).
        let rules = try String(contentsOf: Self.rules, encoding: .utf8)
        let tests = try String(contentsOf: Self.ruleTests, encoding: .utf8)
        let alerts = rules.split(separator: "\n").compactMap { line -> String? in
            let t = line.trimmingCharacters(in: .whitespaces)
            return t.hasPrefix("- alert: ") ? String(t.dropFirst("- alert: ".count)) : nil
        }
        XCTAssertEqual(Set(alerts), ["SensorCaptureLoss", "SensorHostFactRingDrops", "SensorOutputSpoolGrowing",
                                     "SensorOutputDroppingEvents", "SensorNoPackets", "SensorAggregatorLag", "SensorDetectorEvicting"])
        let lines = tests.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        for alert in alerts {
            let cases = lines.indices.filter { lines[$0] == "alertname: \(alert)" }.map { lines[$0 + 1] }
            XCTAssertTrue(cases.contains("exp_alerts: []"), "\(alert): no case where it stays quiet")
            XCTAssertTrue(cases.contains("exp_alerts:"), "\(alert): no case where it fires")
        }
    }

    /// A live sensor's /metrics: every family has the help text and type of its `SensorMetric` case, every
    /// case is exported, and the dashboard and the alert rules use no other metric name.
    func testLiveScrapeHasHelpOnEveryMetricAndCoversTheDashboardAndRules() throws {
        guard getuid() == 0 else { throw XCTSkip("needs root for network namespaces (CI runs as root)") }
        guard TestSupport.hasTool("tcpreplay") else { throw XCTSkip("tcpreplay not installed (scripts/install-deps.sh test)") }
        let dir = try TestSupport.temporaryDirectory("metrics")
        defer { try? FileManager.default.removeItem(at: dir) }
        // An indicator on the capture's server: an alert while the sensor runs, so sensor_alerts_total exists.
        let indicators = dir.appendingPathComponent("ips.txt")
        try "192.150.187.43\n".write(to: indicators, atomically: true, encoding: .utf8)
        let lab = try VethLab()
        defer { lab.close() }
        let port = Int.random(in: 20000...40000)
        let sensor = try lab.startSensor(["--workers", "2", "--allow-root", "--stats-interval", "1", "--indicators", indicators.path,
                                          "--metrics", "127.0.0.1:\(port)"])
        try sensor.waitUntilCapturing()
        try lab.replay([TestSupport.data("pcaps/c2-nonstd-port/http-on-port-5432.pcap"),
                        TestSupport.data("pcaps/dns-tunnel/dnscat2.pcap")])
        // Workers publish once a second; the alert comes when its flow's facts reach the aggregator.
        var scrape = ""
        let deadline = Date().addingTimeInterval(20)
        repeat {
            Thread.sleep(forTimeInterval: 1)
            scrape = try lab.scrape(port: port)
        } while !(scrape.contains("sensor_alerts_total{") && scrape.contains("sensor_host_stage_lag_seconds{")) && Date() < deadline
        XCTAssertEqual(sensor.terminate(), 0, sensor.stderr)

        var help: [String: String] = [:], type: [String: String] = [:]
        // `isNewline`: the HTTP head ends in CRLF, a single Character that a split on "\n" would not cut.
        for line in scrape.split(whereSeparator: \.isNewline) {
            let parts = line.split(separator: " ", maxSplits: 3).map(String.init)
            guard parts.count >= 4, parts[0] == "#" else { continue }
            if parts[1] == "HELP" { help[parts[2]] = parts[3] }
            if parts[1] == "TYPE" { type[parts[2]] = parts[3] }
        }
        let exported = Set(type.keys)
        XCTAssertEqual(exported, Set(SensorMetric.allCases.map(\.rawValue)),
                       "exported but not catalogued: \(exported.subtracting(SensorMetric.allCases.map(\.rawValue))); catalogued but not exported: \(Set(SensorMetric.allCases.map(\.rawValue)).subtracting(exported))\n\(scrape)")
        for m in SensorMetric.allCases {
            XCTAssertEqual(help[m.rawValue], m.help, m.rawValue)
            XCTAssertEqual(type[m.rawValue], m.kind.rawValue, m.rawValue)
        }
        XCTAssertTrue(scrape.contains("sensor_alerts_total{category=\"threat_intel\""), scrape)
        // The aggregator's lag, in seconds, on a healthy sensor: a few milliseconds, not a unit error.
        let lag = scrape.split(whereSeparator: \.isNewline).first { $0.hasPrefix("sensor_host_stage_lag_seconds{shard=\"0\"} ") }
        let lagValue = lag.flatMap { Double($0.split(separator: " ").last ?? "") }
        XCTAssertNotNil(lagValue, scrape)
        XCTAssertLessThan(lagValue ?? .infinity, 5)

        let dashboard = try Self.metricNames(in: Self.dashboard)
        XCTAssertTrue(dashboard.isSuperset(of: ["sensor_capture_kernel_drops_total", "sensor_host_stage_lag_seconds", "sensor_output_spool_bytes"]))
        XCTAssertEqual(dashboard.subtracting(exported), [], "dashboard metrics the sensor does not export")
        XCTAssertEqual(try Self.metricNames(in: Self.rules).subtracting(exported), [], "alert-rule metrics the sensor does not export")
        // And the dashboard is JSON Grafana can import: panels with Prometheus targets.
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: Self.dashboard)) as? [String: Any]
        let panels = json?["panels"] as? [[String: Any]] ?? []
        XCTAssertGreaterThan(panels.filter { ($0["targets"] as? [[String: Any]])?.isEmpty == false }.count, 8)
    }
}
