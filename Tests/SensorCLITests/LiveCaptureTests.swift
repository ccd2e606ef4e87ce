import Foundation
import TestSupport
import XCTest

/// A private network lab: a network namespace of the test's own with a veth pair inside it. Traffic is
/// replayed onto one end and captured on the other; nothing leaves the namespace, which is deleted at
/// the end whatever happened.
final class VethLab {
    let namespace = "sensor-test-\(UInt32.random(in: 0...UInt32.max))"
    /// The end the sensor captures on, and the end tcpreplay sends from.
    let captureEnd = "vcap", replayEnd = "vrep"
    private var created = false

    init() throws {
        try sh("ip netns add \(namespace)")
        created = true
        try sh("""
            ip netns exec \(namespace) sh -ec '
              ip link set lo up
              ip link add \(replayEnd) type veth peer name \(captureEnd)
              ip link set \(replayEnd) mtu 65535; ip link set \(captureEnd) mtu 65535
              sysctl -qw net.ipv6.conf.all.disable_ipv6=1; sysctl -qw net.ipv6.conf.default.disable_ipv6=1
              ip link set \(replayEnd) up; ip link set \(captureEnd) up'
            """)
    }

    func close() {
        if created { _ = try? TestSupport.run("/bin/sh", ["-c", "ip netns del \(namespace)"]) }
        created = false
    }

    deinit { close() }

    @discardableResult
    func sh(_ script: String) throws -> TestSupport.ProcessResult {
        let r = try TestSupport.run("/bin/sh", ["-c", script])
        guard r.status == 0 else { throw LabError(message: "\(script): exit \(r.status): \(r.stderr)") }
        return r
    }

    /// Replays capture files onto the veth pair (inside the namespace only).
    func replay(_ files: [String], rate: [String] = ["--topspeed"]) throws {
        let r = try TestSupport.run("ip", ["netns", "exec", namespace, "tcpreplay", "-q", "-i", replayEnd] + rate + files)
        guard r.status == 0 else { throw LabError(message: "tcpreplay failed: \(r.stderr) \(r.stdoutText)") }
    }

    /// Starts `sensor run` on the capture end inside the namespace.
    /// `wrapper` runs before the sensor inside the namespace (e.g. setpriv, to start as systemd would).
    /// `environment` is added to the sensor's (e.g. `NOTIFY_SOCKET`, as systemd sets it).
    func startSensor(_ arguments: [String], wrapper: [String] = [], environment: [String: String] = [:]) throws -> LiveSensorProcess {
        try LiveSensorProcess(namespace: namespace, arguments: ["run", "--interface", captureEnd] + arguments, wrapper: wrapper,
                              environment: environment)
    }

    /// GET /metrics from inside the namespace (bash's /dev/tcp: no client tool needed).
    func scrape(port: Int) throws -> String {
        let script = "exec 3<>/dev/tcp/127.0.0.1/\(port); printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3"
        return try TestSupport.run("ip", ["netns", "exec", namespace, "bash", "-c", script]).stdoutText
    }
}

struct LabError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

/// A `sensor run` in the background, its stdout (events) and stderr (log) in files.
final class LiveSensorProcess {
    let process = Process()
    let directory: URL
    let stdoutURL: URL, stderrURL: URL

    init(namespace: String, arguments: [String], wrapper: [String] = [], environment: [String: String] = [:]) throws {
        directory = try TestSupport.temporaryDirectory("live")
        stdoutURL = directory.appendingPathComponent("events.ndjson")
        stderrURL = directory.appendingPathComponent("stderr.txt")
        FileManager.default.createFile(atPath: stdoutURL.path, contents: nil)
        FileManager.default.createFile(atPath: stderrURL.path, contents: nil)
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        // `ip netns exec` execs the sensor: the process id is the sensor's.
        process.arguments = ["ip", "netns", "exec", namespace] + wrapper + [TestSupport.sensorBinary] + arguments
        process.standardOutput = try FileHandle(forWritingTo: stdoutURL)
        process.standardError = try FileHandle(forWritingTo: stderrURL)
        process.standardInput = FileHandle.nullDevice
        process.currentDirectoryURL = TestSupport.repositoryRoot
        if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        try process.run()
    }

    var pid: Int32 { process.processIdentifier }
    var stderr: String { (try? String(contentsOf: stderrURL, encoding: .utf8)) ?? "" }

