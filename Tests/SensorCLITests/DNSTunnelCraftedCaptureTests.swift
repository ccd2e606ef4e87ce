import Foundation
import TestSupport
import XCTest

/// DNS over UDP/IPv4 in a classic pcap, byte by byte: queries and responses with TXT, CNAME, MX and A
/// answers (names uncompressed).
struct DNSCaptureBuilder {
    var pcap = PcapFileWriter()
    var time = 1_700_000_000.0
    var nextID: UInt16 = 0x100

    static func address(_ s: String) -> [UInt8] { s.split(separator: ".").map { UInt8($0)! } }

    static func name(_ text: String) -> [UInt8] {
        var out: [UInt8] = []
        for l in text.split(separator: ".") { out.append(UInt8(l.utf8.count)); out += Array(l.utf8) }
        return out + [0]
    }

    enum Answer {
        case txt(String), cname(String), mx(String), a([UInt8])
        var type: UInt16 {
            switch self { case .txt: return 16; case .cname: return 5; case .mx: return 15; case .a: return 1 }
        }
        var rdata: [UInt8] {
            switch self {
            case .txt(let s):
                var out: [UInt8] = []
                var bytes = Array(s.utf8)[...]
                while !bytes.isEmpty { let c = bytes.prefix(255); out.append(UInt8(c.count)); out += c; bytes = bytes.dropFirst(c.count) }
                return out
            case .cname(let n): return DNSCaptureBuilder.name(n)
            case .mx(let n): return [0, 10] + DNSCaptureBuilder.name(n)
            case .a(let b): return b
            }
        }
    }

    static func be16(_ v: UInt16) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xFF)] }

    mutating func frame(from src: String, _ sport: UInt16, to dst: String, _ dport: UInt16, _ dns: [UInt8]) {
        let udpLength = 8 + dns.count, ipLength = 20 + udpLength
        var f: [UInt8] = [0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 1, 0x08, 0x00]
        f += [0x45, 0] + Self.be16(UInt16(ipLength)) + [0, 1, 0, 0, 64, 17, 0, 0] + Self.address(src) + Self.address(dst)
        f += Self.be16(sport) + Self.be16(dport) + Self.be16(UInt16(udpLength)) + [0, 0]
        let seconds = UInt32(time)
        pcap.record(seconds: seconds, micros: UInt32((time - Double(seconds)) * 1e6), bytes: f + dns)
    }

    /// A query from `client` and, unless `answers` is nil, its response.
    mutating func exchange(_ client: String, _ server: String, _ qname: String, type: UInt16, rcode: UInt16 = 0, answers: [Answer]? = [], gap: Double = 0.5) {
        nextID &+= 1
        let port = UInt16(30000 + Int(nextID) % 30000)
        let question = Self.name(qname) + Self.be16(type) + [0, 1]
        frame(from: client, port, to: server, 53, Self.be16(nextID) + [0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0] + question)
        time += 0.01
        if let answers {
            var r = Self.be16(nextID) + Self.be16(0x8180 | rcode) + [0, 1] + Self.be16(UInt16(answers.count)) + [0, 0, 0, 0] + question
            for a in answers {
                let rdata = a.rdata
                r += [0xC0, 12] + Self.be16(a.type) + [0, 1, 0, 0, 0, 60] + Self.be16(UInt16(rdata.count)) + rdata
            }
            frame(from: server, 53, to: client, port, r)
        }
        time += gap
    }
}

/// The tunnels that used to go unseen and the ordinary traffic that used to alert, as packets through
/// the real `sensor` binary with the real Public Suffix List and the repository's rules.
final class DNSTunnelCraftedCaptureTests: XCTestCase {
    static func hex(_ i: Int, _ n: Int) -> String {
        var x = UInt64(i) &* 0x9E37_79B9_7F4A_7C15 &+ 1
        return String((0..<n).map { _ in x ^= x << 13; x ^= x >> 7; x ^= x << 17; return Array("0123456789abcdef")[Int(x & 15)] })
    }
    static func base32(_ i: Int, _ n: Int) -> String {
        var x = UInt64(i) &* 0xBF58_476D_1CE4_E5B9 &+ 7
        return String((0..<n).map { _ in x ^= x << 13; x ^= x >> 7; x ^= x << 17; return Array("abcdefghijklmnopqrstuvwxyz234567")[Int(x & 31)] })
    }
    static func base64(_ i: Int, _ n: Int) -> String {
        var x = UInt64(i) &* 0x94D0_49BB_1331_11EB &+ 3
        return Data((0..<n).map { _ in x ^= x << 13; x ^= x >> 7; x ^= x << 17; return UInt8(truncatingIfNeeded: x) }).base64EncodedString()
    }

