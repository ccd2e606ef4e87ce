import Foundation
import XCTest
@testable import Analyzers
@testable import Detectors
import Events
import PacketCore
import TestSupport

/// Lower-case hex of a counter through a mixing function.
func hexLabel(_ i: Int, length: Int) -> String {
    var x = UInt64(i) &* 0xD6E8_FEB8_6659_FD93
    var s = ""
    let alphabet = Array("0123456789abcdef")
    while s.count < length {
        x ^= x >> 31; x = x &* 0x94D0_49BB_1331_11EB; x ^= x >> 29
        s.append(alphabet[Int(x & 15)])
    }
    return s
}

/// Base64 text of `count` pseudo-random bytes.
func base64Blob(_ i: Int, count: Int) -> String {
    var x = UInt64(i) &+ 0x1234_5678
    var bytes: [UInt8] = []
    while bytes.count < count {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17
        bytes.append(UInt8(truncatingIfNeeded: x))
    }
    return Data(bytes).base64EncodedString()
}

/// The evasions and false alerts seen on captures nobody here had seen, driven as facts through the
/// detector with the repository's rules file.
final class DNSTunnelEvasionTests: XCTestCase {
    static func shippedRules() throws -> DNSTunnelRules {
        try DNSTunnelRules.load(path: TestSupport.repositoryRoot.appendingPathComponent("Rules/dns-tunneling.yaml").path)
    }

    func details(_ a: [String: Any]) -> [String: Any] { TestSupport.value(a, "spanwatch.dns_tunneling") as? [String: Any] ?? [:] }
    func alerts(_ d: FactDriver, client: String) -> [[String: Any]] {
        d.sink.alerts.filter { details($0)["client"] as? String == client }
    }

    /// dnscat2 without a domain talks straight to its server: `dnscat.<hex>.<hex>`, whose last label is no
    /// listed top-level domain, so every query has a different "registered domain". A resolver forwarding
    /// for many clients (ordinary names, Chrome's random intranet probes, internal names under an unlisted
    /// top-level domain) stays quiet.
    func testDirectModeTunnelIsCaughtPerServerAndABusyResolverIsNot() throws {
        var d = FactDriver(rules: try Self.shippedRules())
        let types: [UInt16] = [16, 5, 15]
        for i in 0..<40 {
            let name = "dnscat.\(hexLabel(i, length: 62)).\(hexLabel(i + 500, length: 10 + i % 20))"
            d.query(name, type: types[i % 3], client: "10.0.0.7", server: "203.0.113.9")
            d.answer(name, type: types[i % 3], client: "10.0.0.7", server: "203.0.113.9", payload: hexLabel(i + 900, length: 90))
            // The resolver, as the client of its upstream, in between.
            for k in 0..<8 {
                let n = i * 8 + k
                let name: String
                switch n % 4 {
                case 0: name = "www.site\(n % 60).com"
                case 1: name = String(encodedLabel(n, length: 7 + n % 9).map { $0.isNumber ? "q" : $0 })
                case 2: name = "host\(n % 90).corp.lan"
                default: name = "_ldap._tcp.dc._msdcs.corp.lan"
                }
                d.query(name, type: n % 4 == 3 ? 33 : 1, client: "10.0.0.53", server: "8.8.8.8", advance: 20_000_000)
                d.answer(name, type: n % 4 == 3 ? 33 : 1, client: "10.0.0.53", server: "8.8.8.8", rcode: n % 4 == 1 ? 3 : 0)
            }
        }
        XCTAssertTrue(alerts(d, client: "10.0.0.53").isEmpty, "\(alerts(d, client: "10.0.0.53").map(details))")
        let direct = alerts(d, client: "10.0.0.7")
        XCTAssertFalse(direct.isEmpty, "dnscat2 in direct mode not caught")
        let first = try XCTUnwrap(direct.first.map(details))
        XCTAssertEqual(first["rule"] as? String, "server_channel")
        XCTAssertEqual(first["aggregate"] as? String, "client_server")
        XCTAssertEqual(first["server"] as? String, "203.0.113.9")
        XCTAssertNil(first["domain"], "a direct-mode tunnel has no domain to name")
        XCTAssertEqual(TestSupport.value(direct[0], "rule.id") as? String, "dns_tunneling.server_channel")
        XCTAssertGreaterThan(d.detector.counters.resolverAggregated, 40)
    }

