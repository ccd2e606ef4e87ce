import Events
import PacketCore

/// The event fields the Zeek logs are made of.
enum Field: Int, CaseIterable {
    case timestamp, start, duration, sourceIP, sourcePort, destinationIP, destinationPort, transport, appProtocol
    case communityID, direction, sourceBytes, sourcePackets, destinationBytes, destinationPackets, vlan
    case tcpState, origFlags, respFlags, icmpType, icmpCode, origPayload, respPayload
    case dnsID, dnsName, dnsType, dnsClass, dnsResponseCode, dnsHeaderFlags, dnsAnswerData, dnsAnswerTTL
    case httpMethod, urlDomain, urlOriginal, referrer, httpVersion, userAgent, requestBodyBytes, responseBodyBytes
    case statusCode, requestMime, responseMime
    case tlsVersion, tlsVersionProtocol, tlsCipher, tlsNextProtocol, tlsServerName, ja3, ja3s, certSubject, certIssuer, certSHA256
    case message, ruleID, ruleName

    var path: String {
        switch self {
        case .timestamp: return "@timestamp"
        case .start: return "event.start"
        case .duration: return "event.duration"
        case .sourceIP: return "source.ip"
        case .sourcePort: return "source.port"
        case .destinationIP: return "destination.ip"
        case .destinationPort: return "destination.port"
        case .transport: return "network.transport"
        case .appProtocol: return "network.protocol"
        case .communityID: return "network.community_id"
        case .direction: return "network.direction"
        case .sourceBytes: return "source.bytes"
        case .sourcePackets: return "source.packets"
        case .destinationBytes: return "destination.bytes"
        case .destinationPackets: return "destination.packets"
        case .vlan: return "network.vlan.id"
        case .tcpState: return "spanwatch.flow.tcp_state"
        case .origFlags: return "spanwatch.flow.orig_flags"
        case .respFlags: return "spanwatch.flow.resp_flags"
        case .icmpType: return "spanwatch.flow.icmp_type"
        case .icmpCode: return "spanwatch.flow.icmp_code"
        case .origPayload: return "spanwatch.flow.orig_payload_bytes"
        case .respPayload: return "spanwatch.flow.resp_payload_bytes"
        case .dnsID: return "dns.id"
        case .dnsName: return "dns.question.name"
        case .dnsType: return "dns.question.type"
        case .dnsClass: return "dns.question.class"
        case .dnsResponseCode: return "dns.response_code"
        case .dnsHeaderFlags: return "dns.header_flags"
        case .dnsAnswerData: return "dns.answers.data"
        case .dnsAnswerTTL: return "dns.answers.ttl"
        case .httpMethod: return "http.request.method"
        case .urlDomain: return "url.domain"
        case .urlOriginal: return "url.original"
        case .referrer: return "http.request.referrer"
        case .httpVersion: return "http.version"
        case .userAgent: return "user_agent.original"
        case .requestBodyBytes: return "http.request.body.bytes"
        case .responseBodyBytes: return "http.response.body.bytes"
        case .statusCode: return "http.response.status_code"
        case .requestMime: return "http.request.mime_type"
        case .responseMime: return "http.response.mime_type"
        case .tlsVersion: return "tls.version"
        case .tlsVersionProtocol: return "tls.version_protocol"
        case .tlsCipher: return "tls.cipher"
        case .tlsNextProtocol: return "tls.next_protocol"
        case .tlsServerName: return "tls.client.server_name"
        case .ja3: return "tls.client.ja3"
        case .ja3s: return "tls.server.ja3s"
        case .certSubject: return "tls.server.x509.subject.distinguished_name"
        case .certIssuer: return "tls.server.x509.issuer.distinguished_name"
        case .certSHA256: return "tls.server.hash.sha256"
        case .message: return "message"
        case .ruleID: return "rule.id"
        case .ruleName: return "rule.name"
        }
    }
}

/// One scanned event: where each wanted field's JSON token sits.
struct Fields {
    let json: UnsafeRawBufferPointer
    let scanner: EventFieldScanner

    init(json: UnsafeRawBufferPointer, scanner: EventFieldScanner) {
        self.json = json
        self.scanner = scanner
    }

