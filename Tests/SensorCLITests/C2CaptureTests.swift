import Foundation
import TestSupport
import XCTest

/// The C2 family against real captures: alerts where the shared data says there is C2, none on benign
/// traffic, and TLS/HTTP facts that agree with real tshark on the same packets.
final class C2CaptureTests: XCTestCase {
    func replay(_ path: String) throws -> [[String: Any]] {
        let r = try TestSupport.sensor(["replay", path])
        XCTAssertEqual(r.status, 0, "\(path): \(r.stderr)")
        return try TestSupport.events(r)
    }

    func alerts(_ events: [[String: Any]], _ category: String) -> [[String: Any]] {
        events.filter { TestSupport.value($0, "rule.category") as? String == category }
    }

    func tshark(_ args: [String]) throws -> [[String]] {
        let r = try TestSupport.run("tshark", args)
        XCTAssertEqual(r.status, 0, r.stderr)
        return r.lines.map { $0.split(separator: "\t", omittingEmptySubsequences: false).map(String.init) }
    }

    override func setUpWithError() throws {
        try XCTSkipUnless(TestSupport.hasTool("tshark"), "tshark is installed by scripts/install-deps.sh test")
        XCTAssertFalse(TestSupport.captures("beacon").isEmpty, "shared captures missing at \(TestSupport.shared.path)")
    }

    /// The MANIFEST names the periodic pair of these two captures; the beacon must be reported for it,
    /// with its statistics, and for nothing else.
    func testBeaconCapturesRaiseBeaconingForTheirPair() throws {
        let expected: [String: (String, String, Int, ClosedRange<Double>)] = [
            "test-cc-capture-2.pcap": ("147.32.80.37", "141.193.213.20", 443, 2.5...3.5),
            "wmi_to_powershell_empire.pcap": ("192.168.1.195", "192.168.1.161", 80, 4.5...5.5),
        ]
        for (name, (src, dst, port, period)) in expected {
            let events = try replay(TestSupport.data("pcaps/beacon/\(name)"))
            let found = alerts(events, "beaconing")
            XCTAssertEqual(found.count, 1, "\(name): \(found)")
            guard let a = found.first else { continue }
            XCTAssertEqual(TestSupport.value(a, "source.ip") as? String, src, name)
            XCTAssertEqual(TestSupport.value(a, "destination.ip") as? String, dst, name)
            XCTAssertEqual(TestSupport.value(a, "destination.port") as? Int, port, name)
            let median = try XCTUnwrap(TestSupport.value(a, "spanwatch.beaconing.interval_median") as? Double)
            XCTAssertTrue(period.contains(median), "\(name): median interval \(median)")
            XCTAssertGreaterThanOrEqual(TestSupport.value(a, "spanwatch.beaconing.distinct_starts") as? Int ?? 0, 4)
            XCTAssertNotNil(TestSupport.value(a, "spanwatch.beaconing.score_parts.interval_dispersion"))
            let techniques = TestSupport.techniqueIDs(a) ?? []
            XCTAssertTrue(techniques.contains("T1071.001"), "\(techniques)")
        }
        // test-cc is TLS: encrypted channel.
        let cc = alerts(try replay(TestSupport.data("pcaps/beacon/test-cc-capture-2.pcap")), "beaconing")
        XCTAssertTrue((cc.first.flatMap { TestSupport.techniqueIDs($0) } ?? []).contains("T1573"))
    }

    /// cryptowall4_c2, emotet and malware hold fewer than four connections to any one destination (the
    /// MANIFEST: 3 POSTs; excerpts from several hosts and years). The issue requires at least four
    /// distinct starts before a pair is scored, so no beacon can honestly be reported there. This test
    /// pins that premise with tshark, so a change of the data shows up here.
    func testUndersampledBeaconCapturesHaveTooFewStartsToScore() throws {
        let names = TestSupport.captures("beacon").map { URL(fileURLWithPath: $0).lastPathComponent }
            .filter(TestSupport.c2CapturesWithoutReportableChannel.contains)
        XCTAssertEqual(names, ["cryptowall4_c2.pcapng", "emotet.pcap", "malware.pcap"])
        for name in names {
            let path = TestSupport.data("pcaps/beacon/\(name)")
            let syns = try tshark(["-r", path, "-Y", "tcp.flags.syn==1 && tcp.flags.ack==0", "-T", "fields",
                                   "-e", "ip.src", "-e", "ip.dst", "-e", "tcp.dstport"])
            var perPair: [String: Int] = [:]
            for f in syns where f.count == 3 { perPair[f.joined(separator: " ")] = (perPair[f.joined(separator: " ")] ?? 0) + 1 }
            XCTAssertLessThan(perPair.values.max() ?? 0, 4, "\(name): \(perPair)")
            XCTAssertTrue(alerts(try replay(path), "beaconing").isEmpty, name)
        }
    }

