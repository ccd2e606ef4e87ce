import Foundation
import TestSupport
import XCTest

/// The operator's side through the real binary: inputs (standard input, compressed captures), output
/// dataset filters, file rotation and SIGHUP reopening, exit statuses, logs, progress, check-config.
final class OperatorCLITests: XCTestCase {
    static let dnsCapture = TestSupport.data("pcaps/benign/dns.pcap")

    func events(_ text: String) -> [[String: Any]] {
        text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    func dataset(_ e: [String: Any]) -> String { TestSupport.value(e, "event.dataset") as? String ?? "" }

    /// Events other than the run's statistics (those name the outputs and differ between runs).
    func notStats(_ lines: [String]) -> [String] { lines.filter { !$0.contains("\"dataset\":\"spanwatch.stats\"") }.sorted() }

    // MARK: Inputs

    func testCaptureOnStandardInput() throws {
        let plain = try TestSupport.sensor(["replay", "--quiet", Self.dnsCapture])
        XCTAssertEqual(plain.status, 0, plain.stderr)
        let piped = try TestSupport.run("/bin/sh", ["-c", "cat \"$1\" | \"$2\" replay --quiet -", "sh", Self.dnsCapture, TestSupport.sensorBinary])
        XCTAssertEqual(piped.status, 0, piped.stderr)
        XCTAssertGreaterThan(plain.lines.count, 10)
        XCTAssertEqual(notStats(piped.lines), notStats(plain.lines))
    }

    /// gzip, zstd and xz captures are recognised by content (the names say nothing), and give the events
    /// of the plain capture; a cut archive is input damage (exit 3), not a clean end.
    func testCompressedCapturesByContent() throws {
        let dir = try TestSupport.temporaryDirectory("compressed")
        defer { try? FileManager.default.removeItem(at: dir) }
        let plain = try TestSupport.sensor(["replay", "--quiet", Self.dnsCapture])
        XCTAssertEqual(plain.status, 0, plain.stderr)
        for tool in ["gzip", "zstd", "xz"] {
            try XCTSkipUnless(TestSupport.hasTool(tool), "\(tool) missing (scripts/install-deps.sh test)")
            let out = dir.appendingPathComponent("capture-\(tool).data").path
            let z = try TestSupport.run("/bin/sh", ["-c", "\(tool) -c < \"$1\" > \"$2\"", "sh", Self.dnsCapture, out])
            XCTAssertEqual(z.status, 0, z.stderr)
            let r = try TestSupport.sensor(["replay", "--quiet", out])
            XCTAssertEqual(r.status, 0, "\(tool): \(r.stderr)")
            XCTAssertEqual(notStats(r.lines), notStats(plain.lines), tool)
            // Compressed and on standard input at once.
            let piped = try TestSupport.run("/bin/sh", ["-c", "cat \"$1\" | \"$2\" replay --quiet -", "sh", out, TestSupport.sensorBinary])
            XCTAssertEqual(piped.status, 0, piped.stderr)
            XCTAssertEqual(notStats(piped.lines), notStats(plain.lines), "\(tool) on stdin")
        }
        let whole = try Data(contentsOf: dir.appendingPathComponent("capture-gzip.data"))
        let cut = dir.appendingPathComponent("cut.pcap.gz")
        try whole.prefix(whole.count / 2).write(to: cut)
        let r = try TestSupport.sensor(["replay", "--quiet", cut.path])
        XCTAssertEqual(r.status, 3, r.stderr)
        XCTAssertTrue(r.stderr.contains("error: \(cut.path): read error after packet"), r.stderr)
        // A cut that ends between two records: only gzip can tell (its trailer is missing).
        let records = try Data(contentsOf: URL(fileURLWithPath: Self.dnsCapture))
        let clean = dir.appendingPathComponent("clean-cut.gz")
        let z = try TestSupport.run("/bin/sh", ["-c", "gzip -c < \"$1\" | head -c \"$2\" > \"$3\"", "sh", Self.dnsCapture, "\(records.count / 3)", clean.path])
        XCTAssertEqual(z.status, 0, z.stderr)
        let g = try TestSupport.sensor(["replay", "--quiet", clean.path])
        XCTAssertEqual(g.status, 3, g.stderr)
        XCTAssertTrue(g.stderr.contains("gzip -dc exited with status"), g.stderr)
    }

    // MARK: Outputs

    /// `?datasets=` on an output URL (and the same string in YAML) sends it only those datasets.
    func testDatasetFilterPerOutput() throws {
        let dir = try TestSupport.temporaryDirectory("filter")
        defer { try? FileManager.default.removeItem(at: dir) }
        let all = dir.appendingPathComponent("all.json").path, dns = dir.appendingPathComponent("dns.json").path
        let r = try TestSupport.sensor(["replay", "--quiet", "--output", "file:\(all)", "--output", "file:\(dns)?datasets=dns,spanwatch.stats", Self.dnsCapture])
        XCTAssertEqual(r.status, 0, r.stderr)
        let everything = events(try String(contentsOfFile: all, encoding: .utf8))
        let filtered = events(try String(contentsOfFile: dns, encoding: .utf8))
        XCTAssertTrue(everything.contains { dataset($0) == "spanwatch.flow" })
        XCTAssertEqual(Set(filtered.map(dataset)), ["spanwatch.dns", "spanwatch.stats"])
        XCTAssertEqual(filtered.filter { dataset($0) == "spanwatch.dns" }.count, everything.filter { dataset($0) == "spanwatch.dns" }.count)
        XCTAssertGreaterThan(filtered.count, 5)

        // The same spec in YAML.
        let yaml = dir.appendingPathComponent("sensor.yaml").path
        let alerts = dir.appendingPathComponent("alerts.json").path
        try "outputs:\n  - \"file:\(alerts)?datasets=alert\"\n".write(toFile: yaml, atomically: true, encoding: .utf8)
        let y = try TestSupport.sensor(["replay", "--quiet", "--config", yaml, TestSupport.data("pcaps/beacon/test-cc-capture-2.pcap")])
        XCTAssertEqual(y.status, 0, y.stderr)
        let got = events(try String(contentsOfFile: alerts, encoding: .utf8))
        XCTAssertFalse(got.isEmpty)
        XCTAssertEqual(Set(got.map(dataset)), ["spanwatch.alert"])

        let bad = try TestSupport.sensor(["replay", "--output", "stdout?datasets=alerts", Self.dnsCapture])
        XCTAssertEqual(bad.status, 64, bad.stderr)
        XCTAssertTrue(bad.stderr.contains("'alerts' is not a dataset"), bad.stderr)
    }

    /// `rotate_size` rotates to PATH.<time>, every line whole; `rotate_keep` keeps the newest N.
    func testFileRotationBySize() throws {
        let dir = try TestSupport.temporaryDirectory("rotate")
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("events.json").path
        let reference = try TestSupport.sensor(["replay", "--quiet", "--no-flow-events", Self.dnsCapture])
        let r = try TestSupport.sensor(["replay", "--quiet", "--no-flow-events", "--output", "file:\(path)?rotate_size=4KiB", Self.dnsCapture])
        XCTAssertEqual(r.status, 0, r.stderr)
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
        XCTAssertGreaterThan(files.count, 2, "\(files)")
        XCTAssertTrue(files.allSatisfy { $0 == "events.json" || $0.hasPrefix("events.json.2") }, "\(files)")
        var lines: [String] = []
        for f in files {
            let text = try String(contentsOfFile: dir.appendingPathComponent(f).path, encoding: .utf8)
            let ls = text.split(separator: "\n").map(String.init)
            XCTAssertEqual(events(text).count, ls.count, "every line of \(f) is a whole event")
            lines += ls
        }
        XCTAssertEqual(notStats(lines), notStats(reference.lines))

        let kept = try TestSupport.temporaryDirectory("rotate-keep")
        defer { try? FileManager.default.removeItem(at: kept) }
        let k = try TestSupport.sensor(["replay", "--quiet", "--no-flow-events", "--output", "file:\(kept.path)/e.json?rotate_size=4KiB&rotate_keep=2", Self.dnsCapture])
        XCTAssertEqual(k.status, 0, k.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: kept.path).filter { $0.hasPrefix("e.json.") }.count, 2)
    }