    func testCraftedTunnelsAreCaughtAndOrdinaryTrafficIsNot() throws {
        var b = DNSCaptureBuilder()
        let resolver = "10.1.0.53"
        for i in 0..<40 {
            // dnscat2 in direct mode: no domain, straight to its server, TXT/CNAME/MX.
            let direct = "dnscat.\(Self.hex(i, 62)).\(Self.hex(i + 1000, 12 + i % 17))"
            let answer: DNSCaptureBuilder.Answer = [.txt(Self.hex(i + 2000, 100)), .cname("\(Self.hex(i + 3000, 60)).\(Self.hex(i + 4000, 20))"),
                                                    .mx("\(Self.hex(i + 5000, 60)).\(Self.hex(i + 6000, 16))")][i % 3]
            b.exchange("10.1.0.7", "203.0.113.9", direct, type: answer.type, answers: [answer], gap: 0.2)
            // A tunnel whose queries carry the resolver's search suffix (.local is on the allowlist).
            b.exchange("10.1.0.8", resolver, "\(Self.base32(i, 30)).\(Self.base32(i + 77, 20)).evil.com.corp.local", type: 16, rcode: 3, answers: [], gap: 0.2)
            // A tunnel with plain short queries and its data in TXT answers.
            b.exchange("10.1.0.9", resolver, "r\(i).c.evil-txt.com", type: 16, answers: [.txt(Self.base64(i, 135))], gap: 0.2)
            // Ordinary browsing: CNAME chains to CDNs, long descriptive cloud names, CDN host names.
            let ordinary = ["www.example.com", "k8s-ingressnginx-publicfacing-loadbalancer-7f3c9a2b1d.eu-west-1.cloudprovider.com",
                            "contoso-production-westeurope-analytics-dashboard-frontend.cloudprovider.com",
                            "customer-insights-reporting-backend-northeurope-staging.cloudprovider.com",
                            "scontent-fra5-1.xx.fbcdn.net", "video-fra3-\(i % 3).xx.fbcdn.net", "static.xx.fbcdn.net", "news.example.org"][i % 8]
            b.exchange("10.1.0.20", resolver, ordinary, type: 1,
                       answers: [.cname("\(ordinary).edgekey.net"), .cname("e\(1000 + i % 7).dscb.akamaiedge.net"), .a([192, 0, 2, UInt8(i)])], gap: 0.2)
            // The resolver itself, forwarding for many clients: their names, Chrome's random probes, internal names.
            for k in 0..<6 {
                let n = i * 6 + k
                switch n % 3 {
                case 0: b.exchange(resolver, "8.8.8.8", "www.site\(n % 50).com", type: 1, answers: [.a([198, 51, 100, UInt8(n % 200)])], gap: 0.05)
                case 1: b.exchange(resolver, "8.8.8.8", String(Self.base32(n, 7 + n % 9).map { $0.isNumber ? "x" : $0 }), type: 1, rcode: 3, answers: [], gap: 0.05)
                default: b.exchange(resolver, "8.8.8.8", "host\(n % 70).corp.lan", type: 1, rcode: 3, answers: [], gap: 0.05)
                }
            }
        }
        let dir = try TestSupport.temporaryDirectory("dns-crafted")
        let path = dir.appendingPathComponent("crafted-dns.pcap").path
        try b.pcap.write(to: path)
        let r = try TestSupport.sensor(["replay", "--psl", TestSupport.data("psl/public_suffix_list.dat"), path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let alerts = try TestSupport.events(r).filter { TestSupport.value($0, "rule.category") as? String == "dns_tunneling" }
        func of(_ client: String) -> [[String: Any]] { alerts.filter { TestSupport.value($0, "spanwatch.dns_tunneling.client") as? String == client } }
        let summary = alerts.map { "\(TestSupport.value($0, "spanwatch.dns_tunneling.client") ?? "") \(TestSupport.value($0, "rule.id") ?? "") \(TestSupport.value($0, "spanwatch.dns_tunneling.domain") ?? "-")" }

        XCTAssertEqual(Set(of("10.1.0.7").compactMap { TestSupport.value($0, "rule.id") as? String }), ["dns_tunneling.server_channel"], "\(summary)")
        XCTAssertEqual(Set(of("10.1.0.8").compactMap { TestSupport.value($0, "spanwatch.dns_tunneling.domain") as? String }), ["evil.com"], "\(summary)")
        XCTAssertEqual(of("10.1.0.8").first.flatMap { TestSupport.value($0, "spanwatch.dns_tunneling.search_suffix") as? String }, "corp.local")
        XCTAssertEqual(Set(of("10.1.0.9").compactMap { TestSupport.value($0, "spanwatch.dns_tunneling.domain") as? String }), ["evil-txt.com"], "\(summary)")
        XCTAssertGreaterThan(of("10.1.0.9").first.flatMap { TestSupport.value($0, "spanwatch.dns_tunneling.mean_answer_payload") as? Double } ?? 0, 150)
        XCTAssertTrue(of("10.1.0.20").isEmpty, "\(summary)")
        XCTAssertTrue(of(resolver).isEmpty, "\(summary)")
        XCTAssertEqual(alerts.count, of("10.1.0.7").count + of("10.1.0.8").count + of("10.1.0.9").count, "\(summary)")
    }
}