    func testNonStandardPortCapturesRaiseC2Alerts() throws {
        let expected: [String: (String, Int, String)] = [
            "http-on-port-5432.pcap": ("192.150.187.43", 5432, "http"),
            "http-single-conn-22.pcap": ("192.168.0.1", 22, "http"),
            "http_large_req_8001.pcap": ("192.168.2.21", 8001, "http"),
            "http_on_sip_port.pcap": ("45.58.148.2", 8888, "http"),
            // The stage (a length and a PE image) opens the connection, then the implant starts TLS.
            "metasploit-ms017-010-win7x64.pcap": ("192.168.198.225", 4444, "tls"),
            "ratinfected.pcapng": ("172.16.0.111", 4433, "unknown"),
        ]
        for (name, (dst, port, proto)) in expected {
            let found = alerts(try replay(TestSupport.data("pcaps/c2-nonstd-port/\(name)")), "nonstandard_port_c2")
            XCTAssertFalse(found.isEmpty, name)
            guard let a = found.first else { continue }
            XCTAssertEqual(TestSupport.value(a, "destination.ip") as? String, dst, name)
            XCTAssertEqual(TestSupport.value(a, "destination.port") as? Int, port, name)
            XCTAssertEqual(TestSupport.value(a, "spanwatch.nonstandard_port_c2.protocol") as? String, proto, name)
            XCTAssertEqual(TestSupport.techniqueIDs(a), ["T1571"], name)
            XCTAssertNotNil(TestSupport.value(a, "spanwatch.nonstandard_port_c2.score_parts.base"), name)
        }
        // Merlin over QUIC on UDP 443 is QUIC on its own port, so the port rules have nothing to say; its
        // ClientHello (read from the decrypted client Initial) names no server: an encrypted session to a
        // bare IP, 184 s long.
        let merlinName = "merlinc2_Zeek_example.pcapng"
        let merlin = try replay(TestSupport.data("pcaps/c2-nonstd-port/\(merlinName)"))
        let found = alerts(merlin, "nonstandard_port_c2")
        XCTAssertEqual(found.count, 1, "\(found)")
        let a = try XCTUnwrap(found.first)
        XCTAssertEqual(TestSupport.value(a, "rule.id") as? String, "nonstandard_port_c2.encrypted_session_to_bare_ip")
        XCTAssertEqual(TestSupport.value(a, "source.ip") as? String, "10.0.0.4")
        XCTAssertEqual(TestSupport.value(a, "destination.ip") as? String, "24.199.110.233")
        XCTAssertEqual(TestSupport.value(a, "destination.port") as? Int, 443)
        XCTAssertEqual(TestSupport.value(a, "spanwatch.nonstandard_port_c2.finding") as? String, "encrypted_session_to_bare_ip")
        XCTAssertEqual(TestSupport.value(a, "spanwatch.nonstandard_port_c2.reason") as? String, "no_server_name")
        XCTAssertEqual(TestSupport.value(a, "spanwatch.nonstandard_port_c2.protocol") as? String, "quic")
        XCTAssertEqual(TestSupport.value(a, "spanwatch.nonstandard_port_c2.transport") as? String, "udp")
        XCTAssertEqual(TestSupport.value(a, "spanwatch.nonstandard_port_c2.alpn") as? [String], ["h3"])
        XCTAssertEqual(TestSupport.value(a, "spanwatch.nonstandard_port_c2.packets") as? Int, 100)
        XCTAssertTrue((TestSupport.value(a, "spanwatch.nonstandard_port_c2.ja4") as? String)?.hasPrefix("q13i") == true)
        XCTAssertEqual(TestSupport.techniqueIDs(a), ["T1571", "T1573"])
        let flow = try XCTUnwrap(merlin.first { TestSupport.value($0, "event.dataset") as? String == "spanwatch.flow" })
        XCTAssertEqual(TestSupport.value(flow, "network.protocol") as? String, "quic")
        XCTAssertEqual(TestSupport.value(flow, "spanwatch.tls.client.ja4") as? String, TestSupport.value(a, "spanwatch.nonstandard_port_c2.ja4") as? String)
        // Every capture of the category raises the alert.
        let all = Set(TestSupport.captures("c2-nonstd-port").map { URL(fileURLWithPath: $0).lastPathComponent })
        XCTAssertEqual(all, Set(expected.keys).union([merlinName]))
    }