    /// Writes a pcap stream into a FIFO the sensor reads, part by part (from a thread: opening blocks
    /// until the sensor opens its end).
    final class FifoFeeder: @unchecked Sendable {
        let path: String
        var fd: Int32 = -1
        init(_ path: String) throws {
            self.path = path
            guard mkfifo(path, 0o600) == 0 else { throw POSIXError(.EIO) }
            signal(SIGPIPE, SIG_IGN)
        }
        func open() -> Bool {
            let opened = DispatchSemaphore(value: 0)
            DispatchQueue.global().async { self.fd = Glibc.open(self.path, O_WRONLY); opened.signal() }
            return opened.wait(timeout: .now() + 20) == .success && fd >= 0
        }
        @discardableResult
        func write(_ d: Data) -> Bool {
            d.withUnsafeBytes { b in
                var off = 0
                while off < b.count {
                    let n = Glibc.write(fd, b.baseAddress! + off, b.count - off)
                    if n <= 0 { return false }
                    off += n
                }
                return true
            }
        }
        func close() { if fd >= 0 { Glibc.close(fd); fd = -1 } }
    }

    static func dnsRecords(from: Int, count: Int) -> Data {
        var w = PcapFileWriter()
        let header = w.data.count
        for i in from..<(from + count) {
            SyntheticTraffic.dnsExchange(&w, at: UInt32(i), id: UInt16(i), name: "host\(i).example.org", sport: UInt16(20000 + i))
        }
        return w.data.dropFirst(header)
    }

