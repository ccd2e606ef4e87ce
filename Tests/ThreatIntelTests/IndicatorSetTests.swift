import ConfigKit
import Events
import Foundation
import Logging
import PacketCore
import TestSupport
import XCTest
@testable import ThreatIntel

final class IndicatorSetTests: XCTestCase {
    let now = Timestamp(seconds: 1_700_000_000)

    func ind(_ t: IndicatorType, _ v: String, confidence: Int? = nil, expires: Timestamp? = nil) -> Indicator {
        Indicator(type: t, value: try! Indicator.normalise(v, as: t).get(), source: "test", confidence: confidence, expires: expires)
    }

    /// The trie against a brute-force longest-prefix search over random prefixes and addresses.
    func testPrefixTrieAgreesWithBruteForce() {
        var rng = SystemRandomNumberGenerator()
        for v6 in [false, true] {
            var trie = PrefixTrie()
            var nets: [IPNetwork] = []
            for i in 0..<1000 {
                // Few distinct top bits, so prefixes nest and share paths.
                let a = v6 ? IPAddress(high: (UInt64.random(in: 0..<8, using: &rng) << 61) | UInt64.random(in: 0...UInt64.max, using: &rng) >> 8, low: UInt64.random(in: 0...UInt64.max, using: &rng), isIPv6: true)
                           : IPAddress(ipv4: (UInt32.random(in: 0..<8, using: &rng) << 29) | UInt32.random(in: 0...UInt32.max, using: &rng) >> 8)
                let len = Int.random(in: 0...(v6 ? 128 : 32), using: &rng)
                let n = IPNetwork(address: a, prefixLength: len)
                if !nets.contains(n) { nets.append(n) }
                trie.insert(n, value: Int32(nets.firstIndex(of: n)!)) { old, _ in old }
                _ = i
            }
            XCTAssertEqual(trie.count, nets.count)
            for _ in 0..<2000 {
                let a = v6 ? IPAddress(high: (UInt64.random(in: 0..<8, using: &rng) << 61) | UInt64.random(in: 0...UInt64.max, using: &rng) >> 8, low: UInt64.random(in: 0...UInt64.max, using: &rng), isIPv6: true)
                           : IPAddress(ipv4: (UInt32.random(in: 0..<8, using: &rng) << 29) | UInt32.random(in: 0...UInt32.max, using: &rng) >> 8)
                let expected = nets.enumerated().filter { $0.element.contains(a) }.max { $0.element.prefixLength < $1.element.prefixLength }.map { Int32($0.offset) }
                XCTAssertEqual(trie.longestMatch(a), expected, "\(a)")
            }
            // A network's own address and the address right past its end.
            for (i, n) in nets.prefix(200).enumerated() where n.prefixLength > 0 {
                XCTAssertNotNil(trie.longestMatch(n.address), "\(n) index \(i)")
            }
        }
    }

    func testAddressesNetworksAndFamilies() {
        let s = IndicatorSet([ind(.cidr, "192.0.2.0/24"), ind(.ip, "192.0.2.7"), ind(.cidr, "2001:db8::/32"), ind(.ip, "::ffff:c000:207")])
        XCTAssertEqual(s.match(address: IPAddress("192.0.2.7")!, at: now), 1, "an exact address wins over its network")
        XCTAssertEqual(s.match(address: IPAddress("192.0.2.200")!, at: now), 0)
        XCTAssertNil(s.match(address: IPAddress("192.0.3.1")!, at: now))
        XCTAssertEqual(s.match(address: IPAddress("2001:db8:1::5")!, at: now), 2)
        XCTAssertNil(s.match(address: IPAddress("2001:db9::1")!, at: now))
        // IPv4 and IPv6 tries are separate: 192.0.2.0/24 says nothing about ::c000:200.
        XCTAssertNil(s.match(address: IPAddress("::c000:201")!, at: now))
        // Networks wider and narrower than the /24 pre-filter's granularity.
        let w = IndicatorSet([ind(.cidr, "10.0.0.0/8"), ind(.cidr, "198.51.100.64/28"), ind(.ip, "203.0.113.255")])
        XCTAssertEqual(w.match(address: IPAddress("10.200.3.4")!, at: now), 0)
        XCTAssertEqual(w.match(address: IPAddress("198.51.100.70")!, at: now), 1)
        XCTAssertNil(w.match(address: IPAddress("198.51.100.80")!, at: now), "same /24, outside the /28")
        XCTAssertNil(w.match(address: IPAddress("11.0.0.1")!, at: now))
        XCTAssertEqual(w.match(address: IPAddress("203.0.113.255")!, at: now), 2)
        XCTAssertNil(w.match(address: IPAddress("203.0.113.254")!, at: now))
        XCTAssertNotNil(IndicatorSet([ind(.cidr, "0.0.0.0/0")]).match(address: IPAddress("8.8.8.8")!, at: now))
    }