    /// The ClientHello the sensor reads from decrypted QUIC Initial packets agrees with tshark's own
    /// decryption and dissection of the same packets: SNI (absent), ALPN, JA3, and JA4 — which tshark
    /// 4.0 (Debian 12) does not compute (`tls.handshake.ja4` came in 4.2), so it is recomputed from
    /// tshark's fields by the independent Python implementation below, and compared directly as well
    /// when the installed tshark has the field.
    func testQUICClientHelloAgreesWithTshark() throws {
        let path = TestSupport.data("pcaps/c2-nonstd-port/merlinc2_Zeek_example.pcapng")
        let hasJA4 = try TestSupport.run("tshark", ["-G", "fields"]).stdoutText.contains("\ttls.handshake.ja4\t")
        let rows = try tshark(["-r", path, "-Y", "quic && tls.handshake.type==1", "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,",
                               "-e", "ip.src", "-e", "udp.srcport", "-e", "ip.dst", "-e", "udp.dstport",
                               "-e", "tls.handshake.extensions_server_name", "-e", "tls.handshake.ja3",
                               "-e", "tls.handshake.version", "-e", "tls.handshake.ciphersuite", "-e", "tls.handshake.extension.type",
                               "-e", "tls.handshake.sig_hash_alg", "-e", "tls.handshake.extensions.supported_version",
                               "-e", "tls.handshake.extensions_alpn_str", "-e", "tls.handshake.sig_hash_alg_len",
                               "-e", "frame.number"] + (hasJA4 ? ["-e", "tls.handshake.ja4"] : []))
        XCTAssertEqual(rows.count, 1, "one client hello: \(rows)")
        let r = try XCTUnwrap(rows.first)
        XCTAssertEqual(r[4], "", "Merlin dials the IP: no SNI")
        XCTAssertEqual(r[11], "h3")
        let flows = try replay(path).filter { TestSupport.value($0, "event.dataset") as? String == "spanwatch.flow" }
        let flow = try XCTUnwrap(flows.first {
            TestSupport.value($0, "source.ip") as? String == r[0] && "\(TestSupport.value($0, "source.port") ?? "")" == r[1]
                && TestSupport.value($0, "destination.ip") as? String == r[2] && "\(TestSupport.value($0, "destination.port") ?? "")" == r[3]
        })
        XCTAssertNil(TestSupport.value(flow, "tls.client.server_name"))
        XCTAssertEqual(TestSupport.value(flow, "tls.client.ja3") as? String, r[5])
        XCTAssertEqual((TestSupport.value(flow, "spanwatch.tls.client.alpn") as? [String])?.joined(separator: ","), r[11])
        XCTAssertEqual(TestSupport.value(flow, "tls.version") as? String, "1.3")
        let ja4 = try XCTUnwrap(TestSupport.value(flow, "spanwatch.tls.client.ja4") as? String)
        XCTAssertEqual(ja4, try ja4Reference(r, transport: "q"))
        if hasJA4 { XCTAssertEqual(ja4, r[14]) }
    }

    func testBenignCapturesRaiseNeither() throws {
        let benign = TestSupport.captures("benign")
        XCTAssertGreaterThan(benign.count, 5)
        for path in benign {
            let events = try replay(path)
            XCTAssertTrue(alerts(events, "beaconing").isEmpty, "\(path): \(alerts(events, "beaconing"))")
            XCTAssertTrue(alerts(events, "nonstandard_port_c2").isEmpty, "\(path): \(alerts(events, "nonstandard_port_c2"))")
        }
    }