    /// logrotate's way: rename the file, SIGHUP; what was written before goes to the renamed file, the
    /// rest to a new file at the path. No event is lost or split.
    func testSIGHUPReopensTheFile() throws {
        let dir = try TestSupport.temporaryDirectory("hup")
        defer { try? FileManager.default.removeItem(at: dir) }
        let fifo = try FifoFeeder(dir.appendingPathComponent("in.fifo").path)
        let path = dir.appendingPathComponent("events.json").path
        let sensor = try BackgroundProcess(TestSupport.sensorBinary, ["replay", "--quiet", "--no-flow-events", "--output", "file:\(path)", fifo.path],
                                           currentDirectory: TestSupport.repositoryRoot.path)
        XCTAssertTrue(fifo.open())
        fifo.write(PcapFileWriter().data + Self.dnsRecords(from: 0, count: 20))
        sleep(1)
        XCTAssertTrue(FileManager.default.fileExists(atPath: path))
        try FileManager.default.moveItem(atPath: path, toPath: path + ".1")
        kill(sensor.process.processIdentifier, SIGHUP)
        XCTAssertTrue(TestSupport.waitUntil(timeout: 10) { FileManager.default.fileExists(atPath: path) }, "SIGHUP reopens the path")
        fifo.write(Self.dnsRecords(from: 100, count: 20))
        fifo.close()
        XCTAssertTrue(TestSupport.waitUntil(timeout: 30) { !sensor.process.isRunning })
        sensor.process.waitUntilExit()
        XCTAssertEqual(sensor.process.terminationStatus, 0, sensor.standardError)
        let before = events(try String(contentsOfFile: path + ".1", encoding: .utf8))
        let after = events(try String(contentsOfFile: path, encoding: .utf8))
        let names = { (es: [[String: Any]]) in Set(es.compactMap { TestSupport.value($0, "dns.question.name") as? String }) }
        XCTAssertEqual(names(before), Set((0..<20).map { "host\($0).example.org" }), "events before SIGHUP are in the renamed file")
        XCTAssertEqual(names(after), Set((100..<120).map { "host\($0).example.org" }), "events after it in the new file")
        XCTAssertTrue(after.contains { dataset($0) == "spanwatch.stats" })
    }