    /// Waits for the start-up log line (privileges dropped, workers about to run).
    func waitUntilCapturing(timeout: TimeInterval = 30) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if stderr.contains("capture started") {
                // The workers' threads start right after the line; give them a moment to reach their rings.
                Thread.sleep(forTimeInterval: 0.3)
                return
            }
            if !process.isRunning { throw LabError(message: "sensor exited \(process.terminationStatus): \(stderr)") }
            Thread.sleep(forTimeInterval: 0.05)
        }
        throw LabError(message: "sensor did not start: \(stderr)")
    }

    func waitFor(_ text: String, timeout: TimeInterval = 10) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if stderr.contains(text) { return true }
            Thread.sleep(forTimeInterval: 0.05)
        }
        return false
    }

    func signal(_ sig: Int32) { kill(pid, sig) }

    /// SIGTERM, then waits for the exit (SIGKILL after `timeout`). Returns the exit status.
    @discardableResult
    func terminate(timeout: TimeInterval = 30) -> Int32 {
        if process.isRunning { kill(pid, SIGTERM) }
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        if process.isRunning {
            kill(pid, SIGKILL)
            process.waitUntilExit()
            return -1
        }
        process.waitUntilExit()
        return process.terminationStatus
    }

    func events() throws -> [[String: Any]] {
        let data = try Data(contentsOf: stdoutURL)
        return try String(decoding: data, as: UTF8.self).split(separator: "\n").map { line in
            guard let o = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                throw LabError(message: "not JSON: \(line.prefix(200))")
            }
            return o
        }
    }

    /// `/proc/PID/status` fields (`Uid`, `CapEff`, …).
    func status(_ field: String, thread: String? = nil) -> String? {
        let path = thread.map { "/proc/\(pid)/task/\($0)/status" } ?? "/proc/\(pid)/status"
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(field + ":") {
            return line.dropFirst(field.count + 1).trimmingCharacters(in: .whitespaces)
        }
        return nil
    }

    deinit {
        if process.isRunning { kill(pid, SIGKILL); process.waitUntilExit() }
        try? FileManager.default.removeItem(at: directory)
    }
}

/// Live capture against the real thing: a veth pair in a namespace of the test's own, tcpreplay, and the
/// real `sensor` binary, compared with `sensor replay` of the same files.
final class LiveCaptureTests: XCTestCase {
    func requireLab() throws {
        guard getuid() == 0 else { throw XCTSkip("needs root for network namespaces (CI runs as root)") }
        for tool in ["ip", "tcpreplay"] where !TestSupport.hasTool(tool) {
            throw XCTSkip("\(tool) not installed (scripts/install-deps.sh test)")
        }
    }

    /// A focused handful: TCP (HTTP, many flows), SMB/DCE-RPC lateral movement, DNS over UDP, HTTP on an
    /// odd port.
    var captures: [String] {
        [TestSupport.data("pcaps/benign/http_espn.pcapng"),
         TestSupport.data("pcaps/lateral/LM_psexec_smb_dcerpc_epm_svcctl.pcapng"),
         TestSupport.data("pcaps/dns-tunnel/dnscat2.pcap"),
         TestSupport.data("pcaps/c2-nonstd-port/http-on-port-5432.pcap")]
    }

    static func flows(_ events: [[String: Any]]) -> [[String: Any]] {
        events.filter { TestSupport.value($0, "event.dataset") as? String == "spanwatch.flow" }
    }

    static func stats(_ events: [[String: Any]]) -> [[String: Any]] {
        events.filter { TestSupport.value($0, "event.dataset") as? String == "spanwatch.stats" }
    }

    static func int(_ e: [String: Any], _ path: String) -> Int { (TestSupport.value(e, path) as? NSNumber)?.intValue ?? -1 }

