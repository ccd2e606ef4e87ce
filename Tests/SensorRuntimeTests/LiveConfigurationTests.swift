import Capture
import ConfigKit
import Foundation
import SensorRuntime
import XCTest

final class LiveConfigurationTests: XCTestCase {
    func testLiveSectionsParse() throws {
        let c = try SensorConfiguration.parse(text: """
            capture:
              interface: eth1
              workers: 2
              cpus: [2, 3]
              buffer_mb: 128
              promiscuous: false
              stats_interval: 5m
              loss_warning: 0.05
            privileges:
              user: sensor
              group: sensor
              state_directory: /var/lib/sensor
            metrics:
              listen: "[::1]:9200"
            """)
        XCTAssertEqual(c.live.interface, "eth1")
        XCTAssertEqual(c.live.workers, 2)
        XCTAssertEqual(c.live.cpus, [2, 3])
        XCTAssertEqual(c.live.bufferMegabytes, 128)
        XCTAssertFalse(c.live.promiscuous)
        XCTAssertEqual(c.live.statsIntervalSeconds, 300)
        XCTAssertEqual(c.live.lossWarningFraction, 0.05)
        XCTAssertEqual(c.privileges.user, "sensor")
        XCTAssertEqual(c.privileges.stateDirectory, "/var/lib/sensor")
        XCTAssertEqual(c.metrics.listen, ListenAddress(host: "::1", port: 9200))
        XCTAssertTrue(c.metrics.listen.isLoopback)
        XCTAssertEqual(c.privateDirectories.map(\.path), ["/var/lib/sensor"])
        XCTAssertTrue(c.live.validate().isEmpty)
    }

    func testHostStageSettingsParseWithDefaultsAndBounds() throws {
        XCTAssertEqual(SensorConfiguration().live.hostShards, 1)
        XCTAssertEqual(SensorConfiguration().live.hostRingKilobytes, 4096)
        let c = try SensorConfiguration.parse(text: """
            capture:
              host_shards: 4
              host_ring_kb: 1024
            """)
        XCTAssertEqual(c.live.hostShards, 4)
        XCTAssertEqual(c.live.hostRingKilobytes, 1024)
        XCTAssertThrowsError(try SensorConfiguration.parse(text: "capture:\n  host_shards: 0\n")) { e in
            XCTAssertTrue("\(e)".contains("host_shards"), "\(e)")
        }
        XCTAssertThrowsError(try SensorConfiguration.parse(text: "capture:\n  host_ring_kb: 8\n"))
    }

    func testEveryMistakeIsReportedWithItsLine() {
        XCTAssertThrowsError(try SensorConfiguration.parse(text: """
            capture:
              workers: 0
              cpus: [a]
              loss_warning: 2
            privileges:
              state_directory: relative/path
              shell: /bin/sh
            metrics:
              listen: example.org:80
            """, file: "c.yaml")) { error in
            let issues = (error as! ConfigIssues).issues.map(\.description)
            XCTAssertEqual(issues.count, 6, "\(issues)")
            XCTAssertTrue(issues.contains { $0.hasPrefix("c.yaml:2:") && $0.contains("workers") }, "\(issues)")
            XCTAssertTrue(issues.contains { $0.hasPrefix("c.yaml:7:") && $0.contains("unknown key 'shell'") }, "\(issues)")
            XCTAssertTrue(issues.contains { $0.contains("literal IPv4 or IPv6") }, "\(issues)")
        }
    }

    func testValidateNeedsInterfaceAndOneCPUPerWorker() {
        var l = LiveConfiguration()
        XCTAssertEqual(l.validate().count, 1)
        l.interface = "eth0"
        l.workers = 3
        l.cpus = [0, 0]
        XCTAssertEqual(l.validate().count, 2)
    }