    /// SNI and JA3 of every ClientHello, and JA4 recomputed by an independent implementation (Python's
    /// hashlib over tshark's dissection of the same hello), agree with the sensor's flow events.
    func testTLSFieldsAgreeWithTshark() throws {
        var compared = 0
        let paths = TestSupport.captures("beacon") + TestSupport.captures("benign") + TestSupport.captures("c2-nonstd-port")
        for path in paths {
            let rows = try tshark(["-r", path, "-Y", "tls.handshake.type==1 && tcp", "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,",
                                   "-e", "ip.src", "-e", "tcp.srcport", "-e", "ip.dst", "-e", "tcp.dstport",
                                   "-e", "tls.handshake.extensions_server_name", "-e", "tls.handshake.ja3",
                                   "-e", "tls.handshake.version", "-e", "tls.handshake.ciphersuite", "-e", "tls.handshake.extension.type",
                                   "-e", "tls.handshake.sig_hash_alg", "-e", "tls.handshake.extensions.supported_version",
                                   "-e", "tls.handshake.extensions_alpn_str", "-e", "tls.handshake.sig_hash_alg_len",
                                   "-e", "tcp.seq"])
            guard !rows.isEmpty else { continue }
            let flows = try replay(path).filter { TestSupport.value($0, "event.dataset") as? String == "spanwatch.flow" }
            var byTuple: [String: [String: Any]] = [:]
            for f in flows {
                let k = "\(TestSupport.value(f, "source.ip") ?? "") \(TestSupport.value(f, "source.port") ?? "") \(TestSupport.value(f, "destination.ip") ?? "") \(TestSupport.value(f, "destination.port") ?? "")"
                byTuple[k] = f
            }
            var seen = Set<String>()
            for r in rows where r.count == 14 {
                let k = "\(r[0]) \(r[1]) \(r[2]) \(r[3])"
                guard seen.insert(k).inserted else { continue }  // retransmitted hellos
                // The analyser reads hellos that open a direction of the stream (tcp.seq 1), as TLS does.
                guard r[13] == "1" else { continue }
                // The hello may open the responder's direction (Meterpreter's TLS upgrade): look both ways.
                let reverse = "\(r[2]) \(r[3]) \(r[0]) \(r[1])"
                let flow = try XCTUnwrap(byTuple[k] ?? byTuple[reverse], "\(path): no flow event for \(k)")
                if byTuple[k] == nil { XCTAssertEqual(TestSupport.value(flow, "network.protocol") as? String, "tls") }
                XCTAssertEqual(TestSupport.value(flow, "network.protocol") as? String, "tls", "\(path) \(k)")
                XCTAssertEqual(TestSupport.value(flow, "tls.client.ja3") as? String, r[5], "\(path) \(k)")
                XCTAssertEqual(TestSupport.value(flow, "tls.client.server_name") as? String, r[4].isEmpty ? nil : r[4], "\(path) \(k)")
                XCTAssertEqual(TestSupport.value(flow, "spanwatch.tls.client.ja4") as? String, try ja4Reference(r), "\(path) \(k)")
                compared += 1
            }
        }
        XCTAssertGreaterThan(compared, 20)
    }