    func testDomainsMatchSubdomainsNotLookalikes() {
        let s = IndicatorSet([ind(.domain, "evil.example"), ind(.domain, "deep.good.example")])
        XCTAssertEqual(s.match(domain: "evil.example", at: now), 0)
        XCTAssertEqual(s.match(domain: "A.B.Evil.Example.", at: now), 0)
        XCTAssertNil(s.match(domain: "notevil.example", at: now))
        XCTAssertNil(s.match(domain: "evil.example.com", at: now))
        XCTAssertNil(s.match(domain: "good.example", at: now))
        XCTAssertEqual(s.match(domain: "x.deep.good.example", at: now), 1)
    }

    func testExactTablesAndNormalisation() {
        let s = IndicatorSet([ind(.url, "https://Bad.Example/gate.php?id=1"), ind(.sni, "c2.example.net"), ind(.ja3, "e7d705a3286e19ea42f587b344ee6865"),
                              ind(.sha256, "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855")])
        XCTAssertEqual(s.match(.url, "http://bad.example:80/gate.php?id=1", at: now), 0)
        XCTAssertNil(s.match(.url, "http://bad.example/gate.php?id=2", at: now))
        XCTAssertEqual(s.match(.sni, "C2.example.net", at: now), 1)
        XCTAssertNil(s.match(.sni, "x.c2.example.net", at: now), "an SNI indicator is exact; use a domain indicator for subdomains")
        XCTAssertEqual(s.match(.ja3, "E7D705A3286E19EA42F587B344EE6865", at: now), 2)
        XCTAssertEqual(s.match(.sha256, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", at: now), 3)
    }

    func testExpiredIndicatorsDoNotMatch() {
        let s = IndicatorSet([ind(.ip, "192.0.2.9", expires: Timestamp(seconds: 1_600_000_000)), ind(.domain, "old.example", expires: Timestamp(seconds: 1_600_000_000)),
                              ind(.cidr, "198.51.100.0/24", expires: Timestamp(seconds: 1_600_000_000))])
        XCTAssertNil(s.match(address: IPAddress("192.0.2.9")!, at: now))
        XCTAssertNil(s.match(domain: "old.example", at: now))
        XCTAssertNil(s.match(address: IPAddress("198.51.100.1")!, at: now))
        // Before expiry (a retro-hunt over traffic from back then) they do.
        let then = Timestamp(seconds: 1_500_000_000)
        XCTAssertNotNil(s.match(address: IPAddress("192.0.2.9")!, at: then))
        XCTAssertNotNil(s.match(domain: "old.example", at: then))
        XCTAssertNotNil(s.match(address: IPAddress("198.51.100.1")!, at: then))
    }

    func testDuplicatesKeepTheMostConfidentEntry() {
        let s = IndicatorSet([ind(.ip, "192.0.2.1", confidence: 20), ind(.ip, "192.0.2.1", confidence: 90), ind(.ip, "192.0.2.1", confidence: 40)])
        XCTAssertEqual(s.match(address: IPAddress("192.0.2.1")!, at: now), 1)
        XCTAssertEqual(s.distinctCount, 1)
    }

    /// 1M generated indicators: load time (file parse + index build) and lookup cost.
    func testOneMillionIndicatorsLoadInSeconds() throws {
        let dir = try TestSupport.temporaryDirectory("intel-load")
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("big.txt").path
        try Self.writeGeneratedList(path, count: 1_000_000)
        // CPU time of this thread, not wall time: the build machine is shared, and what is measured is
        // the work of loading, not how long the scheduler kept the thread waiting.
        let start = ContinuousClock.now, cpu0 = Self.threadCPUSeconds()
        let set = try IndicatorFeed.loadAll([path])
        let cpu = Self.threadCPUSeconds() - cpu0
        print("loaded \(set.count) indicators in \(cpu) s CPU, \(ContinuousClock.now - start) wall")
        XCTAssertEqual(set.count, 1_000_000)
        XCTAssertLessThan(cpu, 20, "1M indicators must load in seconds (debug build bound)")
        // Lookups: every generated address is found; addresses outside the generated space are not.
        XCTAssertNotNil(set.match(address: IPAddress(ipv4: 0x0A00_0000 &+ 12345), at: now))
        XCTAssertNotNil(set.match(domain: "www.host77.bench.example", at: now))
        XCTAssertNil(set.match(address: IPAddress("192.0.2.1")!, at: now))
        let probes = (0..<100_000).map { IPAddress(ipv4: 0xC000_0000 &+ UInt32($0)) }
        let t0 = ContinuousClock.now
        var hits = 0
        for a in probes where set.match(address: a, at: now) != nil { hits += 1 }
        let per = (ContinuousClock.now - t0) / probes.count
        print("address lookup: \(per) each (debug build)")
        XCTAssertEqual(hits, 0)
        XCTAssertLessThan(per, .microseconds(50))
    }

    static func threadCPUSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// 700k IPv4 addresses in 10.0.0.0/8, 100k /24 networks in 100.64.0.0/10 and beyond, 150k domains,
    /// 50k SHA-256 values: the shape of a large commercial feed.
    static func writeGeneratedList(_ path: String, count: Int) throws {
        var out = "# generated\n"
        out.reserveCapacity(count * 24)
        let ips = count * 7 / 10, nets = count / 10, domains = count * 15 / 100
        for i in 0..<ips { out += IPAddress(ipv4: 0x0A00_0000 &+ UInt32(i)).description; out += "\n" }
        for i in 0..<nets { out += IPAddress(ipv4: 0x6440_0000 &+ (UInt32(i) << 8)).description; out += "/24\n" }
        for i in 0..<domains { out += "host\(i).bench.example\n" }
        for i in 0..<(count - ips - nets - domains) {
            var h = UInt64(i) &* 0x9E37_79B9_7F4A_7C15
            var hex = ""
            for _ in 0..<4 { h = h &* 6364136223846793005 &+ 1442695040888963407; hex += String(h, radix: 16).leftPad(16) }
            out += hex; out += "\n"
        }
        try out.write(toFile: path, atomically: false, encoding: .utf8)
    }
}

extension String {
    func leftPad(_ n: Int) -> String { count >= n ? self : String(repeating: "0", count: n - count) + self }
}

final class IndicatorFeedTests: XCTestCase {
    func testMalformedReloadKeepsThePreviousSet() throws {
        let dir = try TestSupport.temporaryDirectory("intel-feed")
        defer { try? FileManager.default.removeItem(at: dir) }
        let csv = dir.appendingPathComponent("feed.csv").path
        try "type,value\nip,192.0.2.1\n".write(toFile: csv, atomically: true, encoding: .utf8)
        let feed = try IndicatorFeed(paths: [dir.path], logger: Logger(label: "test"))
        XCTAssertEqual(feed.current.count, 1)
        XCTAssertFalse(feed.filesChanged())

        try "type,value\nip,192.0.2.1\nip,192.0.2.2\nip,192.0.2.x\n".write(toFile: csv, atomically: true, encoding: .utf8)
        XCTAssertTrue(feed.filesChanged())
        let issues = feed.reload()
        XCTAssertEqual(issues.map(\.line), [4])
        XCTAssertEqual(issues.first?.file, csv)
        XCTAssertEqual(feed.current.count, 1, "a broken file leaves the previous set in place")
        XCTAssertEqual(feed.generation.load(ordering: .acquiring), 0)
        XCTAssertFalse(feed.filesChanged(), "the broken version is reported once, not on every check")

        // A malformed STIX file added beside it is reported by line too, and changes nothing.
        let stix = dir.appendingPathComponent("bundle.json").path
        try "{\"type\": \"bundle\", \"objects\": [\n{\"type\": \"indicator\", \"pattern\": \"[ipv4-addr:value = ]\"}\n]}".write(toFile: stix, atomically: true, encoding: .utf8)
        XCTAssertEqual(feed.reload().map(\.line), [2, 4])
        XCTAssertEqual(feed.current.count, 1)
        try FileManager.default.removeItem(atPath: stix)

        try "type,value\nip,192.0.2.1\nip,192.0.2.2\n".write(toFile: csv, atomically: true, encoding: .utf8)
        XCTAssertEqual(feed.reload(), [])
        XCTAssertEqual(feed.current.count, 2)
        XCTAssertEqual(feed.generation.load(ordering: .acquiring), 1)
    }

    func testWatcherReloadsOnChangeAndSIGHUP() throws {
        let dir = try TestSupport.temporaryDirectory("intel-watch")
        defer { try? FileManager.default.removeItem(at: dir) }
        let list = dir.appendingPathComponent("list.txt").path
        try "192.0.2.1\n".write(toFile: list, atomically: true, encoding: .utf8)
        let feed = try IndicatorFeed(paths: [list], logger: Logger(label: "test"))
        feed.startWatching(interval: 0.2)
        defer { feed.stop() }
        try "192.0.2.1\n192.0.2.2\n".write(toFile: list, atomically: true, encoding: .utf8)
        try waitFor { feed.current.count == 2 }
        // SIGHUP reloads even without a change (e.g. after an in-place edit keeping mtime).
        let g = feed.generation.load(ordering: .acquiring)
        kill(getpid(), SIGHUP)
        try waitFor { feed.generation.load(ordering: .acquiring) > g }
    }

    func waitFor(_ condition: () -> Bool, file: StaticString = #filePath, line: UInt = #line) throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while !condition() {
            if ContinuousClock.now > deadline { XCTFail("timed out", file: file, line: line); return }
            Thread.sleep(forTimeInterval: 0.05)
        }
    }
}
