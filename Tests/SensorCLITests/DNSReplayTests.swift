import Foundation
import TestSupport
import XCTest

/// Passive DNS and the DNS tunnelling detector, end to end through the real `sensor` binary, checked
/// against the shared captures and the real tshark.
final class DNSReplayTests: XCTestCase {
    static let psl = TestSupport.data("psl/public_suffix_list.dat")

    /// The tunnel's registered domain per capture (MANIFEST.md names the zones; their registered domains).
    static let tunnelDomains = [
        "bad-dns-traffic.pcap": "skullseclabs.org",
        "dns-exf.pcap": "test.txt",
        "dns2tcp.pcap": "hsc.fr",
        "dnscat2.pcap": "biillpi.com",
        "dnsextrator.pcap": "hsc.fr",
        "iodine.pcap": "biillpi.com",
    ]

    func replay(_ files: [String], _ extra: [String] = []) throws -> [[String: Any]] {
        let r = try TestSupport.sensor(["replay", "--psl", DNSReplayTests.psl] + extra + files)
        XCTAssertEqual(r.status, 0, r.stderr)
        return try TestSupport.events(r)
    }

    func tunnelAlerts(_ events: [[String: Any]]) -> [[String: Any]] {
        events.filter { TestSupport.value($0, "event.dataset") as? String == "spanwatch.alert" && TestSupport.value($0, "rule.category") as? String == "dns_tunneling" }
    }

    func testEveryTunnelCaptureRaisesAnAlertNamingItsDomain() throws {
        let captures = TestSupport.captures("dns-tunnel")
        XCTAssertEqual(captures.count, DNSReplayTests.tunnelDomains.count)
        for path in captures {
            let file = URL(fileURLWithPath: path).lastPathComponent
            let expected = try XCTUnwrap(DNSReplayTests.tunnelDomains[file], "no expected domain for \(file)")
            let alerts = tunnelAlerts(try replay([path]))
            XCTAssertFalse(alerts.isEmpty, "\(file): no dns_tunneling alert")
            for a in alerts {
                XCTAssertEqual(TestSupport.value(a, "spanwatch.dns_tunneling.domain") as? String, expected, file)
                XCTAssertTrue((TestSupport.techniqueIDs(a) ?? []).contains("T1071.004"), file)
                XCTAssertNotNil(TestSupport.value(a, "spanwatch.dns_tunneling.client") as? String, file)
                let samples = TestSupport.value(a, "spanwatch.dns_tunneling.sample_queries") as? [String] ?? []
                XCTAssertFalse(samples.isEmpty, file)
                XCTAssertTrue(samples.allSatisfy { $0.lowercased().hasSuffix(expected) }, "\(file): \(samples)")
                XCTAssertEqual(TestSupport.value(a, "related.hosts") as? [String], [expected], file)
            }
        }
    }

    func testVolumeTunnelsAreAlsoReportedAsExfiltration() throws {
        for file in ["bad-dns-traffic.pcap", "dns2tcp.pcap", "dnsextrator.pcap"] {
            let alerts = tunnelAlerts(try replay([TestSupport.data("pcaps/dns-tunnel/\(file)")]))
            let techniques = alerts.flatMap { TestSupport.techniqueIDs($0) ?? [] }
            XCTAssertTrue(techniques.contains("T1048.003"), "\(file): \(techniques)")
        }
        // A short handshake is not exfiltration.
        let iodine = tunnelAlerts(try replay([TestSupport.data("pcaps/dns-tunnel/iodine.pcap")]))
        XCTAssertFalse(iodine.flatMap { TestSupport.techniqueIDs($0) ?? [] }.contains("T1048.003"))
    }

    func testNoBenignCaptureRaisesATunnelAlert() throws {
        let captures = TestSupport.captures("benign")
        XCTAssertFalse(captures.isEmpty)
        for path in captures {
            let alerts = tunnelAlerts(try replay([path]))
            XCTAssertTrue(alerts.isEmpty, "\(path): \(alerts.map { TestSupport.value($0, "spanwatch.dns_tunneling.domain") ?? "" })")
        }
    }