    /// `<data>.evil.com.corp.local`: the resolver's search suffix ends in `local`, on the allowlist. The
    /// name is judged as evil.com; names really in the internal zone stay allowlisted.
    func testSearchSuffixUnderAnInternalZoneIsStrippedNotAllowlisted() throws {
        var d = FactDriver(rules: try Self.shippedRules())
        XCTAssertTrue(d.detector.rules.allowlist.contains("local"))
        for i in 0..<30 {
            d.query("\(encodedLabel(i, length: 30)).\(encodedLabel(i + 100, length: 20)).evil.com.CORP.LOCAL")
            // Windows domain-controller locator names with GUIDs, in the internal zone itself.
            d.query("\(hexLabel(i, length: 8))-\(hexLabel(i + 1, length: 4))-\(hexLabel(i + 2, length: 4))-\(hexLabel(i + 3, length: 12))._msdcs.corp.local", type: 5)
        }
        let a = d.sink.alerts.map(details)
        XCTAssertFalse(a.isEmpty, "tunnel behind a .local search suffix not caught")
        XCTAssertEqual(Set(a.compactMap { $0["domain"] as? String }), ["evil.com"])
        XCTAssertEqual(a.first?["search_suffix"] as? String, "corp.local")
        XCTAssertEqual(d.detector.counters.allowlisted, 30, "the internal zone's own names stay allowlisted")
        XCTAssertEqual(d.detector.counters.searchSuffixStripped, 30)
    }

    /// A search suffix under a listed top-level domain (`corp.example.org`) is learned from clients asking
    /// for names with and without it, or configured; either way the tunnel is judged as evil.com, not as
    /// example.org.
    func testSearchSuffixLearnedFromTrafficOrConfigured() throws {
        for configured in [false, true] {
            var rules = try Self.shippedRules()
            if configured {
                rules.searchSuffixes = ["corp.example.org"]
                rules.learnSearchSuffixes = false
            }
            var d = FactDriver(rules: rules)
            if !configured {
                // A Kubernetes-style stub (suffixed first, NXDOMAIN, then as is) and a glibc-style one.
                d.query("www.wikipedia.org.corp.example.org", type: 1)
                d.answer("www.wikipedia.org.corp.example.org", type: 1, rcode: 3)
                d.query("www.wikipedia.org", type: 1)
                d.query("mail.google.com", type: 1)
                d.answer("mail.google.com", type: 1, rcode: 3)
                d.query("mail.google.com.corp.example.org", type: 1)
                XCTAssertEqual(d.detector.counters.searchSuffixesLearned, 1)
            }
            for i in 0..<30 {
                d.query("\(encodedLabel(i, length: 30)).\(encodedLabel(i + 100, length: 20)).evil.com.corp.example.org")
                // Another client: a learned suffix is its learner's (search lists are per host).
                d.query("\(encodedLabel(i, length: 30)).\(encodedLabel(i + 100, length: 20)).evil.com.corp.example.org", client: "10.0.0.6")
            }
            XCTAssertEqual(Set(alerts(d, client: "10.0.0.6").compactMap { details($0)["domain"] as? String }), [configured ? "evil.com" : "example.org"])
            let a = alerts(d, client: "10.0.0.5").map(details)
            XCTAssertFalse(a.isEmpty, "configured \(configured)")
            XCTAssertEqual(Set(a.compactMap { $0["domain"] as? String }), ["evil.com"], "configured \(configured)")
            XCTAssertEqual(a.first?["search_suffix"] as? String, "corp.example.org")
        }
    }

    /// Stripping must not become the evasion: a client that teaches the sensor `evil.com` as a "search
    /// suffix" and then sends `<data>.com.evil.com`, or a direct-mode tunnel under a made-up `x.lan` tail,
    /// scatters its names over one-query "registered domains" (`<data>.com`); the names still count where
    /// they stood before stripping, and are caught there.
    func testStrippingCannotScatterATunnel() throws {
        var d = FactDriver(rules: try Self.shippedRules())
        for name in ["www.google.com", "mail.yahoo.com"] {
            d.query(name, type: 1)
            d.query(name + ".evil.com", type: 1)
        }
        XCTAssertEqual(d.detector.counters.searchSuffixesLearned, 1)
        for i in 0..<30 {
            d.query("\(encodedLabel(i, length: 30)).\(encodedLabel(i + 100, length: 20)).com.evil.com")
            d.query("\(hexLabel(i, length: 50)).com.x.lan", client: "10.0.0.6", server: "203.0.113.9")
        }
        XCTAssertGreaterThan(d.detector.counters.searchSuffixStripped, 50)
        XCTAssertEqual(Set(alerts(d, client: "10.0.0.5").compactMap { details($0)["domain"] as? String }), ["evil.com"])
        XCTAssertEqual(Set(alerts(d, client: "10.0.0.6").compactMap { details($0)["rule"] as? String }), ["server_channel"])
    }