    /// Two workers behind PACKET_FANOUT see exactly the flows `sensor replay` sees: each flow whole on one
    /// worker (no flow split in two, originator the same), every packet received once, none dropped. The
    /// sensor runs as `nobody` with no capability, and keeps capturing.
    func testTwoWorkersAsNobodySeeTheSameFlowsAsReplay() throws {
        try requireLab()
        let lab = try VethLab()
        defer { lab.close() }
        let port = Int.random(in: 20000...40000)
        let sensor = try lab.startSensor(["--workers", "2", "--user", "nobody", "--stats-interval", "1",
                                          "--metrics", "127.0.0.1:\(port)"])
        try sensor.waitUntilCapturing()

        // Least privilege, read from the kernel's view of the process.
        let nobody = try TestSupport.run("id", ["-u", "nobody"]).stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
        let nogroup = try TestSupport.run("id", ["-g", "nobody"]).stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertEqual(sensor.status("Uid")?.split(separator: "\t").map(String.init), Array(repeating: nobody, count: 4))
        XCTAssertEqual(sensor.status("Gid")?.split(separator: "\t").map(String.init), Array(repeating: nogroup, count: 4))
        XCTAssertEqual(sensor.status("CapEff"), "0000000000000000")
        XCTAssertEqual(sensor.status("CapPrm"), "0000000000000000")
        XCTAssertEqual(sensor.status("NoNewPrivs"), "1")
        XCTAssertEqual(sensor.status("Groups"), nogroup, "supplementary groups of root must be gone")
        let threads = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(sensor.pid)/task")) ?? []
        XCTAssertGreaterThan(threads.count, 2)
        for t in threads { XCTAssertEqual(sensor.status("CapEff", thread: t), "0000000000000000", "thread \(t)") }

        try lab.replay(captures)
        // Let the workers drain their rings and publish (metrics once a second).
        Thread.sleep(forTimeInterval: 2.5)
        let metrics = try lab.scrape(port: port)
        XCTAssertTrue(metrics.contains("HTTP/1.1 200 OK"), metrics)
        XCTAssertTrue(metrics.contains("sensor_packets_total{worker=\"0\"}"), metrics)
        XCTAssertTrue(metrics.contains("sensor_capture_kernel_drops_total{worker=\"1\"} 0"), metrics)
        XCTAssertTrue(metrics.contains("sensor_events_total{dataset=\"spanwatch.stats\""), metrics)
        // The host-level stage: both workers sent facts to the aggregator, none dropped for a full ring.
        for w in 0..<2 {
            XCTAssertTrue(metrics.contains("sensor_host_facts_dropped_total{worker=\"\(w)\"} 0"), metrics)
            XCTAssertTrue(metrics.contains("sensor_host_facts_sent_total{worker=\"\(w)\"}"), metrics)
        }
        XCTAssertTrue(metrics.contains("sensor_host_facts_total{shard=\"0\"}"), metrics)
        XCTAssertEqual(sensor.status("CapEff"), "0000000000000000")
        XCTAssertEqual(sensor.terminate(), 0, sensor.stderr)

        let live = try sensor.events()
        let schema = try EventSchema.load()
        for e in live {
            let p = schema.problems(e)
            XCTAssertTrue(p.isEmpty, "\(p.prefix(5))")
            if !p.isEmpty { break }
        }
        let offline = try TestSupport.events(TestSupport.sensor(["replay"] + captures))
        let liveFlows = Self.flows(live), offlineFlows = Self.flows(offline)
        XCTAssertGreaterThan(offlineFlows.count, 40)
        func byCommunityID(_ flows: [[String: Any]]) -> [String: [[String: Any]]] {
            Dictionary(grouping: flows) { TestSupport.value($0, "network.community_id") as? String ?? "" }
        }
        let liveByID = byCommunityID(liveFlows), offlineByID = byCommunityID(offlineFlows)
        XCTAssertEqual(Set(liveByID.keys), Set(offlineByID.keys), "live and replay must see the same flows")
        for (id, events) in liveByID {
            // A flow split across workers would show up twice (once per direction's worker).
            XCTAssertLessThanOrEqual(events.count, offlineByID[id]?.count ?? 0, "flow \(id) was split")
            XCTAssertEqual(TestSupport.value(events[0], "source.ip") as? String,
                           offlineByID[id].flatMap { TestSupport.value($0[0], "source.ip") as? String }, "originator of \(id)")
        }

        // The same alerts (alert times are capture times, so compare rule and flow, not ids).
        func alerts(_ events: [[String: Any]]) -> Set<String> {
            Set(events.filter { TestSupport.value($0, "event.dataset") as? String == "spanwatch.alert" }.map {
                "\(TestSupport.value($0, "rule.id") ?? "")|\(TestSupport.value($0, "network.community_id") ?? "")|\(TestSupport.value($0, "source.ip") ?? "")"
            })
        }
        XCTAssertFalse(alerts(offline).isEmpty, "the non-standard-port C2 detector fires on http-on-port-5432")
        // Exactly the same alerts: the cross-flow detectors run in the host-level stage, which sees every
        // worker's facts, so a correlation whose parts land on different workers (PsExec's ADMIN$ write and
        // its svcctl call are two connections) is one alert live as in replay, not its parts.
        let liveAlerts = alerts(live), offlineAlerts = alerts(offline)
        XCTAssertEqual(liveAlerts, offlineAlerts, "live only: \(liveAlerts.subtracting(offlineAlerts)); replay only: \(offlineAlerts.subtracting(liveAlerts))")
        XCTAssertTrue(offlineAlerts.contains { $0.hasPrefix("lateral_movement.tool_transfer_execution|") }, "\(offlineAlerts)")

        // Every packet reached exactly one worker, both workers had a share, the kernel dropped none.
        let offlinePackets = Self.int(Self.stats(offline).last!, "spanwatch.stats.packets")
        var finalStats: [Int: [String: Any]] = [:]
        for s in Self.stats(live) { finalStats[Self.int(s, "spanwatch.stats.worker")] = s }
        XCTAssertEqual(Set(finalStats.keys), [0, 1])
        let received = finalStats.values.map { Self.int($0, "spanwatch.stats.capture.received") }
        XCTAssertEqual(received.reduce(0, +), offlinePackets)
        XCTAssertTrue(received.allSatisfy { $0 > 0 }, "fanout must spread flows over both workers: \(received)")
        XCTAssertEqual(finalStats.values.map { Self.int($0, "spanwatch.stats.capture.kernel_dropped") }, [0, 0])
        XCTAssertEqual(finalStats.values.map { Self.int($0, "spanwatch.stats.host_facts.dropped") }, [0, 0])
        XCTAssertTrue(finalStats.values.allSatisfy { Self.int($0, "spanwatch.stats.host_facts.sent") > 0 })
        XCTAssertEqual(finalStats.values.map { Self.int($0, "spanwatch.stats.packets") }.reduce(0, +), offlinePackets)
    }