    /// Names as tshark prints them: invalid UTF-8 bytes become U+FFFD; the sensor writes bytes outside
    /// printable ASCII as ECS `\DDD`, so map those the same way before comparing.
    static func normalise(_ name: String) -> String {
        if name == "<Root>" { return "." }
        var out = ""
        var chars = Substring(name)
        while let c = chars.first {
            if c == "\\", chars.count >= 4, let v = Int(chars.dropFirst().prefix(3)), chars.dropFirst().prefix(3).allSatisfy(\.isNumber) {
                out.append(v >= 128 ? "\u{FFFD}" : Character(Unicode.Scalar(UInt8(v))))
                chars = chars.dropFirst(4)
            } else {
                out.append(c)
                chars = chars.dropFirst()
            }
        }
        return out
    }

    /// tshark's view: one entry per DNS message (a frame may carry several over TCP; tshark then
    /// aggregates each field over the messages, so the lists are split back per message).
    func tsharkDNS(_ path: String) throws -> (queries: [String], responses: [String]) {
        let r = try TestSupport.run("tshark", ["-r", path, "-Y", "dns", "-T", "fields", "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=\u{1}",
                                               "-e", "dns.flags.response", "-e", "dns.id", "-e", "dns.count.queries", "-e", "dns.qry.name",
                                               "-e", "dns.count.answers", "-e", "dns.count.auth_rr", "-e", "dns.count.add_rr", "-e", "dns.resp.name"])
        XCTAssertEqual(r.status, 0, r.stderr)
        var queries: [String] = [], responses: [String] = []
        for line in r.stdoutText.split(separator: "\n", omittingEmptySubsequences: true) {
            let f = line.split(separator: "\t", omittingEmptySubsequences: false).map { field -> [String] in
                field.isEmpty ? [] : field.split(separator: "\u{1}", omittingEmptySubsequences: false).map(String.init)
            }
            guard f.count >= 7 else { continue }
            let names = f.count > 7 ? f[7] : []
            var qi = 0, ri = 0
            for k in 0..<f[0].count {
                let id = Int(f[1][k].dropFirst(2), radix: 16) ?? -1
                let qc = Int(f[2][k]) ?? 0
                let qname = qc > 0 && qi < f[3].count ? DNSReplayTests.normalise(f[3][qi]) : ""
                qi += qc
                if f[0][k] == "0" || f[0][k] == "False" {
                    queries.append("\(id) \(qname)")
                    continue
                }
                let an = Int(f[4][k]) ?? 0, total = an + (Int(f[5][k]) ?? 0) + (Int(f[6][k]) ?? 0)
                let answers = names[min(ri, names.count)..<min(ri + an, names.count)].map(DNSReplayTests.normalise)
                ri += total
                responses.append("\(id) \(qname) [\(answers.joined(separator: ","))]")
            }
        }
        return (queries, responses)
    }

    func sensorDNS(_ events: [[String: Any]]) -> (all: [String], responses: [String]) {
        var all: [String] = [], responses: [String] = []
        // tshark's "dns" is unicast DNS; mDNS and LLMNR are separate protocols there.
        for e in events where TestSupport.value(e, "event.dataset") as? String == "spanwatch.dns" && TestSupport.value(e, "network.protocol") as? String == "dns" {
            let id = TestSupport.value(e, "dns.id") as? String ?? "?"
            let qname = DNSReplayTests.normalise(TestSupport.value(e, "dns.question.name") as? String ?? "")
            all.append("\(id) \(qname)")
            if TestSupport.value(e, "dns.type") as? String == "answer" {
                let answers = (TestSupport.value(e, "dns.answers") as? [[String: Any]] ?? []).map { DNSReplayTests.normalise($0["name"] as? String ?? "") }
                responses.append("\(id) \(qname) [\(answers.joined(separator: ","))]")
            }
        }
        return (all, responses)
    }