    // MARK: Exit status

    /// Runs `sensor ARGS FIFO`, feeds DNS records through the FIFO and sends SIGINT part-way.
    func interrupted(_ args: [String], in dir: URL) throws -> (status: Int32, stderr: String, stdout: [String]) {
        let fifo = try FifoFeeder(dir.appendingPathComponent("\(args[0]).fifo").path)
        let sensor = try BackgroundProcess(TestSupport.sensorBinary, args + [fifo.path], currentDirectory: TestSupport.repositoryRoot.path)
        XCTAssertTrue(fifo.open())
        fifo.write(PcapFileWriter().data + Self.dnsRecords(from: 0, count: 20))
        sleep(1)
        kill(sensor.process.processIdentifier, SIGINT)
        // Keep the stream going (libpcap notices the stop between records); the writes fail once the
        // sensor has exited and the FIFO has no reader.
        let writer = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            var i = 1000
            while i < 60_000, fifo.write(Self.dnsRecords(from: i, count: 1)) { i += 1 }
            writer.signal()
        }
        XCTAssertTrue(TestSupport.waitUntil(timeout: 30) { !sensor.process.isRunning }, "SIGINT ends \(args[0])")
        _ = writer.wait(timeout: .now() + 10)
        fifo.close()
        sensor.process.waitUntilExit()
        var out: [String] = []
        while let l = sensor.readLine(timeout: 0.5) { out.append(l) }
        return (sensor.process.terminationStatus, sensor.standardError, out)
    }

    /// SIGINT part-way: the events so far are written, the log says it was interrupted, exit 130; the same
    /// for `hunt` and `report` (whose page covers the packets read).
    func testInterruptedReplayExits130() throws {
        let dir = try TestSupport.temporaryDirectory("interrupt")
        defer { try? FileManager.default.removeItem(at: dir) }
        let r = try interrupted(["replay", "--quiet"], in: dir)
        XCTAssertEqual(r.status, 130, r.stderr)
        XCTAssertTrue(r.stderr.contains("replay interrupted"), r.stderr)
        XCTAssertTrue(r.stdout.contains { $0.contains("host3.example.org") }, "events before the signal are written")

        let indicators = dir.appendingPathComponent("domains.txt")
        try "host3.example.org\n".write(to: indicators, atomically: true, encoding: .utf8)
        let h = try interrupted(["hunt", "--quiet", "--indicators", indicators.path], in: dir)
        XCTAssertEqual(h.status, 130, h.stderr)
        XCTAssertTrue(h.stderr.contains("hunt interrupted"), h.stderr)
        XCTAssertTrue(h.stdout.contains { $0.contains("host3.example.org") }, "matches before the signal are written: \(h.stderr)")

    }

    /// `report` hashes its captures before replaying them (a FIFO would be read up by that), so it is
    /// interrupted on a large file once the replay has begun: exit 130, and the page of what was read.
    func testInterruptedReportExits130WithItsPage() throws {
        let dir = try TestSupport.temporaryDirectory("interrupt-report")
        defer { try? FileManager.default.removeItem(at: dir) }
        let big = TestSupport.data("pcaps/large/large-mixed-A.pcap")
        let size = try XCTUnwrap(try FileManager.default.attributesOfItem(atPath: big)[.size] as? Int)
        let page = dir.appendingPathComponent("case.html")
        // Three names for the capture (one input each: a replay of several seconds in a debug build).
        let copies = try (0..<3).map { i -> String in
            let link = dir.appendingPathComponent("copy\(i).pcap").path
            try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: big)
            return link
        }
        let sensor = try BackgroundProcess(TestSupport.sensorBinary, ["report", "-o", page.path] + copies, currentDirectory: TestSupport.repositoryRoot.path)
        let pid = sensor.process.processIdentifier
        // Bytes read so far (/proc/PID/io rchar): past the hashing of the three and 4 MB, the replay runs.
        func read() -> Int {
            guard let io = try? String(contentsOfFile: "/proc/\(pid)/io", encoding: .utf8),
                  let line = io.split(separator: "\n").first(where: { $0.hasPrefix("rchar:") }) else { return 0 }
            return Int(line.dropFirst(6).trimmingCharacters(in: .whitespaces)) ?? 0
        }
        XCTAssertTrue(TestSupport.waitUntil(timeout: 120) { read() > 3 * size + (4 << 20) || !sensor.process.isRunning })
        XCTAssertTrue(sensor.process.isRunning, "the replay was still running when interrupted")
        kill(pid, SIGINT)
        XCTAssertTrue(TestSupport.waitUntil(timeout: 60) { !sensor.process.isRunning }, "SIGINT ends the report")
        sensor.process.waitUntilExit()
        XCTAssertEqual(sensor.process.terminationStatus, 130, sensor.standardError)
        XCTAssertTrue(sensor.standardError.contains("report interrupted"), sensor.standardError)
        XCTAssertTrue(try String(contentsOf: page, encoding: .utf8).contains("</html>"), "the page of what was read is written")
    }

    /// A rules directory named explicitly must exist (flag or YAML): exit 78, and check-config names the line.
    func testMissingRulesDirectoryIsAConfigurationError() throws {
        let r = try TestSupport.sensor(["replay", "--rules", "/nonexistent/rules", Self.dnsCapture])
        XCTAssertEqual(r.status, 78, r.stderr)
        XCTAssertTrue(r.stderr.contains("rules directory /nonexistent/rules: no such directory"), r.stderr)
        XCTAssertTrue(r.stdoutText.isEmpty)

        let dir = try TestSupport.temporaryDirectory("rules-missing")
        defer { try? FileManager.default.removeItem(at: dir) }
        let yaml = dir.appendingPathComponent("sensor.yaml").path
        try "sensor:\n  name: t\nrules:\n  directory: /nonexistent/rules\n".write(toFile: yaml, atomically: true, encoding: .utf8)
        let y = try TestSupport.sensor(["replay", "--config", yaml, Self.dnsCapture])
        XCTAssertEqual(y.status, 78, y.stderr)
        let c = try TestSupport.sensor(["check-config", yaml])
        XCTAssertEqual(c.status, 78, c.stderr)
        XCTAssertTrue(c.stderr.contains("\(yaml):4:"), c.stderr)
    }

    /// Malformed options exit 64 (EX_USAGE), as README says.
    func testOptionErrorsExit64() throws {
        for args in [["replay", "--max-flows", "5", Self.dnsCapture], ["replay", "--no-such-option", Self.dnsCapture],
                     ["replay", "--output", "bogus:x", Self.dnsCapture], ["replay", "--log-format", "xml", Self.dnsCapture],
                     ["hunt", Self.dnsCapture]] {
            let r = try TestSupport.sensor(args)
            XCTAssertEqual(r.status, 64, "\(args): \(r.stderr)")
        }
        let readme = try String(contentsOf: TestSupport.repositoryRoot.appendingPathComponent("README.md"), encoding: .utf8)
        XCTAssertTrue(readme.contains("64 a malformed option"), "README documents 64")
    }

    /// Unreadable input: 1.
    func testUnreadableInputExits1() throws {
        let r = try TestSupport.sensor(["replay", "/nonexistent/x.pcap"])
        XCTAssertEqual(r.status, 1, r.stderr)
    }

    // MARK: check-config

    /// Every problem at once, each at its line: BPF that does not compile, missing GeoIP database,
    /// missing indicator file, missing rules directory, unreadable TLS CA, bad recipient.
    func testCheckConfigOpensEverythingItNames() throws {
        let dir = try TestSupport.temporaryDirectory("check-config")
        defer { try? FileManager.default.removeItem(at: dir) }
        let yaml = dir.appendingPathComponent("sensor.yaml").path
        try """
        capture:
          bpf: "tcp port 99999"
        enrichment:
          geoip_city: /nonexistent/city.mmdb
        intel:
          indicators: [/nonexistent/iocs.txt]
        rules:
          directory: /nonexistent/rules
        outputs:
          - "syslog+tls://127.0.0.1:6514?ca=/nonexistent/ca.pem"

        """.write(toFile: yaml, atomically: true, encoding: .utf8)
        let r = try TestSupport.sensor(["check-config", yaml])
        XCTAssertEqual(r.status, 78, r.stderr)
        let lines = r.stderr.split(separator: "\n").map(String.init)
        for (line, text) in [(2, "capture.bpf: does not compile"), (4, "enrichment.geoip_city"), (8, "rules.directory"), (10, "/nonexistent/ca.pem")] {
            XCTAssertTrue(lines.contains { $0.hasPrefix("\(yaml):\(line):") && $0.contains(text) }, "\(text) at line \(line): \(r.stderr)")
        }
        XCTAssertTrue(r.stderr.contains("/nonexistent/iocs.txt"), r.stderr)

        // The example configuration still passes.
        let ok = try TestSupport.sensor(["check-config", "Deploy/sensor.example.yaml"])
        XCTAssertEqual(ok.status, 0, ok.stderr)
    }

    // MARK: Logs and progress

    func testJSONLogsAndJournalPriorities() throws {
        let r = try TestSupport.sensor(["replay", "--quiet", "--log-format", "json", "--output", "file:/dev/null", Self.dnsCapture])
        XCTAssertEqual(r.status, 0, r.stderr)
        let logs = r.stderr.split(separator: "\n").map { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        XCTAssertFalse(logs.isEmpty)
        XCTAssertTrue(logs.allSatisfy { $0 != nil }, r.stderr)
        let finished = try XCTUnwrap(logs.compactMap { $0 }.first { $0["message"] as? String == "replay finished" })
        XCTAssertEqual(finished["log.level"] as? String, "info")
        let cpu = try XCTUnwrap(finished["cpu_seconds"] as? String)
        XCTAssertLessThanOrEqual(cpu.split(separator: ".").last?.count ?? 9, 3, "rounded: \(cpu)")

        // Under systemd (stderr is the journal's stream): a <N> priority prefix, no timestamp of ours.
        let dir = try TestSupport.temporaryDirectory("journal")
        defer { try? FileManager.default.removeItem(at: dir) }
        let log = dir.appendingPathComponent("stderr").path
        let j = try TestSupport.run("/bin/sh", ["-c", "exec 2>\"$1\"; JOURNAL_STREAM=$(stat -c %d:%i \"$1\") exec \"$2\" replay --quiet --output file:/dev/null \"$3\"",
                                               "sh", log, TestSupport.sensorBinary, Self.dnsCapture])
        XCTAssertEqual(j.status, 0)
        let text = try String(contentsOfFile: log, encoding: .utf8)
        XCTAssertTrue(text.contains("<6>info replay finished"), text)
        XCTAssertFalse(text.split(separator: "\n").contains { !$0.hasPrefix("<") }, text)
    }

    func testReplayProgress() throws {
        let r = try TestSupport.sensor(["replay", "--output", "file:/dev/null", Self.dnsCapture])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("replay: progress 100.0%"), r.stderr)
        XCTAssertTrue(r.stderr.contains("done in"), r.stderr)
        let q = try TestSupport.sensor(["replay", "--quiet", "--output", "file:/dev/null", Self.dnsCapture])
        XCTAssertFalse(q.stderr.contains("progress"), q.stderr)
    }
}