    /// The field's first JSON token (a string with its quotes).
    func token(_ f: Field) -> UnsafeRawBufferPointer? {
        let i = Int(scanner.firstHit[f.rawValue])
        guard i >= 0 else { return nil }
        let h = scanner.hits[i]
        return UnsafeRawBufferPointer(rebasing: json[h.start..<h.end])
    }

    func kind(_ f: Field) -> EventFieldScanner.Kind? {
        let i = Int(scanner.firstHit[f.rawValue])
        return i >= 0 ? scanner.hits[i].kind : nil
    }

    /// A string field's bytes without quotes (still JSON-escaped).
    func text(_ f: Field) -> UnsafeRawBufferPointer? {
        guard kind(f) == .string, let t = token(f), t.count >= 2 else { return nil }
        return UnsafeRawBufferPointer(rebasing: t[1..<(t.count - 1)])
    }

    func `is`(_ f: Field, _ value: StaticString) -> Bool {
        guard let t = text(f), t.count == value.utf8CodeUnitCount else { return false }
        let p = value.utf8Start
        for i in 0..<t.count where t[i] != p[i] { return false }
        return true
    }

    /// A whole number, written as a JSON number or as a string of digits (`dns.id`, `network.vlan.id`).
    func integer(_ f: Field) -> Int64? {
        guard let k = kind(f), let t = k == .string ? text(f) : (k == .number ? token(f) : nil) else { return nil }
        return Self.digits(t)
    }

    static func digits(_ t: UnsafeRawBufferPointer) -> Int64? {
        guard !t.isEmpty, t.count <= 18 else { return nil }
        var v: Int64 = 0
        for c in t {
            guard c >= 48, c <= 57 else { return nil }
            v = v &* 10 &+ Int64(c - 48)
        }
        return v
    }

    /// Every token of a field that repeats in an array (`dns.answers.data`).
    func forEach(_ f: Field, _ body: (UnsafeRawBufferPointer, EventFieldScanner.Kind) -> Void) {
        for h in scanner.hits where h.slot == f.rawValue {
            body(UnsafeRawBufferPointer(rebasing: json[h.start..<h.end]), h.kind)
        }
    }
}

/// The mapping from our ECS events to Zeek's logs (Zeek 6/7 field names and types; docs/SIEM.md).
/// Zeek's JSON writer puts `time` as epoch seconds with microseconds, `interval` as seconds, `count` and
/// `port` as integers, `addr` and `string` as strings, sets and vectors as arrays; unset optional fields
/// are left out, as Zeek does. Each function returns false when the event has nothing for that log.
enum ZeekMapping {
    // MARK: conn.log

    static func conn(_ w: inout JSONWriter, _ f: inout Fields) -> Bool {
        guard header(&w, f, time: .start, log: .conn) else { return false }
        if let d = f.integer(.duration) { w.field("duration", rawValue: { appendSeconds(nanoseconds: d, to: &$0) }) }
        if let n = f.integer(.origPayload) { w.field("orig_bytes", n) }
        if let n = f.integer(.respPayload) { w.field("resp_bytes", n) }
        let origPkts = f.integer(.sourcePackets) ?? 0, respPkts = f.integer(.destinationPackets) ?? 0
        w.field("conn_state", connState(f, origPackets: origPkts, respPackets: respPkts))
        switch f.text(.direction).map({ String(decoding: $0, as: UTF8.self) }) {
        case "outbound": w.field("local_orig", true); w.field("local_resp", false)
        case "inbound": w.field("local_orig", false); w.field("local_resp", true)
        case "internal": w.field("local_orig", true); w.field("local_resp", true)
        case "external": w.field("local_orig", false); w.field("local_resp", false)
        default: break
        }
        if let h = history(f) { w.field("history", h) }
        w.field("orig_pkts", origPkts)
        if let n = f.integer(.sourceBytes) { w.field("orig_ip_bytes", n) }
        w.field("resp_pkts", respPkts)
        if let n = f.integer(.destinationBytes) { w.field("resp_ip_bytes", n) }
        if let t = f.token(.communityID) { w.field("community_id", rawJSON: t) }
        if let v = f.integer(.vlan) { w.field("vlan", v) }
        return true
    }