    /// Every response tshark sees is one `spanwatch.dns` answer event with the same id, question and answer
    /// names (in order); every query tshark sees belongs to some transaction event.
    func testPassiveDNSAgreesWithTshark() throws {
        guard TestSupport.hasTool("tshark") else { throw XCTSkip("tshark not installed (scripts/install-deps.sh test)") }
        var files = TestSupport.captures("dns-tunnel")
        files += ["benign/dns.pcap", "benign/wikipedia.pcap", "benign/http_espn.pcapng", "benign/smtp.pcap", "beacon/test-cc-capture-2.pcap"].map { TestSupport.data("pcaps/\($0)") }
        var compared = 0
        for path in files {
            let t = try tsharkDNS(path)
            let s = sensorDNS(try replay([path]))
            XCTAssertEqual(s.responses.sorted(), t.responses.sorted(), path)
            let transactions = Set(s.all)
            for q in t.queries { XCTAssertTrue(transactions.contains(q), "\(path): query \(q) has no transaction event") }
            // One event per transaction: never more events than queries plus unmatched responses.
            XCTAssertLessThanOrEqual(s.all.count, t.queries.count + t.responses.count, path)
            compared += t.responses.count
        }
        XCTAssertGreaterThan(compared, 400)
    }

    func testTransactionsPairQueriesWithResponses() throws {
        let events = try replay([TestSupport.data("pcaps/dns-tunnel/dnscat2.pcap")])
        let dns = events.filter { TestSupport.value($0, "event.dataset") as? String == "spanwatch.dns" }
        XCTAssertEqual(dns.count, 12)
        for e in dns {
            XCTAssertEqual(TestSupport.value(e, "spanwatch.dns.status") as? String, "answered")
            XCTAssertEqual(TestSupport.value(e, "dns.question.registered_domain") as? String, "biillpi.com")
            XCTAssertEqual(TestSupport.value(e, "network.protocol") as? String, "dns")
            XCTAssertEqual(TestSupport.value(e, "destination.port") as? Int, 53)
            XCTAssertNotNil(TestSupport.value(e, "network.community_id") as? String)
            XCTAssertGreaterThan(TestSupport.value(e, "event.duration") as? Int ?? 0, 0)
        }
        let espn = try replay([TestSupport.data("pcaps/benign/dns.pcap")]).filter { TestSupport.value($0, "dns.question.name") as? String == "www.espn.com" }
        XCTAssertEqual(espn.count, 1)
        XCTAssertEqual(TestSupport.value(espn[0], "dns.resolved_ip") as? [String], ["68.71.212.158"])
        XCTAssertEqual(TestSupport.value(espn[0], "dns.question.subdomain") as? String, "www")
        XCTAssertEqual(TestSupport.value(espn[0], "dns.response_code") as? String, "NOERROR")
    }

    func testEventsSwitchOffButDetectionStays() throws {
        let events = try replay([TestSupport.data("pcaps/dns-tunnel/dnscat2.pcap")], ["--no-dns-events"])
        XCTAssertTrue(events.filter { TestSupport.value($0, "event.dataset") as? String == "spanwatch.dns" }.isEmpty)
        XCTAssertFalse(tunnelAlerts(events).isEmpty)
        let dir = try TestSupport.temporaryDirectory()
        let config = dir.appendingPathComponent("sensor.yaml")
        try "dns:\n  enabled: false\n".write(to: config, atomically: true, encoding: .utf8)
        let off = try replay([TestSupport.data("pcaps/dns-tunnel/dnscat2.pcap")], ["--config", config.path])
        XCTAssertTrue(off.filter { TestSupport.value($0, "event.dataset") as? String == "spanwatch.dns" }.isEmpty)
        XCTAssertTrue(tunnelAlerts(off).isEmpty)
    }