    /// A tunnel whose queries are short and plain (`r12.c.evil.com`) and whose data comes back in TXT
    /// answers: caught on the answers' payload. A mail server fetching the same DKIM key and SPF records
    /// again and again is not (its answers repeat).
    func testPayloadInTXTAnswersIsScoredAndRepeatedAnswersAreNot() throws {
        var d = FactDriver(rules: try Self.shippedRules())
        for i in 0..<40 {
            let name = "r\(i).c.evil.com"
            d.query(name, type: 16, advance: 1_000_000_000)
            d.answer(name, type: 16, payload: base64Blob(i, count: 135))
            let spf = ["_spf.google.com", "_netblocks.google.com", "_netblocks2.google.com", "_netblocks3.google.com", "_dmarc.google.com"][i % 5]
            d.query(spf, type: 16, client: "10.0.0.25")
            d.answer(spf, type: 16, client: "10.0.0.25", payload: "v=spf1 ip4:35.190.247.0/24 ip4:64.233.160.0/19 ip4:66.102.0.0/20 ip4:66.249.80.0/20 ip4:72.14.192.0/18 ~all \(i % 5)")
            d.query("20230601._domainkey.gmail.com", type: 16, client: "10.0.0.25")
            d.answer("20230601._domainkey.gmail.com", type: 16, client: "10.0.0.25", payload: "v=DKIM1; k=rsa; p=" + base64Blob(7, count: 270))
        }
        XCTAssertTrue(alerts(d, client: "10.0.0.25").isEmpty, "\(alerts(d, client: "10.0.0.25").map(details))")
        let a = alerts(d, client: "10.0.0.5").map(details)
        XCTAssertFalse(a.isEmpty, "TXT-answer tunnel not caught")
        XCTAssertEqual(a.first?["domain"] as? String, "evil.com")
        XCTAssertGreaterThan(a.first?["mean_answer_payload"] as? Double ?? 0, 150)
        XCTAssertGreaterThan(a.first?["unique_answer_payloads"] as? Int ?? 0, 3)
    }

    /// Long descriptive host names of cloud services (load balancers, app services) read as words; a
    /// client resolves a few of them again and again. CDN names with short generated labels too.
    func testLongDescriptiveCloudNamesAndCDNNamesDoNotAlert() throws {
        var d = FactDriver(rules: try Self.shippedRules())
        let cloud = [
            "k8s-ingressnginx-publicfacing-loadbalancer-7f3c9a2b1d.eu-west-1.cloudprovider.com",
            "contoso-production-westeurope-analytics-dashboard-frontend.cloudprovider.com",
            "customer-insights-reporting-backend-northeurope-staging.cloudprovider.com",
            "wordpress-marketing-website-blue-green-deployment-slot.cloudprovider.com",
            "quickbrownfox-jumps-over-lazydog-with-vim-and-emacs.internal-apps.cloudprovider.com",
        ]
        let cdn = ["scontent-fra5-1.xx.fbcdn.net", "scontent-fra3-2.xx.fbcdn.net", "video-fra3-1.xx.fbcdn.net", "static.xx.fbcdn.net",
                   "external-fra5-1.xx.fbcdn.net", "lookaside.fbsbx.com", "r4---sn-4g5e6nzz.c.youtube-nocookie.com"]
        for round in 0..<30 {
            for n in cloud { d.query(n, type: round % 2 == 0 ? 1 : 28, advance: 500_000_000) }
            for n in cdn { d.query(n, type: 1) }
        }
        XCTAssertTrue(d.sink.alerts.isEmpty, "\(d.sink.alerts.map(details))")
    }

    func testWordShareSeparatesDescriptiveNamesFromEncodings() {
        func share(_ s: String) -> Double {
            let (w, a) = Array(s.utf8).withUnsafeBytes { DNSNameShape.wordCharacters($0) }
            return a == 0 ? 0 : Double(w) / Double(a)
        }
        XCTAssertEqual(share("contoso-production-westeurope-analytics-dashboard-frontend"), 1)
        XCTAssertGreaterThan(share("k8s-ingressnginx-publicfacing-loadbalancer-7f3c9a2b1d.eu-west-1"), 0.65)
        XCTAssertEqual(share(hexLabel(3, length: 62)), 0, accuracy: 0.2)
        var mean = 0.0
        for i in 0..<200 { mean += share(encodedLabel(i, length: 60)) }
        XCTAssertLessThan(mean / 200, 0.4, "base32")
    }
}