    /// Zeek's `conn_state` from the flow's TCP state and who sent what.
    static func connState(_ f: Fields, origPackets: Int64, respPackets: Int64) -> StaticString {
        if f.kind(.tcpState) == .string {
            if f.is(.tcpState, "syn_sent") { return "S0" }
            if f.is(.tcpState, "rejected") { return "REJ" }
            if f.is(.tcpState, "established") { return "S1" }
            if f.is(.tcpState, "closing") { return "S2" }
            if f.is(.tcpState, "closed") { return "SF" }
            if f.is(.tcpState, "reset") { return hasFlag(f, .origFlags, 82) ? "RSTO" : "RSTR" }
            return "OTH"
        }
        if origPackets > 0 && respPackets > 0 { return "SF" }
        if origPackets > 0 { return "S0" }
        return "SHR"
    }

    static func hasFlag(_ f: Fields, _ field: Field, _ letter: UInt8) -> Bool {
        guard let t = f.text(field) else { return false }
        return t.contains(letter)
    }

    /// Zeek's `history` letters from the TCP flags each side sent (upper case: originator): a summary of
    /// which happened, in Zeek's usual order, not the packet order Zeek records.
    static func history(_ f: Fields) -> String? {
        guard f.kind(.origFlags) == .string || f.kind(.respFlags) == .string else { return nil }
        var h = ""
        let origData = (f.integer(.origPayload) ?? 0) > 0, respData = (f.integer(.respPayload) ?? 0) > 0
        if hasFlag(f, .origFlags, 83) { h += "S" }
        if hasFlag(f, .respFlags, 83) && hasFlag(f, .respFlags, 65) { h += "h" }
        if hasFlag(f, .origFlags, 65) { h += "A" }
        if origData { h += "D" }
        if hasFlag(f, .respFlags, 65) && !hasFlag(f, .respFlags, 83) { h += "a" }
        if respData { h += "d" }
        if hasFlag(f, .origFlags, 70) { h += "F" }
        if hasFlag(f, .respFlags, 70) { h += "f" }
        if hasFlag(f, .origFlags, 82) { h += "R" }
        if hasFlag(f, .respFlags, 82) { h += "r" }
        return h.isEmpty ? nil : h
    }

    // MARK: dns.log

    static func dns(_ w: inout JSONWriter, _ f: inout Fields) -> Bool {
        guard header(&w, f, time: .timestamp, log: .dns) else { return false }
        if let id = f.integer(.dnsID) { w.field("trans_id", id) }
        if let d = f.integer(.duration) { w.field("rtt", rawValue: { appendSeconds(nanoseconds: d, to: &$0) }) }
        if let q = f.token(.dnsName), f.kind(.dnsName) == .string { w.field("query", rawJSON: q) }
        if let t = f.text(.dnsClass), let token = f.token(.dnsClass) {
            if let n = DNSNames.classNumber(t) { w.field("qclass", n) }
            w.field("qclass_name", rawJSON: token)
        }
        if let t = f.text(.dnsType), let token = f.token(.dnsType) {
            if let n = DNSNames.typeNumber(t) { w.field("qtype", n) }
            w.field("qtype_name", rawJSON: token)
        }
        if let t = f.text(.dnsResponseCode), let token = f.token(.dnsResponseCode) {
            if let n = DNSNames.rcodeNumber(t) { w.field("rcode", n) }
            w.field("rcode_name", rawJSON: token)
        }
        var flags: (aa: Bool, tc: Bool, rd: Bool, ra: Bool) = (false, false, false, false)
        f.forEach(.dnsHeaderFlags) { t, k in
            guard k == .string, t.count == 4 else { return }
            switch (t[1], t[2]) {
            case (65, 65): flags.aa = true
            case (84, 67): flags.tc = true
            case (82, 68): flags.rd = true
            case (82, 65): flags.ra = true
            default: break
            }
        }
        w.field("AA", flags.aa); w.field("TC", flags.tc); w.field("RD", flags.rd); w.field("RA", flags.ra)
        if f.token(.dnsAnswerData) != nil {
            w.beginArray("answers")
            f.forEach(.dnsAnswerData) { t, k in if k == .string { w.element(rawJSON: t) } }
            w.endArray()
            w.beginArray("TTLs")
            f.forEach(.dnsAnswerTTL) { t, k in
                if k == .number, let v = Fields.digits(t) { w.element(rawValue: { $0.integer(v); $0.append(46); $0.append(48) }) }
            }
            w.endArray()
        }
        return true
    }

    // MARK: http.log