    /// Started the way Deploy/sensor.service starts it: already the service user, holding only ambient
    /// CAP_NET_RAW and CAP_NET_ADMIN. The sensor opens its handles, then clears them on every thread.
    func testAmbientCapabilityStartAsSystemdDoesEndsWithNoCapability() throws {
        try requireLab()
        guard TestSupport.hasTool("setpriv") else { throw XCTSkip("setpriv (util-linux) not installed") }
        let lab = try VethLab()
        defer { lab.close() }
        let sensor = try lab.startSensor(["--workers", "2", "--user", "nobody", "--metrics", "off"], wrapper: [
            "setpriv", "--reuid=nobody", "--regid=\(try TestSupport.run("id", ["-g", "nobody"]).stdoutText.trimmingCharacters(in: .whitespacesAndNewlines))",
            "--clear-groups", "--inh-caps=+net_raw,+net_admin", "--ambient-caps=+net_raw,+net_admin",
        ])
        try sensor.waitUntilCapturing()
        XCTAssertEqual(sensor.status("CapAmb"), "0000000000000000")
        XCTAssertEqual(sensor.status("NoNewPrivs"), "1")
        let threads = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(sensor.pid)/task")) ?? []
        XCTAssertGreaterThan(threads.count, 2)
        for t in threads {
            XCTAssertEqual(sensor.status("CapEff", thread: t), "0000000000000000", "thread \(t)")
            XCTAssertEqual(sensor.status("CapPrm", thread: t), "0000000000000000", "thread \(t)")
        }
        try lab.replay([TestSupport.data("pcaps/benign/dns.pcap")])
        Thread.sleep(forTimeInterval: 0.5)
        XCTAssertEqual(sensor.terminate(), 0, sensor.stderr)
        XCTAssertFalse(Self.flows(try sensor.events()).isEmpty)
    }

