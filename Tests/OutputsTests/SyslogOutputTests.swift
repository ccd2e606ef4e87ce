import Foundation
import TestSupport
import XCTest

/// The syslog output against a real `rsyslogd` on loopback (imudp, imtcp, imtcp with TLS), which writes
/// every message with a template showing the RFC 5424 fields it parsed.
final class SyslogOutputTests: XCTestCase {
    var rsyslog: BackgroundProcess?
    var dir: URL!

    override func setUpWithError() throws {
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: "/usr/sbin/rsyslogd"), "rsyslog is not installed (scripts/install-deps.sh test)")
        dir = try TestSupport.temporaryDirectory("rsyslog")
    }

    override func tearDown() {
        rsyslog?.stop()
        rsyslog = nil
        if let dir { try? FileManager.default.removeItem(at: dir) }
    }

    /// Fields rsyslog parsed, tab-separated, then the MSG as it arrived.
    static let template = #"template(name="fields" type="string" string="%pri%\t%syslogfacility-text%\t%syslogseverity-text%\t%hostname%\t%app-name%\t%procid%\t%msgid%\t%timereported:::date-rfc3339%\t%structured-data%\t%msg%\n")"#

    /// Starts rsyslogd in the foreground with its own config, pid file and work directory.
    func startRsyslog(input: String, modules: String, global extra: String = "") throws -> URL {
        let out = dir.appendingPathComponent("out.log")
        let conf = """
        global(workDirectory="\(dir.path)" maxMessageSize="256k" \(extra))
        \(modules)
        \(SyslogOutputTests.template)
        ruleset(name="capture") { action(type="omfile" file="\(out.path)" template="fields") }
        \(input)
        """
        let confPath = dir.appendingPathComponent("rsyslog.conf")
        try conf.write(to: confPath, atomically: true, encoding: .utf8)
        let check = try TestSupport.run("/usr/sbin/rsyslogd", ["-N1", "-f", confPath.path])
        XCTAssertEqual(check.status, 0, "rsyslog config: \(check.stderr)")
        rsyslog = try BackgroundProcess("/usr/sbin/rsyslogd", ["-n", "-f", confPath.path, "-i", dir.appendingPathComponent("rsyslogd.pid").path])
        return out
    }

    func waitForListener(port: Int) {
        // rsyslogd binds within a moment of starting; TCP is probed by connecting.
        TestSupport.waitUntil(timeout: 10) {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(fd) }
            var a = sockaddr_in()
            a.sin_family = sa_family_t(AF_INET)
            a.sin_addr.s_addr = inet_addr("127.0.0.1")
            a.sin_port = UInt16(port).bigEndian
            return withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } } == 0
        }
    }

    /// Runs the sensor with a syslog output and checks every event arrived with the right PRI and MSGID.
    func replayAndCheck(output: String, logFile: URL) throws {
        let capture = TestSupport.data("pcaps/beacon/test-cc-capture-2.pcap")
        let run = try TestSupport.sensor(["replay", "--output", "stdout", "--output", output, capture])
        XCTAssertEqual(run.status, 0, run.stderr)
        let events = run.lines
        XCTAssertGreaterThan(events.count, 10)
        var lines: [String] = []
        TestSupport.waitUntil(timeout: 15) {
            lines = ((try? String(contentsOf: logFile, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
            return lines.count >= events.count
        }
        XCTAssertEqual(lines.count, events.count, "every event reached rsyslogd")
        var byBody: [String: Int] = [:]
        for e in events { byBody[e, default: 0] += 1 }
        for line in lines {
            let f = line.split(separator: "\t", maxSplits: 9, omittingEmptySubsequences: false).map(String.init)
            guard f.count == 10 else { XCTFail("unparsed line: \(line.prefix(200))"); continue }
            let (pri, facility, severity, app, msgid, sd, msg) = (f[0], f[1], f[2], f[4], f[6], f[8], f[9])
            XCTAssertEqual(app, "sensor")
            XCTAssertEqual(facility, "local0")
            XCTAssertEqual(sd, "-")
            XCTAssertFalse(f[3].isEmpty)
            XCTAssertNotNil(Int(f[5]), "PROCID is the sensor process id")
            guard let obj = try? JSONSerialization.jsonObject(with: Data(msg.utf8)) as? [String: Any] else {
                XCTFail("MSG is not intact JSON: \(msg.prefix(200))"); continue
            }
            XCTAssertNotNil(byBody[msg], "MSG equals an event printed on stdout")
            byBody[msg, default: 0] -= 1
            let dataset = TestSupport.value(obj, "event.dataset") as? String
            XCTAssertEqual(msgid, dataset)
            let eventSeverity = TestSupport.value(obj, "event.severity") as? Int ?? 0
            let expectedSeverity = [6, 5, 4, 3, 2][min(max(eventSeverity, 0), 4)]
            XCTAssertEqual(Int(pri), 16 * 8 + expectedSeverity)
            XCTAssertEqual(severity, ["info", "notice", "warning", "err", "crit"][min(max(eventSeverity, 0), 4)])
            // TIMESTAMP is the event's @timestamp (packet time).
            if let ts = obj["@timestamp"] as? String { XCTAssertEqual(f[7].prefix(19), ts.prefix(19)) }
        }
        XCTAssertTrue(byBody.values.allSatisfy { $0 == 0 }, "each event exactly once")
        XCTAssertTrue(run.stderr.contains("delivered=\(events.count)"), run.stderr)
    }

    func testUDP() throws {
        let port = TestSupport.freePort(udp: true)
        let out = try startRsyslog(
            input: #"input(type="imudp" address="127.0.0.1" port="\#(port)" ruleset="capture" rcvBufSize="8m")"#,
            modules: #"module(load="imudp")"#)
        // UDP has no connection to probe: wait until the kernel lists the bound socket.
        let local = String(format: "0100007F:%04X", port)
        XCTAssertTrue(TestSupport.waitUntil(timeout: 10) {
            ((try? String(contentsOfFile: "/proc/net/udp", encoding: .utf8)) ?? "").contains(local)
        }, "rsyslogd did not bind 127.0.0.1:\(port)/udp: \(rsyslog?.standardError ?? "")")
        try replayAndCheck(output: "syslog+udp://127.0.0.1:\(port)", logFile: out)
    }

    func testTCPOctetCounting() throws {
        let port = TestSupport.freePort()
        let out = try startRsyslog(
            input: #"input(type="imtcp" address="127.0.0.1" port="\#(port)" ruleset="capture")"#,
            modules: #"module(load="imtcp")"#)
        waitForListener(port: port)
        try replayAndCheck(output: "syslog+tcp://127.0.0.1:\(port)", logFile: out)
    }

    /// The collector is not there when the sensor starts: events wait in the queue, the sink reconnects
    /// with backoff, and everything arrives once rsyslogd listens.
    func testTCPReconnectsWhenTheCollectorComesUp() throws {
        let port = TestSupport.freePort()
        let capture = TestSupport.data("pcaps/beacon/test-cc-capture-2.pcap")
        let sensor = try BackgroundProcess(TestSupport.sensorBinary,
                                           ["replay", "--output", "stdout", "--output", "syslog+tcp://127.0.0.1:\(port)?flush_timeout=30s", capture],
                                           currentDirectory: TestSupport.repositoryRoot.path)
        var events: [String] = []
        TestSupport.waitUntil(timeout: 20) {
            while let l = sensor.readLine(timeout: 0.05) { events.append(l) }
            return events.contains { $0.contains("\"dataset\":\"spanwatch.stats\"") }
        }
        usleep(700_000)
        XCTAssertTrue(sensor.process.isRunning, "the sensor waits for the collector")
        let out = try startRsyslog(input: #"input(type="imtcp" address="127.0.0.1" port="\#(port)" ruleset="capture")"#,
                                   modules: #"module(load="imtcp")"#)
        XCTAssertTrue(TestSupport.waitUntil(timeout: 30) { !sensor.process.isRunning })
        sensor.process.waitUntilExit()
        XCTAssertEqual(sensor.process.terminationStatus, 0, sensor.standardError)
        var lines: [String] = []
        TestSupport.waitUntil(timeout: 10) {
            lines = ((try? String(contentsOf: out, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
            return lines.count >= events.count
        }
        XCTAssertEqual(lines.count, events.count)
        XCTAssertEqual(Set(lines.compactMap { $0.split(separator: "\t", maxSplits: 9).last.map(String.init) }), Set(events))
        XCTAssertTrue(sensor.standardError.contains("delivered=\(events.count)"), sensor.standardError)
    }

    func testTLS() throws {
        try XCTSkipUnless(TestSupport.hasTool("openssl"), "openssl is not installed")
        // A throwaway CA and a server certificate for 127.0.0.1/localhost.
        let d = dir.path
        let script = """
        set -e
        cd '\(d)'
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=sensor-test-ca 2>/dev/null
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key -out server.csr -subj /CN=localhost 2>/dev/null
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\nextendedKeyUsage=serverAuth\\n' > ext.cnf
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile ext.cnf 2>/dev/null
        """
        let gen = try TestSupport.run("/bin/sh", ["-c", script])
        XCTAssertEqual(gen.status, 0, gen.stderr)
        let port = TestSupport.freePort()
        let out = try startRsyslog(
            input: #"input(type="imtcp" address="127.0.0.1" port="\#(port)" ruleset="capture")"#,
            modules: #"module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")"#,
            global: #"defaultNetstreamDriver="gtls" defaultNetstreamDriverCAFile="\#(d)/ca.pem" defaultNetstreamDriverCertFile="\#(d)/server.pem" defaultNetstreamDriverKeyFile="\#(d)/server.key""#)
        waitForListener(port: port)
        try replayAndCheck(output: "syslog+tls://127.0.0.1:\(port)?ca=\(d)/ca.pem&server_name=localhost", logFile: out)
    }

    /// A server whose certificate the CA did not sign gets nothing: the sensor reports failed deliveries.
    func testTLSRejectsUntrustedServer() throws {
        try XCTSkipUnless(TestSupport.hasTool("openssl"), "openssl is not installed")
        let d = dir.path
        let script = """
        set -e
        cd '\(d)'
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=sensor-test-ca 2>/dev/null
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout other.key -out other.pem -days 2 -subj /CN=other-ca 2>/dev/null
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key -out server.csr -subj /CN=localhost 2>/dev/null
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > ext.cnf
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile ext.cnf 2>/dev/null
        """
        XCTAssertEqual(try TestSupport.run("/bin/sh", ["-c", script]).status, 0)
        let port = TestSupport.freePort()
        let out = try startRsyslog(
            input: #"input(type="imtcp" address="127.0.0.1" port="\#(port)" ruleset="capture")"#,
            modules: #"module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")"#,
            global: #"defaultNetstreamDriver="gtls" defaultNetstreamDriverCAFile="\#(d)/ca.pem" defaultNetstreamDriverCertFile="\#(d)/server.pem" defaultNetstreamDriverKeyFile="\#(d)/server.key""#)
        waitForListener(port: port)
        let run = try TestSupport.sensor(["replay", "--no-dns-events", "--output", "syslog+tls://127.0.0.1:\(port)?ca=\(d)/other.pem&server_name=localhost&flush_timeout=2s",
                                          TestSupport.data("pcaps/benign/dns.pcap")])
        // Nothing is handed to a server that failed verification: the events wait, then count as dropped.
        XCTAssertTrue(run.stderr.contains("delivered=0"), run.stderr)
        XCTAssertTrue(run.stderr.contains("dropped=8"), run.stderr)
        XCTAssertTrue(run.stderr.contains("failed=0"), run.stderr)
        XCTAssertEqual(run.status, 74, "an output that lost events fails the run with the documented status")
        XCTAssertTrue(run.stderr.contains("8 events not delivered") && run.stderr.contains("CERTIFICATE_VERIFY_FAILED"), run.stderr)
        let got = (try? String(contentsOf: out, encoding: .utf8)) ?? ""
        XCTAssertEqual(got, "")
    }
}
