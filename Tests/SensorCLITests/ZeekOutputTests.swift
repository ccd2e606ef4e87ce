import Foundation
import TestSupport
import XCTest

/// `--output zeek:DIR` through the real binary: Zeek's JSON log format, field names and types, zeekctl's
/// hourly file layout, and uids that join conn.log with dns/http/ssl/notice lines of the same connection.
final class ZeekOutputTests: XCTestCase {
    /// Zeek's documented log fields and their Zeek types (Zeek 6/7 script reference: Conn::Info, DNS::Info,
    /// HTTP::Info, SSL::Info, Notice::Info; `community_id` and `vlan` from the conn policy scripts, `ja3`/`ja3s`
    /// from the ja3 package). `time`/`interval` are JSON numbers, `count`/`port`/`int` integers.
    static let idFields: [String: String] = ["ts": "time", "uid": "string", "id.orig_h": "addr", "id.orig_p": "port", "id.resp_h": "addr", "id.resp_p": "port"]
    static let zeekFields: [String: [String: String]] = [
        "conn": idFields.merging([
            "proto": "enum", "service": "string", "duration": "interval", "orig_bytes": "count", "resp_bytes": "count",
            "conn_state": "string", "local_orig": "bool", "local_resp": "bool", "missed_bytes": "count", "history": "string",
            "orig_pkts": "count", "orig_ip_bytes": "count", "resp_pkts": "count", "resp_ip_bytes": "count",
            "tunnel_parents": "set[string]", "community_id": "string", "vlan": "int", "inner_vlan": "int", "ip_proto": "count",
        ]) { a, _ in a },
        "dns": idFields.merging([
            "proto": "enum", "trans_id": "count", "rtt": "interval", "query": "string", "qclass": "count", "qclass_name": "string",
            "qtype": "count", "qtype_name": "string", "rcode": "count", "rcode_name": "string", "AA": "bool", "TC": "bool",
            "RD": "bool", "RA": "bool", "Z": "count", "answers": "vector[string]", "TTLs": "vector[interval]", "rejected": "bool",
        ]) { a, _ in a },
        "http": idFields.merging([
            "trans_depth": "count", "method": "string", "host": "string", "uri": "string", "referrer": "string", "version": "string",
            "user_agent": "string", "origin": "string", "request_body_len": "count", "response_body_len": "count",
            "status_code": "count", "status_msg": "string", "info_code": "count", "info_msg": "string", "tags": "set[enum]",
            "username": "string", "password": "string", "proxied": "set[string]", "orig_fuids": "vector[string]",
            "orig_filenames": "vector[string]", "orig_mime_types": "vector[string]", "resp_fuids": "vector[string]",
            "resp_filenames": "vector[string]", "resp_mime_types": "vector[string]",
        ]) { a, _ in a },
        "ssl": idFields.merging([
            "version": "string", "cipher": "string", "curve": "string", "server_name": "string", "resumed": "bool",
            "last_alert": "string", "next_protocol": "string", "established": "bool", "ssl_history": "string",
            "cert_chain_fps": "vector[string]", "client_cert_chain_fps": "vector[string]", "subject": "string", "issuer": "string",
            "client_subject": "string", "client_issuer": "string", "sni_matches_cert": "bool", "validation_status": "string",
            "ja3": "string", "ja3s": "string",
        ]) { a, _ in a },
        "notice": idFields.merging([
            "fuid": "string", "file_mime_type": "string", "file_desc": "string", "proto": "enum", "note": "enum", "msg": "string",
            "sub": "string", "src": "addr", "dst": "addr", "p": "port", "n": "count", "peer_descr": "string", "actions": "set[enum]",
            "email_dest": "set[string]", "suppress_for": "interval", "dropped": "bool",
        ]) { a, _ in a },
    ]
    static let required: [String: [String]] = [
        "conn": ["ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "conn_state", "orig_pkts", "resp_pkts"],
        "dns": ["ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "trans_id", "AA", "TC", "RD", "RA"],
        "http": ["ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "trans_depth"],
        "ssl": ["ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "established"],
        "notice": ["ts", "note", "msg", "actions"],
    ]

    static func conforms(_ v: Any, _ type: String) -> Bool {
        if type.hasPrefix("set[") || type.hasPrefix("vector[") {
            let inner = String(type.drop(while: { $0 != "[" }).dropFirst().dropLast())
            return (v as? [Any])?.allSatisfy { conforms($0, inner) } ?? false
        }
        switch type {
        case "time", "interval": return ECSReference.isWrittenAsFloat(v)
        case "count", "port": return ECSReference.isInteger(v) && ((v as? NSNumber)?.int64Value ?? -1) >= 0
        case "int": return ECSReference.isInteger(v)
        case "bool": return ECSReference.isBoolean(v)
        case "addr":
            guard let s = v as? String else { return false }
            var buf = [UInt8](repeating: 0, count: 16)
            return inet_pton(AF_INET, s, &buf) == 1 || inet_pton(AF_INET6, s, &buf) == 1
        case "string", "enum": return v is String
        default: return false
        }
    }

    /// Problems of one line of `log`; empty when it has Zeek's shape.
    static func problems(_ line: [String: Any], log: String) -> [String] {
        guard let fields = zeekFields[log] else { return ["unknown log \(log)"] }
        var out: [String] = []
        for (k, v) in line {
            guard let t = fields[k] else { out.append("\(log): \(k) is not a Zeek field"); continue }
            if !conforms(v, t) { out.append("\(log): \(k) is not a Zeek \(t): \(v)") }
        }
        for k in required[log] ?? [] where line[k] == nil { out.append("\(log): no \(k)") }
        if let uid = line["uid"] as? String, !(uid.hasPrefix("C") && uid.count >= 12 && uid.allSatisfy { $0.isLetter || $0.isNumber }) {
            out.append("\(log): uid \(uid) is not uid-shaped")
        }
        return out
    }

    /// Every log line of `dir`, by log name, with the hour its file covers (seconds since the epoch).
    static func readLogs(_ dir: URL) throws -> [String: [(line: [String: Any], hourStart: Double)]] {
        var out: [String: [(line: [String: Any], hourStart: Double)]] = [:]
        let dayFormat = try NSRegularExpression(pattern: #"^(\d{4})-(\d{2})-(\d{2})/(conn|dns|http|ssl|notice)\.(\d{2}):00:00-(\d{2}):00:00\.log$"#)
        for rel in try FileManager.default.subpathsOfDirectory(atPath: dir.path).sorted() where rel.hasSuffix(".log") {
            let m = try XCTUnwrap(dayFormat.firstMatch(in: rel, range: NSRange(rel.startIndex..., in: rel)), "file name \(rel)")
            func part(_ i: Int) -> String { String(rel[Range(m.range(at: i), in: rel)!]) }
            XCTAssertEqual((Int(part(5))! + 1) % 24, Int(part(6))!, rel)
            var c = DateComponents(); c.year = Int(part(1)); c.month = Int(part(2)); c.day = Int(part(3)); c.hour = Int(part(5))
            var cal = Calendar(identifier: .gregorian); cal.timeZone = TimeZone(identifier: "UTC")!
            let start = try XCTUnwrap(cal.date(from: c)).timeIntervalSince1970
            let text = try String(contentsOf: dir.appendingPathComponent(rel), encoding: .utf8)
            XCTAssertTrue(text.hasSuffix("\n"), rel)
            for l in text.split(separator: "\n") {
                let o = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(l.utf8)) as? [String: Any], "\(rel): \(l)")
                out[part(4), default: []].append((o, start))
            }
        }
        return out
    }

    func testSharedCapturesAsZeekLogs() throws {
        let dir = try TestSupport.temporaryDirectory("zeek-out")
        defer { try? FileManager.default.removeItem(at: dir) }
        let logsDir = dir.appendingPathComponent("logs")
        try FileManager.default.createDirectory(at: logsDir, withIntermediateDirectories: false)
        let eventsFile = dir.appendingPathComponent("events.ndjson").path
        let captures = ["benign", "beacon", "c2-nonstd-port", "dns-tunnel", "lateral"].flatMap { TestSupport.captures($0) }
        let r = try TestSupport.sensor(["replay"] + captures + ["--output", "zeek:\(logsDir.path)", "--output", "file:\(eventsFile)", "--log-level", "error"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let events = try String(contentsOfFile: eventsFile, encoding: .utf8).split(separator: "\n").map {
            try XCTUnwrap(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
        let logs = try Self.readLogs(logsDir)
        var problems: [String: Int] = [:]
        for (log, lines) in logs {
            for (line, hourStart) in lines {
                for p in Self.problems(line, log: log) { problems[p.components(separatedBy: ": ").prefix(2).joined(separator: ": "), default: 0] += 1 }
                // A line is filed under the hour it was written in (Zeek: when the connection ended), never before its ts.
                if let ts = line["ts"] as? Double { XCTAssertLessThan(ts, hourStart + 3600, log) }
            }
        }
        XCTAssertEqual(problems, [:])
        // One line per event of the dataset the log comes from.
        func count(_ f: ([String: Any]) -> Bool) -> Int { events.filter(f).count }
        func dataset(_ e: [String: Any]) -> String { TestSupport.value(e, "event.dataset") as? String ?? "" }
        XCTAssertEqual(logs["conn"]?.count, count { dataset($0) == "spanwatch.flow" })
        XCTAssertEqual(logs["dns"]?.count, count { dataset($0) == "spanwatch.dns" })
        XCTAssertEqual(logs["notice"]?.count, count { dataset($0) == "spanwatch.alert" })
        XCTAssertEqual(logs["http"]?.count, count { dataset($0) == "spanwatch.flow" && TestSupport.value($0, "http.request.method") != nil })
        XCTAssertEqual(logs["ssl"]?.count, count { dataset($0) == "spanwatch.flow" && TestSupport.value($0, "tls") != nil })
        for log in ["conn", "dns", "http", "ssl", "notice"] { XCTAssertGreaterThan(logs[log]?.count ?? 0, 0, log) }
        // uids join: every dns/http/ssl line names a conn line of the same connection (same hosts).
        var connHosts: [String: Set<String>] = [:]
        for (l, _) in logs["conn"] ?? [] {
            connHosts[l["uid"] as! String] = [l["id.orig_h"] as! String, l["id.resp_h"] as! String]
        }
        var joined = 0
        for log in ["dns", "http", "ssl"] {
            for (l, _) in logs[log] ?? [] {
                let uid = try XCTUnwrap(l["uid"] as? String)
                XCTAssertEqual(connHosts[uid], [l["id.orig_h"] as! String, l["id.resp_h"] as! String], "\(log) \(uid) joins no conn line")
                joined += 1
            }
        }
        XCTAssertGreaterThan(joined, 100)
        // Values agree with the ECS events: a flow's start, payload bytes and Community ID.
        // (Only Community IDs that one flow has: a 5-tuple reused later is one uid, see docs/SIEM.md.)
        let flowsByCID = Dictionary(grouping: events.filter { dataset($0) == "spanwatch.flow" }) { TestSupport.value($0, "network.community_id") as! String }
            .compactMapValues { $0.count == 1 ? $0[0] : nil }
        var compared = 0
        for (l, _) in (logs["conn"] ?? []).prefix(300) {
            guard let cid = l["community_id"] as? String, let flow = flowsByCID[cid], TestSupport.value(flow, "event.type") as? [String] == ["connection", "end"] else { continue }
            let text = TestSupport.value(flow, "event.start") as! String
            let whole = try XCTUnwrap(ISO8601DateFormatter().date(from: String(text.prefix(19)) + "Z")).timeIntervalSince1970
            let start = whole + Double("0." + text.dropFirst(20).dropLast())!
            XCTAssertEqual(l["ts"] as! Double, start, accuracy: 0.000_001)
            XCTAssertEqual(l["id.orig_h"] as? String, TestSupport.value(flow, "source.ip") as? String)
            compared += 1
        }
        XCTAssertGreaterThan(compared, 50)
        // The check can fail.
        XCTAssertEqual(Self.problems(["ts": 1, "uid": "Cabc", "id.orig_h": "x", "id.orig_p": -1, "id.resp_h": "10.0.0.1", "id.resp_p": 53,
                                      "proto": "udp", "conn_state": "S0", "orig_pkts": 1, "resp_pkts": 0, "bytes": 5], log: "conn").count, 5)
    }

    /// Lines go to the file of their hour, in zeekctl's layout, and a later hour's line never lands in an
    /// earlier file.
    func testHourlyRotation() throws {
        let dir = try TestSupport.temporaryDirectory("zeek-rotation")
        defer { try? FileManager.default.removeItem(at: dir) }
        var w = PcapFileWriter()
        // 12:59:58, 13:00:01, 13:40:00, 14:30:00 (UTC, 2024-05-01).
        for (i, t) in [3598, 3601, 6000, 9000].enumerated() {
            SyntheticTraffic.dnsExchange(&w, at: UInt32(t), id: UInt16(100 + i), name: "host\(i).example.org", sport: UInt16(50000 + i))
        }
        let capture = dir.appendingPathComponent("dns.pcap").path
        try w.write(to: capture)
        let logsDir = dir.appendingPathComponent("logs")
        try FileManager.default.createDirectory(at: logsDir, withIntermediateDirectories: false)
        let r = try TestSupport.sensor(["replay", capture, "--output", "zeek:\(logsDir.path)", "--log-level", "error"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let files = try FileManager.default.subpathsOfDirectory(atPath: logsDir.path).filter { $0.hasSuffix(".log") }.sorted()
        XCTAssertEqual(files, [
            "2024-05-01/conn.12:00:00-13:00:00.log", "2024-05-01/conn.13:00:00-14:00:00.log", "2024-05-01/conn.14:00:00-15:00:00.log",
            "2024-05-01/dns.12:00:00-13:00:00.log", "2024-05-01/dns.13:00:00-14:00:00.log", "2024-05-01/dns.14:00:00-15:00:00.log",
        ])
        let logs = try Self.readLogs(logsDir)
        let dns = try XCTUnwrap(logs["dns"])
        XCTAssertEqual(dns.map { $0.line["query"] as? String }, ["host0.example.org", "host1.example.org", "host2.example.org", "host3.example.org"])
        for (l, hourStart) in dns {
            let ts = try XCTUnwrap(l["ts"] as? Double)
            XCTAssertTrue(ts >= hourStart && ts < hourStart + 3600, "\(ts) in the file of \(hourStart)")
            XCTAssertEqual(l["answers"] as? [String], ["203.0.113.10"])
            XCTAssertEqual(l["TTLs"] as? [Double], [3600.0])
            XCTAssertEqual(l["rtt"] as? Double ?? 0, 0.02, accuracy: 0.000_001)
            XCTAssertEqual(l["qtype_name"] as? String, "A")
            XCTAssertEqual(l["rcode"] as? Int, 0)
            XCTAssertEqual(Self.problems(l, log: "dns"), [])
        }
        XCTAssertEqual(Set(dns.map { $0.line["uid"] as! String }), Set(logs["conn"]!.map { $0.line["uid"] as! String }))
    }

    func testSpecParsing() throws {
        let bad = try TestSupport.sensor(["replay", TestSupport.data("pcaps/benign/dns.pcap"), "--output", "zeek:/nonexistent/dir"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("zeek:/nonexistent/dir"), bad.stderr)
    }
}