    /// Every QUIC ClientHello of the large mixed capture (nDPI's QUIC test traces: Chrome, Firefox,
    /// quiche, ngtcp2, mvfst, … over v1 and drafts 23–34) that tshark decrypts, the sensor decrypts
    /// too, with the same SNI, ALPN and JA3, and a JA4 equal to the independent recomputation. The
    /// capture is first cut (tcpdump, BPF) to its QUIC long-header datagrams, so both tools read 1 MB.
    func testQUICHellosOfTheLargeCaptureAgreeWithTshark() throws {
        try XCTSkipUnless(TestSupport.hasTool("tcpdump"), "tcpdump is installed by scripts/install-deps.sh test")
        let dir = try TestSupport.temporaryDirectory("quic-hellos")
        defer { try? FileManager.default.removeItem(at: dir) }
        let cut = dir.appendingPathComponent("quic.pcap").path
        let dump = try TestSupport.run("tcpdump", ["-r", TestSupport.data("pcaps/large/large-mixed-A.pcap"), "-w", cut,
                                                   "udp and (ip6 or udp[8] & 0xc0 == 0xc0)"])
        XCTAssertEqual(dump.status, 0, dump.stderr)
        let rows = try tshark(["-r", cut, "-Y", "quic && tls.handshake.type==1", "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,",
                               "-e", "ip.src", "-e", "udp.srcport", "-e", "ip.dst", "-e", "udp.dstport",
                               "-e", "tls.handshake.extensions_server_name", "-e", "tls.handshake.ja3",
                               "-e", "tls.handshake.version", "-e", "tls.handshake.ciphersuite", "-e", "tls.handshake.extension.type",
                               "-e", "tls.handshake.sig_hash_alg", "-e", "tls.handshake.extensions.supported_version",
                               "-e", "tls.handshake.extensions_alpn_str", "-e", "tls.handshake.sig_hash_alg_len",
                               "-e", "quic.version", "-e", "ipv6.src", "-e", "ipv6.dst"])
        let flows = try replay(cut).filter { TestSupport.value($0, "network.protocol") as? String == "quic" }
        var byTuple: [String: [String: Any]] = [:]
        for f in flows {
            byTuple["\(TestSupport.value(f, "source.ip") ?? "") \(TestSupport.value(f, "source.port") ?? "") \(TestSupport.value(f, "destination.ip") ?? "") \(TestSupport.value(f, "destination.port") ?? "")"] = f
        }
        var compared = 0, unsupported = 0
        var ja4Checked = Set<String>()
        for r in rows where r.count == 16 {
            let version = UInt32(r[13].split(separator: ",").first.map { $0.dropFirst(2) } ?? "", radix: 16) ?? 0
            // Versions the sensor does not decrypt: greased (0x?a?a?a?a), Google's T05x, mvfst's.
            guard version == 1 || (0xff00_0017...0xff00_0022).contains(version) else { unsupported += 1; continue }
            let src = r[0].isEmpty ? r[14] : r[0], dst = r[2].isEmpty ? r[15] : r[2]
            let k = "\(src) \(r[1]) \(dst) \(r[3])"
            let flow = try XCTUnwrap(byTuple[k], "no QUIC flow event for \(k)")
            XCTAssertEqual(TestSupport.value(flow, "tls.client.ja3") as? String, r[5], k)
            XCTAssertEqual(TestSupport.value(flow, "tls.client.server_name") as? String, r[4].isEmpty ? nil : r[4], k)
            XCTAssertEqual((TestSupport.value(flow, "spanwatch.tls.client.alpn") as? [String])?.joined(separator: ","), r[11].isEmpty ? nil : r[11], k)
            // JA4 recomputed once per distinct client (the Python reference is a process per call).
            if ja4Checked.insert(r[5] + r[11]).inserted {
                XCTAssertEqual(TestSupport.value(flow, "spanwatch.tls.client.ja4") as? String, try ja4Reference(r, transport: "q"), k)
            }
            compared += 1
        }
        XCTAssertGreaterThan(compared, 130, "unsupported versions: \(unsupported)")
        XCTAssertGreaterThan(ja4Checked.count, 5)
    }