    /// SIGTERM while traffic is still arriving: every flow a worker saw is reported, then exit 0.
    func testSigtermMidReplayReportsEveryFlowAndExitsZero() throws {
        try requireLab()
        let lab = try VethLab()
        defer { lab.close() }
        let sensor = try lab.startSensor(["--workers", "2", "--allow-root", "--metrics", "off"])
        try sensor.waitUntilCapturing()
        // ~1000 packets at 500 pps: about two seconds of traffic; stop in the middle.
        let replay = Thread { try? lab.replay([TestSupport.data("pcaps/lateral/winrm_psremote_05-16.pcap")], rate: ["--pps", "500"]) }
        replay.start()
        Thread.sleep(forTimeInterval: 1.0)
        XCTAssertEqual(sensor.terminate(), 0, sensor.stderr)

        let events = try sensor.events()
        let flows = Self.flows(events)
        var finalStats: [Int: [String: Any]] = [:]
        for s in Self.stats(events) { finalStats[Self.int(s, "spanwatch.stats.worker")] = s }
        XCTAssertEqual(Set(finalStats.keys), [0, 1], "each worker writes its final statistics")
        let created = finalStats.values.map { Self.int($0, "spanwatch.stats.flows.created") }.reduce(0, +)
        let packets = finalStats.values.map { Self.int($0, "spanwatch.stats.packets") }.reduce(0, +)
        XCTAssertGreaterThan(packets, 50, "traffic arrived before the signal")
        XCTAssertLessThan(packets, 1001, "the signal came mid-replay")
        XCTAssertEqual(flows.count, created, "one flow event per flow seen")
        XCTAssertEqual(flows.map { Self.int($0, "network.packets") }.reduce(0, +),
                       finalStats.values.map { Self.int($0, "spanwatch.stats.flow_packets") }.reduce(0, +))
        XCTAssertTrue(flows.contains { TestSupport.value($0, "event.reason") as? String == "end_of_input" },
                      "open flows are flushed at shutdown")
    }

    /// Kernel drops are counted per worker and, above `capture.loss_warning`, raise a `spanwatch.health`
    /// warning. Drops are made certain: the sensor is stopped (SIGSTOP) while ~3 MB arrive for a 1 MiB ring.
    func testKernelDropsAreCountedAndRaiseAHealthWarning() throws {
        try requireLab()
        let lab = try VethLab()
        defer { lab.close() }
        let sensor = try lab.startSensor(["--workers", "1", "--allow-root", "--buffer-mb", "1", "--stats-interval", "1",
                                          "--metrics", "off"])
        try sensor.waitUntilCapturing()
        sensor.signal(SIGSTOP)
        try lab.replay([TestSupport.data("pcaps/c2-nonstd-port/metasploit-ms017-010-win7x64.pcap"),
                        TestSupport.data("pcaps/lateral/winrm_psremote_05-16.pcap")])
        sensor.signal(SIGCONT)
        Thread.sleep(forTimeInterval: 2.5)
        XCTAssertEqual(sensor.terminate(), 0, sensor.stderr)
        let events = try sensor.events()
        let last = try XCTUnwrap(Self.stats(events).last)
        let received = Self.int(last, "spanwatch.stats.capture.received"), dropped = Self.int(last, "spanwatch.stats.capture.kernel_dropped")
        XCTAssertEqual(received, 1609, "received counts every packet that passed the filter, dropped ones included")
        XCTAssertGreaterThan(dropped, 0)
        XCTAssertEqual(Self.int(last, "spanwatch.stats.packets"), received - dropped, "what was not dropped was processed")
        let health = events.filter { TestSupport.value($0, "event.dataset") as? String == "spanwatch.health" }
        XCTAssertEqual(health.count, 1, "one warning for the one lossy interval")
        let schema = try EventSchema.load()
        for e in health + Self.stats(events) { XCTAssertEqual(schema.problems(e), []) }
        XCTAssertEqual(health.first.map { Self.int($0, "spanwatch.health.kernel_dropped") }, dropped)
        XCTAssertEqual(health.first.flatMap { TestSupport.value($0, "spanwatch.health.check") as? String }, "capture_loss")
        XCTAssertTrue(sensor.stderr.contains("capture loss"), sensor.stderr)
    }