    func testCheckRulesValidatesTheTunnelRules() throws {
        let ok = try TestSupport.sensor(["check-rules", TestSupport.repositoryRoot.appendingPathComponent("Rules").path])
        XCTAssertEqual(ok.status, 0, ok.stderr)
        let dir = try TestSupport.temporaryDirectory()
        try "window: 5m\nscore:\n  entropy: {from: 3, to: 4, wieght: 2}\nmin_queries: lots\n"
            .write(to: dir.appendingPathComponent("dns-tunneling.yaml"), atomically: true, encoding: .utf8)
        let bad = try TestSupport.sensor(["check-rules", dir.path])
        XCTAssertEqual(bad.status, 78)
        XCTAssertTrue(bad.stderr.contains("dns-tunneling.yaml:3:"), bad.stderr)
        XCTAssertTrue(bad.stderr.contains("dns-tunneling.yaml:4:"), bad.stderr)
        // A replay with that rules directory refuses to start (bad configuration).
        let run = try TestSupport.sensor(["replay", "--psl", DNSReplayTests.psl, "--rules", dir.path, TestSupport.data("pcaps/benign/dns.pcap")])
        XCTAssertEqual(run.status, 78, run.stderr)
    }

    func testCheckConfigReportsDNSSectionErrorsWithLines() throws {
        let dir = try TestSupport.temporaryDirectory()
        let config = dir.appendingPathComponent("sensor.yaml")
        try "dns:\n  events: maybe\n  transaction_timeout: 2h\n  psl: /nonexistent/psl.dat\n  colour: blue\n".write(to: config, atomically: true, encoding: .utf8)
        let r = try TestSupport.sensor(["check-config", config.path])
        XCTAssertEqual(r.status, 78)
        for line in 2...5 { XCTAssertTrue(r.stderr.contains("sensor.yaml:\(line):"), "line \(line): \(r.stderr)") }
        let good = dir.appendingPathComponent("good.yaml")
        try "dns:\n  events: false\n  transaction_timeout: 5s\n  psl: \(DNSReplayTests.psl)\n".write(to: good, atomically: true, encoding: .utf8)
        let ok = try TestSupport.sensor(["check-config", good.path])
        XCTAssertEqual(ok.status, 0, ok.stderr)
    }

    /// DNS over TCP: a hand-written capture where one segment carries two messages and a third message
    /// is split across segments (its length prefix too), compared with tshark's own TCP reassembly.
    func testDNSOverTCPSpanningAndSharingSegments() throws {
        guard TestSupport.hasTool("tshark") else { throw XCTSkip("tshark not installed") }
        let dir = try TestSupport.temporaryDirectory()
        let path = dir.appendingPathComponent("dns-tcp.pcap").path
        try TCPDNSCapture.write(to: path)
        let events = try replay([path])
        let dns = events.filter { TestSupport.value($0, "event.dataset") as? String == "spanwatch.dns" }
        let names = dns.compactMap { TestSupport.value($0, "dns.question.name") as? String }.sorted()
        XCTAssertEqual(names, ["a.example.com", "b.example.com", "c.example.com"])
        for e in dns {
            XCTAssertEqual(TestSupport.value(e, "network.transport") as? String, "tcp")
            XCTAssertEqual(TestSupport.value(e, "spanwatch.dns.status") as? String, "answered")
        }
        let t = try tsharkDNS(path)
        let s = sensorDNS(events)
        XCTAssertEqual(s.responses.sorted(), t.responses.sorted())
        XCTAssertEqual(t.responses.count, 3)
    }
}

/// Writes a small classic pcap of one DNS-over-TCP connection (Ethernet/IPv4/TCP).
enum TCPDNSCapture {
    static func message(id: UInt16, name: String, response: Bool, address: [UInt8]) -> [UInt8] {
        var m: [UInt8] = [UInt8(id >> 8), UInt8(id & 0xFF), response ? 0x81 : 0x01, response ? 0x80 : 0x00, 0, 1, 0, response ? 1 : 0, 0, 0, 0, 0]
        for l in name.split(separator: ".") { m.append(UInt8(l.utf8.count)); m += Array(l.utf8) }
        m += [0, 0, 1, 0, 1]
        if response { m += [0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4] + address }
        return m
    }

    static func framed(_ m: [UInt8]) -> [UInt8] { [UInt8(m.count >> 8), UInt8(m.count & 0xFF)] + m }