    /// JA4 from tshark's fields, per FoxIO's specification, in Python (an implementation independent of ours).
    func ja4Reference(_ r: [String], transport: String = "t") throws -> String {
        let script = #"""
import hashlib, sys
sni, ver, ciphers, exts, sigs, svers, alpn, siglens, transport = sys.argv[1:10]
h = lambda s: [int(x, 16) if x.startswith("0x") else int(x) for x in s.split(",") if x]
# tshark lists the algorithms of signature_algorithms (13), delegated_credentials (34) and
# signature_algorithms_cert (50) in one field, in wire order; JA4 takes those of extension 13 only.
allsigs, lens, own = h(sigs), h(siglens), []
for t in [x for x in h(exts) if x in (13, 34, 50)]:
    n = lens.pop(0) // 2 if lens else 0
    if t == 13: own = allsigs[:n]
    allsigs = allsigs[n:]
grease = lambda v: (v & 0x0f0f) == 0x0a0a and (v >> 8) == (v & 0xff)
c = [x for x in h(ciphers) if not grease(x)]
e = [x for x in h(exts) if not grease(x)]
sv = [x for x in h(svers) if not grease(x)]
v = max(sv) if sv else h(ver)[0]
vs = {0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10", 0x0300: "s3"}.get(v, "00")
first = alpn.split(",")[0] if alpn else ""
if not first: a = "00"
elif first[0].isalnum() and first[-1].isalnum() and first.isascii(): a = first[0] + first[-1]
else: a = first.encode().hex()[0] + first.encode().hex()[-1]
part_a = transport + vs + ("d" if 0 in e else "i") + "%02d" % min(len(c), 99) + "%02d" % min(len(e), 99) + a
hx = lambda l: ",".join("%04x" % x for x in l)
cb = hx(sorted(c))
eb = hx(sorted(x for x in e if x not in (0, 16)))
sg = [x for x in own if not grease(x)]
if sg: eb += "_" + hx(sg)
tr = lambda s: hashlib.sha256(s.encode()).hexdigest()[:12] if s else "000000000000"
print(part_a + "_" + tr(cb) + "_" + tr(eb))
"""#
        let out = try TestSupport.run("python3", ["-c", script, r[4], r[6], r[7], r[8], r[9], r[10], r[11], r[12], transport])
        XCTAssertEqual(out.status, 0, out.stderr)
        return out.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Host and request target of the first request of every HTTP connection agree with tshark.
    func testHTTPFieldsAgreeWithTshark() throws {
        var compared = 0
        let paths = TestSupport.captures("beacon") + TestSupport.captures("benign") + TestSupport.captures("c2-nonstd-port")
        for path in paths {
            let rows = try tshark(["-r", path, "-Y", "http.request && tcp", "-T", "fields",
                                   "-e", "ip.src", "-e", "tcp.srcport", "-e", "ip.dst", "-e", "tcp.dstport",
                                   "-e", "http.host", "-e", "http.request.uri", "-e", "http.request.method", "-e", "http.user_agent",
                                   "-o", "tcp.desegment_tcp_streams:TRUE"] + decodeAsHTTP(path))
            guard !rows.isEmpty else { continue }
            let flows = try replay(path).filter { TestSupport.value($0, "event.dataset") as? String == "spanwatch.flow" }
            var byTuple: [String: [String: Any]] = [:]
            for f in flows {
                let k = "\(TestSupport.value(f, "source.ip") ?? "") \(TestSupport.value(f, "source.port") ?? "") \(TestSupport.value(f, "destination.ip") ?? "") \(TestSupport.value(f, "destination.port") ?? "")"
                if byTuple[k] == nil { byTuple[k] = f }
            }
            var seen = Set<String>()
            for r in rows where r.count == 8 {
                let k = "\(r[0]) \(r[1]) \(r[2]) \(r[3])"
                guard seen.insert(k).inserted else { continue }  // later requests on a keep-alive connection
                let flow = try XCTUnwrap(byTuple[k], "\(path): no flow event for \(k)")
                XCTAssertEqual(TestSupport.value(flow, "network.protocol") as? String, "http", "\(path) \(k)")
                XCTAssertEqual(TestSupport.value(flow, "url.original") as? String, r[5], "\(path) \(k)")
                XCTAssertEqual(TestSupport.value(flow, "http.request.method") as? String, r[6], "\(path) \(k)")
                if !r[4].isEmpty {
                    var host = r[4].lowercased()
                    if !host.hasPrefix("["), let colon = host.lastIndex(of: ":") { host = String(host[..<colon]) }
                    XCTAssertEqual(TestSupport.value(flow, "url.domain") as? String, host, "\(path) \(k)")
                }
                if !r[7].isEmpty { XCTAssertEqual(TestSupport.value(flow, "user_agent.original") as? String, r[7], "\(path) \(k)") }
                compared += 1
            }
        }
        XCTAssertGreaterThan(compared, 40)
    }

    /// Mistakes in c2.yaml / beaconing.yaml are reported with file, line and column by `check-rules`,
    /// and stop `replay` with the configuration exit status (78).
    func testRuleMistakesAreReportedWithLines() throws {
        let dir = try TestSupport.temporaryDirectory("c2-rules")
        let c2 = try String(contentsOfFile: TestSupport.repositoryRoot.appendingPathComponent("Rules/c2.yaml").path, encoding: .utf8)
        let lines = c2.components(separatedBy: "\n")
        let thresholdLine = try XCTUnwrap(lines.firstIndex { $0.hasPrefix("  threshold:") }) + 1
        try c2.replacingOccurrences(of: "  threshold: 40", with: "  threshold: 400")
            .write(to: dir.appendingPathComponent("c2.yaml"), atomically: true, encoding: .utf8)
        try "beaconing:\n  min_starts: 2\n".write(to: dir.appendingPathComponent("beaconing.yaml"), atomically: true, encoding: .utf8)
        let check = try TestSupport.sensor(["check-rules", dir.path])
        XCTAssertEqual(check.status, 78)
        XCTAssertTrue(check.stderr.contains("c2.yaml:\(thresholdLine):"), check.stderr)
        XCTAssertTrue(check.stderr.contains("beaconing.yaml:2:"), check.stderr)
        let replay = try TestSupport.sensor(["replay", "--rules", dir.path, TestSupport.data("pcaps/benign/dns.pcap")])
        XCTAssertEqual(replay.status, 78, replay.stderr)
        XCTAssertEqual(try TestSupport.sensor(["check-rules", "Rules"]).status, 0)
    }

    /// tshark decodes HTTP by port; point it at the non-standard ports of the C2 captures.
    func decodeAsHTTP(_ path: String) -> [String] {
        ["5432", "22", "8001", "8888"].flatMap { ["-d", "tcp.port==\($0),http"] }
    }
}