    /// SIGHUP reloads the rules directory; a broken rule set is rejected with its reason and the sensor
    /// keeps running on the old one.
    func testSighupReloadRejectsABadRuleSetAndKeepsRunning() throws {
        try requireLab()
        let lab = try VethLab()
        defer { lab.close() }
        let rules = try TestSupport.temporaryDirectory("rules")
        defer { try? FileManager.default.removeItem(at: rules) }
        try "allow:\n  - 10.0.0.0/8\n".write(to: rules.appendingPathComponent("allow.yaml"), atomically: true, encoding: .utf8)
        let sensor = try lab.startSensor(["--allow-root", "--metrics", "off", "--rules", rules.path])
        try sensor.waitUntilCapturing()
        sensor.signal(SIGHUP)
        XCTAssertTrue(sensor.waitFor("rules reloaded"), sensor.stderr)
        try "allow: [10.0.0.0/8\n".write(to: rules.appendingPathComponent("allow.yaml"), atomically: true, encoding: .utf8)
        sensor.signal(SIGHUP)
        XCTAssertTrue(sensor.waitFor("rules reload rejected"), sensor.stderr)
        XCTAssertTrue(sensor.stderr.contains("allow.yaml:"), "the reason names the file and line: \(sensor.stderr)")
        XCTAssertTrue(sensor.process.isRunning)
        try lab.replay([TestSupport.data("pcaps/benign/dns.pcap")])
        Thread.sleep(forTimeInterval: 0.5)
        XCTAssertEqual(sensor.terminate(), 0, sensor.stderr)
        XCTAssertFalse(Self.flows(try sensor.events()).isEmpty, "still capturing after the rejected reload")
    }

    /// Root is refused unless a user to switch to or --allow-root is given; unknown users and CPUs are
    /// configuration errors. All fail before any interface is opened.
    func testRefusesRootAndBadSettingsBeforeOpeningAnything() throws {
        guard getuid() == 0 else { throw XCTSkip("the root check needs root") }
        var r = try TestSupport.sensor(["run", "--interface", "lo", "--metrics", "off"])
        XCTAssertEqual(r.status, 77, r.stderr)
        XCTAssertTrue(r.stderr.contains("refusing to run as root"), r.stderr)
        r = try TestSupport.sensor(["run", "--interface", "lo", "--user", "no-such-user-x", "--metrics", "off"])
        XCTAssertEqual(r.status, 77, r.stderr)
        XCTAssertTrue(r.stderr.contains("unknown user"), r.stderr)
        r = try TestSupport.sensor(["run", "--interface", "lo", "--allow-root", "--cpus", "4000", "--metrics", "off"])
        XCTAssertEqual(r.status, 78, r.stderr)
        r = try TestSupport.sensor(["run", "--allow-root"])
        XCTAssertEqual(r.status, 78, r.stderr)
        XCTAssertTrue(r.stderr.contains("no interface"), r.stderr)
        r = try TestSupport.sensor(["run", "--interface", "no-such-if0", "--allow-root", "--metrics", "off"])
        XCTAssertEqual(r.status, 1, r.stderr)
    }

    /// A world-readable state (evidence, spool) directory is an error at start; a missing one is created 0750.
    func testPrivateDirectoriesAreCreatedPrivateAndChecked() throws {
        guard getuid() == 0 else { throw XCTSkip("needs root (the sensor refuses to start otherwise in this setup)") }
        let dir = try TestSupport.temporaryDirectory("state")
        defer { try? FileManager.default.removeItem(at: dir) }
        let open = dir.appendingPathComponent("open")
        try FileManager.default.createDirectory(at: open, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o755])
        let config = dir.appendingPathComponent("c.yaml")
        try "privileges:\n  state_directory: \(open.path)\n".write(to: config, atomically: true, encoding: .utf8)
        var r = try TestSupport.sensor(["run", "--config", config.path, "--interface", "lo", "--allow-root", "--metrics", "off"])
        XCTAssertEqual(r.status, 73, r.stderr)
        XCTAssertTrue(r.stderr.contains("accessible to every user"), r.stderr)

        let fresh = dir.appendingPathComponent("new/state")
        try "privileges:\n  state_directory: \(fresh.path)\n".write(to: config, atomically: true, encoding: .utf8)
        // Fails later (no such interface) but after creating the directory.
        r = try TestSupport.sensor(["run", "--config", config.path, "--interface", "no-such-if0", "--user", "nobody", "--metrics", "off"])
        XCTAssertEqual(r.status, 1, r.stderr)
        let attrs = try FileManager.default.attributesOfItem(atPath: fresh.path)
        XCTAssertEqual((attrs[.posixPermissions] as? NSNumber)?.intValue, 0o750)
        XCTAssertEqual((attrs[.ownerAccountName] as? String), "nobody")
    }
}