    static func http(_ w: inout JSONWriter, _ f: inout Fields) -> Bool {
        guard f.token(.httpMethod) != nil || f.token(.statusCode) != nil else { return false }
        guard header(&w, f, time: .start, log: .http) else { return false }
        w.field("trans_depth", 1)
        if let t = f.token(.httpMethod) { w.field("method", rawJSON: t) }
        if let t = f.token(.urlDomain) { w.field("host", rawJSON: t) }
        if let t = f.token(.urlOriginal) { w.field("uri", rawJSON: t) }
        if let t = f.token(.referrer) { w.field("referrer", rawJSON: t) }
        if let t = f.token(.httpVersion) { w.field("version", rawJSON: t) }
        if let t = f.token(.userAgent) { w.field("user_agent", rawJSON: t) }
        if let n = f.integer(.requestBodyBytes) { w.field("request_body_len", n) }
        if let n = f.integer(.responseBodyBytes) { w.field("response_body_len", n) }
        if let n = f.integer(.statusCode) { w.field("status_code", n) }
        if let t = f.token(.requestMime) { w.beginArray("orig_mime_types"); w.element(rawJSON: t); w.endArray() }
        if let t = f.token(.responseMime) { w.beginArray("resp_mime_types"); w.element(rawJSON: t); w.endArray() }
        return true
    }

    // MARK: ssl.log

    static func ssl(_ w: inout JSONWriter, _ f: inout Fields) -> Bool {
        guard f.token(.tlsVersion) != nil || f.token(.tlsServerName) != nil || f.token(.ja3) != nil else { return false }
        guard header(&w, f, time: .start, log: .ssl) else { return false }
        if let v = f.text(.tlsVersion) {
            // Zeek's names: TLSv12, TLSv13, SSLv3, DTLSv12.
            let ssl = f.is(.tlsVersionProtocol, "ssl")
            var name = ssl ? "SSLv" : "TLSv"
            for c in v where c != 46 { name.append(Character(Unicode.Scalar(c))) }
            w.field("version", name)
        }
        if let t = f.token(.tlsCipher) { w.field("cipher", rawJSON: t) }
        if let t = f.token(.tlsServerName) { w.field("server_name", rawJSON: t) }
        if let t = f.token(.tlsNextProtocol) { w.field("next_protocol", rawJSON: t) }
        // The server answered with its hello: the handshake got as far as the sensor can tell.
        w.field("established", f.token(.tlsCipher) != nil)
        if let t = f.token(.certSubject) { w.field("subject", rawJSON: t) }
        if let t = f.token(.certIssuer) { w.field("issuer", rawJSON: t) }
        if let t = f.text(.certSHA256) {
            // Zeek's certificate fingerprints are lower-case hex.
            w.beginArray("cert_chain_fps")
            w.element(String(decoding: t.map { $0 >= 65 && $0 <= 70 ? $0 + 32 : $0 }, as: UTF8.self))
            w.endArray()
        }
        if let t = f.token(.ja3) { w.field("ja3", rawJSON: t) }
        if let t = f.token(.ja3s) { w.field("ja3s", rawJSON: t) }
        return true
    }

    // MARK: notice.log

    static func notice(_ w: inout JSONWriter, _ f: inout Fields) -> Bool {
        guard let rule = f.text(.ruleID) else { return false }
        w.field("ts", rawValue: { appendEpoch(f.text(.timestamp), to: &$0) })
        if let c = f.text(.communityID) { w.field("uid", rawValue: { appendUID(c, to: &$0) }) }
        if f.kind(.sourceIP) == .string, f.kind(.destinationIP) == .string, let src = f.token(.sourceIP), let dst = f.token(.destinationIP) {
            w.field("id.orig_h", rawJSON: src)
            w.field("id.orig_p", f.integer(.sourcePort) ?? 0)
            w.field("id.resp_h", rawJSON: dst)
            w.field("id.resp_p", f.integer(.destinationPort) ?? 0)
        }
        if let t = f.text(.transport) { w.field("proto", zeekProto(t)) }
        // Zeek notice types are `Module::Name` enums: the rule id, dots as `::`'s underscores.
        w.field("note", rawValue: { o in
            o.append(34); o.append(string: "Sensor::")
            for c in rule { o.append(c == 46 ? 95 : c) }
            o.append(34)
        })
        if let t = f.token(.message) { w.field("msg", rawJSON: t) }
        if let t = f.token(.ruleName) { w.field("sub", rawJSON: t) }
        if f.kind(.sourceIP) == .string, let t = f.token(.sourceIP) { w.field("src", rawJSON: t) }
        if f.kind(.destinationIP) == .string, let t = f.token(.destinationIP) { w.field("dst", rawJSON: t) }
        if let p = f.integer(.destinationPort) { w.field("p", p) }
        w.beginArray("actions"); w.element("Notice::ACTION_LOG"); w.endArray()
        return true
    }