    static func write(to path: String) throws {
        let q = [("a.example.com", UInt16(1)), ("b.example.com", 2), ("c.example.com", 3)].map { (name: $0.0, id: $0.1) }
        let client: [UInt8] = [10, 0, 0, 1], server: [UInt8] = [10, 0, 0, 53]
        var clientSeq: UInt32 = 1000, serverSeq: UInt32 = 5000
        var packets: [[UInt8]] = []
        func segment(fromClient: Bool, flags: UInt8, payload: [UInt8]) {
            let src = fromClient ? client : server, dst = fromClient ? server : client
            let sport: UInt16 = fromClient ? 40000 : 53, dport: UInt16 = fromClient ? 53 : 40000
            let seq = fromClient ? clientSeq : serverSeq, ack = fromClient ? serverSeq : clientSeq
            var f: [UInt8] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0x08, 0x00]
            let total = 20 + 20 + payload.count
            var ip: [UInt8] = [0x45, 0, UInt8(total >> 8), UInt8(total & 0xFF), 0, 0, 0x40, 0, 64, 6, 0, 0] + src + dst
            var sum: UInt32 = 0
            for i in stride(from: 0, to: 20, by: 2) { sum += UInt32(ip[i]) << 8 | UInt32(ip[i + 1]) }
            while sum > 0xFFFF { sum = (sum & 0xFFFF) + (sum >> 16) }
            let c = ~UInt16(sum)
            ip[10] = UInt8(c >> 8); ip[11] = UInt8(c & 0xFF)
            f += ip
            f += [UInt8(sport >> 8), UInt8(sport & 0xFF), UInt8(dport >> 8), UInt8(dport & 0xFF)]
            f += withUnsafeBytes(of: seq.bigEndian, Array.init) + withUnsafeBytes(of: ack.bigEndian, Array.init)
            f += [0x50, flags, 0xFF, 0xFF, 0, 0, 0, 0]
            f += payload
            packets.append(f)
            let advance = UInt32(payload.count) + (flags & 0x03 != 0 ? 1 : 0)
            if fromClient { clientSeq &+= advance } else { serverSeq &+= advance }
        }
        let syn: UInt8 = 0x02, ack: UInt8 = 0x10, psh: UInt8 = 0x08, fin: UInt8 = 0x01
        segment(fromClient: true, flags: syn, payload: [])
        segment(fromClient: false, flags: syn | ack, payload: [])
        segment(fromClient: true, flags: ack, payload: [])
        // Two queries in one segment, then the third split inside its length prefix and its name.
        let queries = q.map { framed(message(id: $0.id, name: $0.name, response: false, address: [])) }
        segment(fromClient: true, flags: psh | ack, payload: queries[0] + queries[1] + [queries[2][0]])
        segment(fromClient: true, flags: psh | ack, payload: Array(queries[2][1..<10]))
        segment(fromClient: true, flags: psh | ack, payload: Array(queries[2][10...]))
        // Responses: the first alone, the second and the start of the third together, then the rest.
        let responses = q.enumerated().map { framed(message(id: $0.element.id, name: $0.element.name, response: true, address: [192, 0, 2, UInt8($0.offset + 1)])) }
        segment(fromClient: false, flags: psh | ack, payload: responses[0])
        segment(fromClient: false, flags: psh | ack, payload: responses[1] + Array(responses[2][0..<7]))
        segment(fromClient: false, flags: psh | ack, payload: Array(responses[2][7...]))
        segment(fromClient: true, flags: fin | ack, payload: [])
        segment(fromClient: false, flags: fin | ack, payload: [])
        segment(fromClient: true, flags: ack, payload: [])

        var out: [UInt8] = []
        func le32(_ v: UInt32) { out += withUnsafeBytes(of: v.littleEndian, Array.init) }
        func le16(_ v: UInt16) { out += withUnsafeBytes(of: v.littleEndian, Array.init) }
        le32(0xa1b2_c3d4); le16(2); le16(4); le32(0); le32(0); le32(65535); le32(1)
        for (i, p) in packets.enumerated() {
            le32(1_700_000_000); le32(UInt32(i * 1000)); le32(UInt32(p.count)); le32(UInt32(p.count))
            out += p
        }
        try Data(out).write(to: URL(fileURLWithPath: path))
    }
}
