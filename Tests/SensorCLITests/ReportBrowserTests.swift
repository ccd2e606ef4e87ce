import Foundation
import TestSupport
import XCTest

/// `sensor report` through the real binary, each page opened in Debian's headless Chromium: the page loads
/// nothing, logs no error, shows one card per alert of the run's NDJSON, one beacon point per connection
/// the detector scored, one graph node per host of the lateral-movement alerts; hostile strings from a
/// crafted capture are shown as text and never run.
final class ReportBrowserTests: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws { dir = try TestSupport.temporaryDirectory("report") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }
    func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

    func browser() throws -> HeadlessChromium {
        guard HeadlessChromium.executable != nil else { throw XCTSkip("chromium is not installed (scripts/install-deps.sh test)") }
        return try HeadlessChromium()
    }

    /// Runs `sensor report` on captures, with the same events written as NDJSON; returns the alerts.
    func report(_ captures: [String], name: String) throws -> (html: String, alerts: [[String: Any]], events: String) {
        let html = path("\(name).html"), events = path("\(name).ndjson")
        let r = try TestSupport.sensor(["report", "--rules", TestSupport.repositoryRoot.appendingPathComponent("Rules").path,
                                        "-o", html, "--output", "file:" + events] + captures)
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = try String(contentsOfFile: events, encoding: .utf8).split(separator: "\n")
        let all = try lines.map { try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
        return (html, all.filter { TestSupport.value($0, "event.kind") as? String == "alert" }, events)
    }

    func assertCleanLoad(_ load: HeadlessChromium.PageLoad, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(load.errors, [], "\(what): console errors", file: file, line: line)
        XCTAssertEqual(load.requests, [], "\(what): network requests", file: file, line: line)
    }

    func cardCount(_ b: HeadlessChromium) throws -> Int {
        try XCTUnwrap(b.evaluate("document.querySelectorAll('#alerts article.card').length") as? Int)
    }

    /// Lateral, beacon and DNS-tunnel captures: structure checked against the NDJSON of the same run.
    func testReportsOfSharedCapturesOpenCleanAndMatchTheEvents() throws {
        let b = try browser()
        defer { b.stop() }
        let shots = ProcessInfo.processInfo.environment["REPORT_SCREENSHOTS"]
        let cases: [(String, [String])] = [
            // One AD lab: wmiexec 192.168.1.161 → .195 (2017-04-24), then WinRM .195 → .46 (2017-05-16): a two-hop chain.
            ("lateral", ["lateral/wmiexec.pcap", "lateral/winrm_psremote_05-16.pcap", "lateral/20171220_smb_psexec_add_user.pcap"]),
            ("beacon", ["beacon/test-cc-capture-2.pcap"]),
            ("beacon-empire", ["beacon/wmi_to_powershell_empire.pcap"]),
            ("dns", ["dns-tunnel/bad-dns-traffic.pcap", "dns-tunnel/dnscat2.pcap", "dns-tunnel/iodine.pcap"]),
        ]
        var beaconsChecked = 0, lateralChecked = 0, tunnelsChecked = 0
        for (name, files) in cases {
            let captures = files.map { TestSupport.data("pcaps/" + $0) }
            let (html, alerts, events) = try report(captures, name: name)
            XCTAssertFalse(alerts.isEmpty, name)
            let load = try b.open(file: html)
            assertCleanLoad(load, name)
            XCTAssertEqual(try cardCount(b), alerts.count, "\(name): one card per alert")
            XCTAssertEqual(try b.evaluate("document.querySelectorAll('#timeline circle.tl').length") as? Int, alerts.count, name)
            // Capture files listed with their SHA-256 (checked against sha256sum).
            let hashes = try XCTUnwrap(b.evaluate("Array.from(document.querySelectorAll('#summary td.hash')).map(function(t){return t.textContent})") as? [String])
            for c in captures {
                let sum = try TestSupport.run("sha256sum", [c]).stdoutText.split(separator: " ").first.map(String.init)
                XCTAssertTrue(hashes.contains(sum ?? "-"), "\(name): \(c) hash")
            }

            // Beaconing: as many points as connections the detector scored (first..last start of the pair).
            let points = try XCTUnwrap(b.evaluate("Array.from(document.querySelectorAll('#beaconing article.beacon')).map(function(a){return [a.getAttribute('data-alert'), a.querySelectorAll('circle.conn').length]})") as? [[Any]])
            let beaconAlerts = alerts.enumerated().filter { TestSupport.value($0.element, "rule.category") as? String == "beaconing" }
            XCTAssertEqual(points.count, beaconAlerts.count, name)
            let byAnchor = Dictionary(uniqueKeysWithValues: points.map { ($0[0] as? String ?? "", $0[1] as? Int ?? -1) })
            for (i, a) in beaconAlerts {
                let connections = try XCTUnwrap(TestSupport.value(a, "spanwatch.beaconing.connections") as? Int)
                XCTAssertEqual(byAnchor["alert-\(i + 1)"], connections, "\(name): beacon alert \(i + 1)")
                beaconsChecked += 1
            }

            // Lateral movement: one node per host named by the lateral-movement alerts.
            var hosts = Set<String>()
            for a in alerts where TestSupport.value(a, "rule.category") as? String == "lateral_movement" {
                if let s = TestSupport.value(a, "source.ip") as? String { hosts.insert(s) }
                if let d = TestSupport.value(a, "destination.ip") as? String { hosts.insert(d) }
                for t in TestSupport.value(a, "spanwatch.lateral_movement.targets") as? [String] ?? [] { hosts.insert(t) }
            }
            let nodes = try XCTUnwrap(b.evaluate("Array.from(document.querySelectorAll('#lateral g.node')).map(function(g){return g.getAttribute('data-host')})") as? [String])
            XCTAssertEqual(nodes.count, hosts.count, "\(name): one node per host")
            XCTAssertEqual(Set(nodes), hosts, name)
            if name == "lateral" {
                lateralChecked += 1
                let chain = try XCTUnwrap(b.evaluate("Array.from(document.querySelectorAll('#lateral line.edge.chain')).map(function(l){return l.getAttribute('data-source')+'>'+l.getAttribute('data-target')})") as? [String])
                XCTAssertEqual(Set(chain), ["192.168.1.161>192.168.1.195", "192.168.1.195>192.168.1.46"], "\(name): the chain")
            }

            // DNS: every tunnelled domain is on top of the table.
            let tunnelled = Set(alerts.compactMap { TestSupport.value($0, "spanwatch.dns_tunneling.domain") as? String })
            if !tunnelled.isEmpty {
                let top = try XCTUnwrap(b.evaluate("Array.from(document.querySelectorAll('#dns table.dns tbody tr')).slice(0, \(tunnelled.count)).map(function(r){return r.cells[0].textContent})") as? [String])
                XCTAssertEqual(Set(top), tunnelled, name)
                tunnelsChecked += 1
            }
            if let shots { try screenshots(b, name: name, into: shots) }

            // The same page from the events file: the same cards and points, no replay.
            let again = path("\(name)-from-events.html")
            let r = try TestSupport.sensor(["report", "--from-events", events, "-o", again])
            XCTAssertEqual(r.status, 0, r.stderr)
            assertCleanLoad(try b.open(file: again), "\(name) from events")
            XCTAssertEqual(try cardCount(b), alerts.count, "\(name) from events")
            XCTAssertEqual(try b.evaluate("document.querySelectorAll('#beaconing circle.conn').length") as? Int, points.reduce(0) { $0 + ($1[1] as? Int ?? 0) })
        }
        XCTAssertGreaterThanOrEqual(beaconsChecked, 2)
        XCTAssertGreaterThanOrEqual(lateralChecked, 1)
        XCTAssertGreaterThanOrEqual(tunnelsChecked, 1)
    }

    /// Section images for the README (REPORT_SCREENSHOTS=docs): each section's top 760 px.
    func screenshots(_ b: HeadlessChromium, name: String, into dir: String) throws {
        let sections = ["lateral": ["lateral"], "beacon": ["summary", "beaconing"], "dns": ["dns"]][name] ?? []
        for s in sections {
            let r = try XCTUnwrap(b.evaluate("(function(){var r=document.getElementById('\(s)').getBoundingClientRect();return [r.left+window.scrollX,r.top+window.scrollY,r.width,r.height]})()") as? [Double])
            let png = try b.screenshot(x: r[0], y: r[1], width: min(r[2], 1232), height: min(r[3], 760))
            try png.write(to: URL(fileURLWithPath: dir).appendingPathComponent("report-\(s).png"))
        }
    }

    static let scriptPayload = "<script>pwned=1</script>"
    static let imagePayload = "\"><img src=x onerror=pwned=2>"
    static let agent = "'\"><img src=x onerror=pwned=3><script>pwned=4</script><svg onload=pwned=5>"

    /// A DNS query whose names carry markup and an HTTP request whose User-Agent and Host do: the page
    /// shows them as text; no element, handler or script of theirs exists or runs.
    func testHostileNamesAndUserAgentsAreShownAndNeverRun() throws {
        let b = try browser()
        defer { b.stop() }
        // DNS: a query per payload, each a name of its own (labels may hold any byte).
        var dns = PcapFileWriter()
        for (i, payload) in [Self.scriptPayload, Self.imagePayload].enumerated() {
            dns.record(seconds: 1_700_000_000, micros: UInt32(i * 1000), bytes: Self.dnsQuery(name: ["x\(i)", payload, "com"], id: UInt16(0x1000 + i)))
        }
        try dns.write(to: path("dns.pcap"))
        // HTTP on a port HTTP does not belong on (so a C2-port alert shows the strings in a card too).
        var tcp = TCPCaptureBuilder(expectedPackets: 8, payloadLimit: 512)
        let client: UInt32 = 0x0A00_0005, server: UInt32 = 0xC633_6407
        tcp.segment(src: client, dst: server, sport: 40000, dport: 8088, seq: 1000, flags: TCPCaptureBuilder.syn, payload: [])
        tcp.segment(src: server, dst: client, sport: 8088, dport: 40000, seq: 5000, ack: 1001, flags: TCPCaptureBuilder.syn | TCPCaptureBuilder.ack, payload: [])
        tcp.segment(src: client, dst: server, sport: 40000, dport: 8088, seq: 1001, ack: 5001, flags: TCPCaptureBuilder.ack, payload: [])
        let request = Array("GET /<script>pwned=6</script> HTTP/1.1\r\nHost: <svg onload=pwned=7>\r\nUser-Agent: \(Self.agent)\r\n\r\n".utf8)
        tcp.segment(src: client, dst: server, sport: 40000, dport: 8088, seq: 1001, ack: 5001, payload: request)
        let response = Array("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".utf8)
        tcp.segment(src: server, dst: client, sport: 8088, dport: 40000, seq: 5001, ack: 1001 + UInt32(request.count), payload: response)
        try tcp.write(to: path("http.pcap"))

        let (html, _, events) = try report([path("dns.pcap"), path("http.pcap")], name: "hostile")
        let ndjson = try String(contentsOfFile: events, encoding: .utf8)
        // The payloads reached the events (JSON escapes only the quote).
        XCTAssertTrue(ndjson.contains(Self.scriptPayload), "DNS name with a script tag not in the events")
        XCTAssertTrue(ndjson.contains(#"\"><img src=x onerror=pwned=2>"#), "DNS name with an img tag not in the events")
        XCTAssertTrue(ndjson.contains("<img src=x onerror=pwned=3><script>pwned=4</script>"), "User-Agent not in the events")

        let load = try b.open(file: html)
        assertCleanLoad(load, "hostile")
        XCTAssertEqual(try b.evaluate("typeof window.pwned") as? String, "undefined", "an injected script ran")
        XCTAssertEqual(try b.evaluate("document.title") as? String, "Sensor case report")
        XCTAssertEqual(try b.evaluate("document.images.length") as? Int, 0, "an injected img element exists")
        XCTAssertEqual(try b.evaluate("document.scripts.length") as? Int, 1, "only the page's own script")
        XCTAssertEqual(try b.evaluate("Array.from(document.querySelectorAll('*')).filter(function(e){return Array.from(e.attributes).some(function(a){return a.name.indexOf('on')===0})}).length") as? Int, 0,
                       "an element with an event-handler attribute exists")
        // Shown as text, where a responder would look for them.
        let dnsText = try XCTUnwrap(b.evaluate("document.getElementById('dns').textContent") as? String)
        XCTAssertTrue(dnsText.contains(Self.scriptPayload), dnsText)
        XCTAssertTrue(dnsText.contains(Self.imagePayload), dnsText)
        let trafficText = try XCTUnwrap(b.evaluate("document.getElementById('traffic').textContent") as? String)
        XCTAssertTrue(trafficText.contains(Self.agent), trafficText)
        XCTAssertTrue(trafficText.contains("<svg onload=pwned=7>"), trafficText)
    }

    /// Ethernet, IPv4, UDP to port 53, one question of type A.
    static func dnsQuery(name labels: [String], id: UInt16) -> [UInt8] {
        var dns: [UInt8] = [UInt8(id >> 8), UInt8(id & 0xFF), 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]
        for l in labels { let b = Array(l.utf8); dns.append(UInt8(b.count)); dns += b }
        dns += [0, 0, 1, 0, 1]
        let udpLength = 8 + dns.count, ipLength = 20 + udpLength
        var f: [UInt8] = [0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 1, 0x08, 0x00]
        f += [0x45, 0, UInt8(ipLength >> 8), UInt8(ipLength & 0xFF), 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 5, 10, 0, 0, 53]
        f += [0xC3, 0x50, 0, 53, UInt8(udpLength >> 8), UInt8(udpLength & 0xFF), 0, 0]
        return f + dns
    }
}