    // MARK: Common

    /// `ts`, `uid` and `id.*`, as every connection log starts; `proto` for conn and dns, `service` for conn.
    /// False (nothing written) when the event lacks either address: no Zeek connection line without both.
    static func header(_ w: inout JSONWriter, _ f: Fields, time: Field, log: ZeekLog) -> Bool {
        guard f.kind(.sourceIP) == .string, f.kind(.destinationIP) == .string,
              let source = f.token(.sourceIP), let destination = f.token(.destinationIP) else { return false }
        w.field("ts", rawValue: { appendEpoch(f.text(time) ?? f.text(.timestamp), to: &$0) })
        if let c = f.text(.communityID) { w.field("uid", rawValue: { appendUID(c, to: &$0) }) }
        let icmp = f.is(.transport, "icmp") || f.is(.transport, "ipv6-icmp")
        w.field("id.orig_h", rawJSON: source)
        // Zeek puts an ICMP message's type and code where the ports go.
        w.field("id.orig_p", (icmp ? f.integer(.icmpType) : f.integer(.sourcePort)) ?? 0)
        w.field("id.resp_h", rawJSON: destination)
        w.field("id.resp_p", (icmp ? f.integer(.icmpCode) : f.integer(.destinationPort)) ?? 0)
        guard log == .conn || log == .dns else { return true }
        if let t = f.text(.transport) { w.field("proto", zeekProto(t)) } else { w.field("proto", "unknown_transport") }
        if log == .conn, let p = f.text(.appProtocol) { w.field("service", zeekService(p)) }
        return true
    }

    static func zeekProto(_ t: UnsafeRawBufferPointer) -> StaticString {
        switch String(decoding: t, as: UTF8.self) {
        case "tcp": return "tcp"
        case "udp": return "udp"
        case "icmp", "ipv6-icmp": return "icmp"
        default: return "unknown_transport"
        }
    }

    /// Zeek's analyser names where they differ from ours.
    static func zeekService(_ p: UnsafeRawBufferPointer) -> String {
        let s = String(decoding: p, as: UTF8.self)
        switch s {
        case "tls": return "ssl"
        case "kerberos": return "krb"
        default: return s
        }
    }

    /// `2024-05-01T12:00:00.123456Z` → `1714564800.123456` (Zeek's `time`); 0.0 when unreadable.
    static func appendEpoch(_ t: UnsafeRawBufferPointer?, to w: inout JSONWriter) {
        guard let t, t.count == 27, t[4] == 45, t[7] == 45, t[10] == 84, t[13] == 58, t[16] == 58, t[19] == 46, t[26] == 90,
              let y = Fields.digits(UnsafeRawBufferPointer(rebasing: t[0..<4])), let mo = Fields.digits(UnsafeRawBufferPointer(rebasing: t[5..<7])),
              let d = Fields.digits(UnsafeRawBufferPointer(rebasing: t[8..<10])), let h = Fields.digits(UnsafeRawBufferPointer(rebasing: t[11..<13])),
              let mi = Fields.digits(UnsafeRawBufferPointer(rebasing: t[14..<16])), let s = Fields.digits(UnsafeRawBufferPointer(rebasing: t[17..<19])),
              let us = Fields.digits(UnsafeRawBufferPointer(rebasing: t[20..<26])) else {
            w.append(48); w.append(46); w.append(48)
            return
        }
        let secs = RFC3339.days(year: y, month: mo, day: d) * 86_400 + h * 3600 + mi * 60 + s
        appendFixed(seconds: secs, micros: us, to: &w)
    }

    /// Nanoseconds as seconds with microseconds (Zeek's `interval`).
    static func appendSeconds(nanoseconds ns: Int64, to w: inout JSONWriter) {
        appendFixed(seconds: ns / 1_000_000_000, micros: (ns % 1_000_000_000) / 1000, to: &w)
    }