    func testListenAddressParsing() throws {
        XCTAssertEqual(try ListenAddress(parsing: "0.0.0.0:9109").description, "0.0.0.0:9109")
        XCTAssertFalse(try ListenAddress(parsing: "0.0.0.0:9109").isLoopback)
        XCTAssertEqual(try ListenAddress(parsing: "[::1]:1").description, "[::1]:1")
        XCTAssertThrowsError(try ListenAddress(parsing: "127.0.0.1"))
        XCTAssertThrowsError(try ListenAddress(parsing: "127.0.0.1:70000"))
        XCTAssertThrowsError(try ListenAddress(parsing: "[::1]9109"))
    }

    func testPrivateDirectoryRefusesWorldAccessAndCreatesPrivate() throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("pd-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: base) }
        let fresh = base.appendingPathComponent("a/b").path
        try PrivateDirectory.prepare(fresh, mode: 0o700)
        let attrs = try FileManager.default.attributesOfItem(atPath: fresh)
        XCTAssertEqual((attrs[.posixPermissions] as? NSNumber)?.intValue, 0o700)
        XCTAssertNoThrow(try PrivateDirectory.check(fresh))

        let open = base.appendingPathComponent("open").path
        try FileManager.default.createDirectory(atPath: open, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        XCTAssertThrowsError(try PrivateDirectory.prepare(open)) { e in
            XCTAssertTrue("\(e)".contains("accessible to every user (mode 755)"), "\(e)")
        }
        let link = base.appendingPathComponent("link").path
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: fresh)
        XCTAssertThrowsError(try PrivateDirectory.check(link))
        let file = base.appendingPathComponent("file").path
        FileManager.default.createFile(atPath: file, contents: Data())
        XCTAssertThrowsError(try PrivateDirectory.check(file))
    }

    func testReloadMailboxHandsOverOnlyNewerSnapshots() {
        let m = ReloadMailbox()
        XCTAssertNil(m.take(newerThan: 0))
        var rules = RulesSet.defaults
        rules.generation = 1
        m.post(rules)
        XCTAssertEqual(m.take(newerThan: 0)?.generation, 1)
        XCTAssertNil(m.take(newerThan: 1))
    }

    /// The endpoint answers GET /metrics with the Prometheus text format, 404 elsewhere.
    func testMetricsEndpointServesPrometheusText() async throws {
        let metrics = SensorMetrics()
        let endpoint = try MetricsEndpoint(address: ListenAddress(host: "127.0.0.1", port: 0), metrics: metrics,
                                           logger: .init(label: "test"))
        XCTAssertGreaterThan(endpoint.boundPort, 0)
        let w = WorkerMetrics(metrics: metrics, worker: 3)
        _ = w
        let task = Task { try await endpoint.run() }
        defer { task.cancel() }
        let body = try await Self.get("http://127.0.0.1:\(endpoint.boundPort)/metrics")
        XCTAssertEqual(body.status, 200)
        XCTAssertTrue(body.text.contains("# TYPE sensor_packets_total counter"), body.text)
        XCTAssertTrue(body.text.contains("sensor_packets_total{worker=\"3\"} 0"), body.text)
        let missing = try await Self.get("http://127.0.0.1:\(endpoint.boundPort)/other")
        XCTAssertEqual(missing.status, 404)
    }

    static func get(_ url: String) async throws -> (status: Int, text: String) {
        // Plain sockets rather than URLSession: FoundationNetworking is not linked by this target.
        let parts = url.dropFirst("http://".count).split(separator: "/", maxSplits: 1)
        let hostPort = parts[0].split(separator: ":")
        let port = UInt16(hostPort[1])!
        let path = "/" + (parts.count > 1 ? String(parts[1]) : "")
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = port.bigEndian
        inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr)
        let rc = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        XCTAssertEqual(rc, 0)
        let req = Array("GET \(path) HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
        _ = req.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = recv(fd, &buf, buf.count, 0)
            if n <= 0 { break }
            out.append(contentsOf: buf[0..<n])
        }
        let text = String(decoding: out, as: UTF8.self)
        let status = Int(text.split(separator: " ").dropFirst().first ?? "") ?? 0
        return (status, text)
    }
}