    static func appendFixed(seconds: Int64, micros: Int64, to w: inout JSONWriter) {
        w.integer(seconds)
        w.append(46)
        var div: Int64 = 100_000
        while div > 0 { w.append(UInt8(truncatingIfNeeded: 48 + (micros / div) % 10)); div /= 10 }
    }

    static let base62: [UInt8] = Array("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz".utf8)

    /// A Zeek-style connection uid (`C` + base62) derived from the Community ID, so conn, dns, http, ssl and
    /// notice lines of one connection carry the same uid. SHA-1 (as the Community ID itself) spreads it.
    static func appendUID(_ communityID: UnsafeRawBufferPointer, to w: inout JSONWriter) {
        let d = SHA1.hash(communityID)
        w.append(34)
        w.append(67)
        func digits(_ part: UInt64) {
            var v = part
            for _ in 0..<9 { w.append(base62[Int(v % 62)]); v /= 62 }
        }
        digits(UInt64(d.0) << 16 | UInt64(d.1 >> 16))
        digits(UInt64(d.1 & 0xffff) << 32 | UInt64(d.2))
        w.append(34)
    }
}

/// Number ↔ name tables for the DNS fields Zeek logs as both (`qtype`/`qtype_name`, …).
enum DNSNames {
    static func number(_ t: UnsafeRawBufferPointer, prefix: StaticString, table: [String: Int64]) -> Int64? {
        let s = String(decoding: t, as: UTF8.self)
        if let n = table[s] { return n }
        let p = prefix.description
        if s.hasPrefix(p), let n = Int64(s.dropFirst(p.count)), n >= 0, n <= 65535 { return n }
        return Int64(s).flatMap { $0 >= 0 && $0 <= 65535 ? $0 : nil }
    }

    static func typeNumber(_ t: UnsafeRawBufferPointer) -> Int64? { number(t, prefix: "TYPE", table: types) }
    static func classNumber(_ t: UnsafeRawBufferPointer) -> Int64? { number(t, prefix: "CLASS", table: classes) }
    static func rcodeNumber(_ t: UnsafeRawBufferPointer) -> Int64? { number(t, prefix: "RCODE", table: rcodes) }

    static let types: [String: Int64] = [
        "A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "NULL": 10, "WKS": 11, "PTR": 12, "HINFO": 13, "MX": 15, "TXT": 16, "RP": 17,
        "AFSDB": 18, "SIG": 24, "KEY": 25, "AAAA": 28, "LOC": 29, "NXT": 30, "SRV": 33, "NAPTR": 35, "KX": 36, "CERT": 37,
        "A6": 38, "DNAME": 39, "OPT": 41, "APL": 42, "DS": 43, "SSHFP": 44, "IPSECKEY": 45, "RRSIG": 46, "NSEC": 47,
        "DNSKEY": 48, "DHCID": 49, "NSEC3": 50, "NSEC3PARAM": 51, "TLSA": 52, "SMIMEA": 53, "HIP": 55, "CDS": 59,
        "CDNSKEY": 60, "OPENPGPKEY": 61, "CSYNC": 62, "ZONEMD": 63, "SVCB": 64, "HTTPS": 65, "SPF": 99, "TKEY": 249,
        "TSIG": 250, "IXFR": 251, "AXFR": 252, "MAILB": 253, "MAILA": 254, "ANY": 255, "*": 255, "URI": 256, "CAA": 257,
    ]
    static let classes: [String: Int64] = ["IN": 1, "CS": 2, "CH": 3, "HS": 4, "NONE": 254, "ANY": 255]
    static let rcodes: [String: Int64] = [
        "NOERROR": 0, "FORMERR": 1, "SERVFAIL": 2, "NXDOMAIN": 3, "NOTIMP": 4, "REFUSED": 5, "YXDOMAIN": 6, "YXRRSET": 7,
        "NXRRSET": 8, "NOTAUTH": 9, "NOTZONE": 10, "DSOTYPENI": 11, "BADVERS": 16, "BADSIG": 16, "BADKEY": 17, "BADTIME": 18,
        "BADMODE": 19, "BADNAME": 20, "BADALG": 21, "BADTRUNC": 22, "BADCOOKIE": 23,
    ]
}
