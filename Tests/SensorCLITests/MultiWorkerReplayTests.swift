import Foundation
import TestSupport
import XCTest

/// `sensor replay --workers N` (one reader, N worker pipelines, the host stage merged as live) gives
/// the events of a one-worker replay: the same multiset of lines, `spanwatch.stats` aside (one per worker).
final class MultiWorkerReplayTests: XCTestCase {
    struct Run {
        var events: [String]
        var stats: [[String: Any]]
    }

    func replay(_ files: [String], workers: Int) throws -> Run {
        let r = try TestSupport.sensor(["replay"] + files + ["--workers", "\(workers)", "--log-level", "error"])
        guard r.status == 0 else { throw NSError(domain: "replay", code: Int(r.status), userInfo: [NSLocalizedDescriptionKey: r.stderr]) }
        var events: [String] = []
        var stats: [[String: Any]] = []
        for line in r.lines {
            if line.contains("\"dataset\":\"spanwatch.stats\"") {
                let o = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
                stats.append((o?["spanwatch"] as? [String: Any])?["stats"] as? [String: Any] ?? [:])
            } else {
                events.append(line)
            }
        }
        return Run(events: events.sorted(), stats: stats)
    }

    /// What differs between a one-worker replay of `files` and replays with `workers` workers.
    func differences(_ files: [String], name: String, workers: [Int]) -> [String] {
        do {
            let one = try replay(files, workers: 1)
            var out: [String] = []
            for n in workers {
                let many = try replay(files, workers: n)
                if many.stats.count != n { out.append("\(name), \(n) workers: \(many.stats.count) spanwatch.stats lines") }
                let packets = many.stats.reduce(0) { $0 + (($1["packets"] as? Int) ?? 0) }
                if packets != one.stats.first?["packets"] as? Int { out.append("\(name), \(n) workers: \(packets) packets processed") }
                if many.events != one.events {
                    let a = Set(one.events), b = Set(many.events)
                    out.append("\(name), \(n) workers: \(many.events.count) events vs \(one.events.count); only with \(n): \(b.subtracting(a).sorted().prefix(2)); only with 1: \(a.subtracting(b).sorted().prefix(2))")
                }
            }
            return out
        } catch {
            return ["\(name): \(error)"]
        }
    }

    func testWorkersGiveTheOneWorkerEventsOnEveryCapture() throws {
        var all: [String] = []
        for dir in ["beacon", "benign", "c2-nonstd-port", "dns-tunnel", "lateral", "large"] { all += TestSupport.captures(dir) }
        XCTAssertGreaterThan(all.count, 40)
        // Merged in time order: captures years apart, so flows expire and detector windows close between them.
        // Two workers on each capture; three and four too on the largest and on the merged set. Every field
        // counts, the non-standard-port rule's port popularity included (it is read as of the last tick, so
        // the order in which sessions ending in the same second reach the stage does not matter).
        var jobs = all.map { ([$0], ($0 as NSString).lastPathComponent, $0.contains("/large/") ? [2, 3, 4] : [2]) }
        jobs.append((all, "\(all.count) captures merged", [2, 3, 4]))
        var found: [String] = []
        let lock = NSLock()
        // Two replays at a time: most of each is process start-up.
        DispatchQueue.concurrentPerform(iterations: 2) { lane in
            for (i, job) in jobs.enumerated() where i % 2 == lane {
                let d = differences(job.0, name: job.1, workers: job.2)
                lock.withLock { found += d }
            }
        }
        XCTAssertEqual(found, [], found.joined(separator: "\n"))
    }

    /// `hunt --workers 2`: the matches of a one-worker hunt (IP indicators: a host and the indicator are
    /// one address pair, so on one worker), and one summary over both workers' matchers.
    func testHuntWithTwoWorkersFindsWhatOneFinds() throws {
        let dir = try TestSupport.temporaryDirectory("multiworker-hunt")
        defer { try? FileManager.default.removeItem(at: dir) }
        let list = dir.appendingPathComponent("ips.txt").path
        try "192.168.1.195\n192.168.1.161\n".write(toFile: list, atomically: true, encoding: .utf8)
        func hunt(_ workers: Int) throws -> (alerts: [String], summary: [String]) {
            let r = try TestSupport.sensor(["hunt", "--quiet", "--workers", "\(workers)", "--indicators", list, TestSupport.data("pcaps/lateral")])
            XCTAssertEqual(r.status, 0, r.stderr)
            let summary = r.stderr.split(separator: "\n").map(String.init).filter { $0.hasPrefix("hunt: ") && !$0.contains(" in ") }
            return (r.lines.sorted(), summary)
        }
        let one = try hunt(1), two = try hunt(2)
        XCTAssertGreaterThan(one.alerts.count, 5)
        XCTAssertEqual(two.alerts, one.alerts)
        XCTAssertEqual(two.summary, one.summary)
    }

    /// UDP exchanges whose replies come as IP fragments — the first fragment carries the ports, later
    /// ones do not; some later fragments arrive before their first one; two flows between the same hosts
    /// reuse one IP ID — interleaved with each other. A worker choice by ports would separate later
    /// fragments from their datagram, and one by (addresses, protocol, IP ID) would take first fragments
    /// away from their flow (splitting it in two flow events): both differ from one worker. Each
    /// exchange is three packets on one worker, so a worker's packets are three times its later
    /// fragments; `--flow-shard` processes split them alike.
    func testFragmentsStayWithTheirFlow() throws {
        let dir = try TestSupport.temporaryDirectory("multiworker-fragments")
        defer { try? FileManager.default.removeItem(at: dir) }
        var w = PcapngFileWriter()
        w.interface()
        var t: UInt64 = 1_700_000_000_000_000
        var laterFragments = 0
        func ipv4(_ src: UInt32, _ dst: UInt32, id: UInt16, moreFragments: Bool, offset8: UInt16, _ payload: [UInt8]) -> [UInt8] {
            var f: [UInt8] = [0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 6, 0x08, 0x00]
            let total = UInt16(20 + payload.count)
            let flags: UInt16 = (moreFragments ? 0x2000 : 0) | offset8
            f += [0x45, 0, UInt8(total >> 8), UInt8(total & 0xFF), UInt8(id >> 8), UInt8(id & 0xFF), UInt8(flags >> 8), UInt8(flags & 0xFF), 64, 17, 0, 0]
            for a in [src, dst] { f += [UInt8(a >> 24), UInt8(a >> 16 & 0xFF), UInt8(a >> 8 & 0xFF), UInt8(a & 0xFF)] }
            return f + payload
        }
        func udp(_ sport: UInt16, _ dport: UInt16, length: Int, _ data: [UInt8]) -> [UInt8] {
            [UInt8(sport >> 8), UInt8(sport & 0xFF), UInt8(dport >> 8), UInt8(dport & 0xFF), UInt8(length >> 8), UInt8(length & 0xFF), 0, 0] + data
        }
        func emit(_ frame: [UInt8]) {
            t += 1_000
            w.packet(interface: 0, timestamp: t, frame)
        }
        let server: UInt32 = 0xC000_0205
        for k in 0..<48 {
            let client = 0x0A00_0000 | UInt32(k % 12 + 1)
            let port = UInt16(40000 + k)
            let id = UInt16(7000 + k / 2)  // two flows per IP ID
            let body = [UInt8](repeating: UInt8(k), count: 1400)
            emit(ipv4(client, server, id: UInt16(k), moreFragments: false, offset8: 0, udp(port, 9999, length: 20, [UInt8](repeating: 1, count: 12))))
            let first = ipv4(server, client, id: id, moreFragments: true, offset8: 0, udp(9999, port, length: 8 + body.count, Array(body[0..<792])))
            let later = ipv4(server, client, id: id, moreFragments: false, offset8: 100, Array(body[792...]))
            laterFragments += 1
            if k % 3 == 0 { emit(later); emit(first) } else { emit(first); emit(later) }
        }
        let path = dir.appendingPathComponent("fragments.pcapng").path
        try w.write(to: path)
        let one = try replay([path], workers: 1)
        XCTAssertEqual(one.events.filter { $0.contains("\"dataset\":\"spanwatch.flow\"") }.count, 48, "one flow per exchange")
        XCTAssertEqual(one.stats.first.flatMap { ($0["decode"] as? [String: Any])?["later_fragment"] as? Int }, laterFragments)
        for n in [2, 3] {
            let many = try replay([path], workers: n)
            XCTAssertEqual(many.events, one.events, "\(n) workers")
            let later = many.stats.reduce(0) { $0 + ((($1["decode"] as? [String: Any])?["later_fragment"] as? Int) ?? 0) }
            XCTAssertEqual(later, laterFragments, "\(n) workers: every later fragment reached a worker")
            XCTAssertGreaterThan(many.stats.filter { (($0["packets"] as? Int) ?? 0) > 0 }.count, 1, "\(n) workers: the flows spread over workers")
            for s in many.stats {
                let packets = s["packets"] as? Int ?? -1, later = (s["decode"] as? [String: Any])?["later_fragment"] as? Int ?? -1
                XCTAssertEqual(packets, 3 * later, "\(n) workers: worker \(s["worker"] ?? "?") has its flows' later fragments")
            }
            XCTAssertEqual(many.stats.compactMap { $0["fanout"] as? [String: Any] }.count, 1, "the reader's counters, once")
        }
        var flows: [String] = []
        for i in 0..<2 {
            let r = try TestSupport.sensor(["replay", path, "--flow-shard", "\(i)/2", "--log-level", "error"])
            XCTAssertEqual(r.status, 0, r.stderr)
            flows += r.lines.filter { $0.contains("\"dataset\":\"spanwatch.flow\"") }
            let stats = try XCTUnwrap(r.lines.first { $0.contains("\"dataset\":\"spanwatch.stats\"") })
            let o = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(stats.utf8)) as? [String: Any])
            let s = try XCTUnwrap((o["spanwatch"] as? [String: Any])?["stats"] as? [String: Any])
            let packets = s["packets"] as? Int ?? -1, later = (s["decode"] as? [String: Any])?["later_fragment"] as? Int ?? -1
            XCTAssertEqual(packets, 3 * later, "shard \(i)/2 has its flows' later fragments")
            XCTAssertGreaterThan(later, 0, "shard \(i)/2")
        }
        XCTAssertEqual(flows.sorted(), one.events.filter { $0.contains("\"dataset\":\"spanwatch.flow\"") })
    }

    /// One packet dated 2109, then DNS queries in long runs per client: every later host
    /// fact carries that far time. While one client's run goes to worker 1, worker 0 gets nothing (the
    /// clock stands still, so not even clock records), and a merge ordering facts by packet time (equal
    /// times by worker) waited for worker 0's watermark to pass the far time: worker 1's fact ring filled,
    /// the reader stopped on worker 1's packet ring, and the replay hung. Offline the merge follows the
    /// input order, so this finishes with one worker's events (a kill after 120 s turns a hang into a failure).
    func testAPacketDatedFarAheadDoesNotStopSeveralWorkers() throws {
        let dir = try TestSupport.temporaryDirectory("multiworker-far-ahead")
        defer { try? FileManager.default.removeItem(at: dir) }
        var w = PcapngFileWriter()
        w.interface()
        func query(client: UInt8, id: UInt16, _ name: String) -> [UInt8] {
            var dns: [UInt8] = [UInt8(id >> 8), UInt8(id & 0xFF), 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]
            for l in name.split(separator: ".") { let b = Array(l.utf8); dns.append(UInt8(b.count)); dns += b }
            dns += [0, 0, 1, 0, 1]
            let udpLength = 8 + dns.count, ipLength = 20 + udpLength
            var f: [UInt8] = [0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 1, 0x08, 0x00]
            f += [0x45, 0, UInt8(ipLength >> 8), UInt8(ipLength & 0xFF), 0, 1, 0, 0, 64, 17, 0, 0, 10, 1, 0, client, 10, 1, 1, 53]
            f += [UInt8(40000 >> 8), UInt8(40000 & 0xFF), 0, 53, UInt8(udpLength >> 8), UInt8(udpLength & 0xFF), 0, 0]
            return f + dns
        }
        var t: UInt64 = 1_700_000_000_000_000
        w.packet(interface: 0, timestamp: 4_400_000_000_000_000, query(client: 200, id: 0, "far.example.com"))
        // Eight clients one after the other: with two workers some run lands on worker 1 (by address pair).
        for client in UInt8(1)...8 {
            for i in 0..<6000 {
                t += 1_000
                w.packet(interface: 0, timestamp: t, query(client: client, id: UInt16(i), "h\(i)x\(client).tunnel-test.example.com"))
            }
        }
        let path = dir.appendingPathComponent("far-ahead.pcapng").path
        try w.write(to: path)
        let config = dir.appendingPathComponent("ring.yaml")
        try "capture:\n  host_ring_kb: 64\n".write(to: config, atomically: true, encoding: .utf8)
        func run(_ workers: Int) throws -> [String] {
            let r = try TestSupport.run("timeout", ["-s", "KILL", "120", TestSupport.sensorBinary, "replay", path, "--config", config.path,
                                                    "--workers", "\(workers)", "--log-level", "error"])
            XCTAssertEqual(r.status, 0, "\(workers) workers: \(r.stderr)")
            return r.lines.filter { !$0.contains("\"dataset\":\"spanwatch.stats\"") }.sorted()
        }
        let one = try run(1)
        XCTAssertGreaterThan(one.count, 8, "flow events of the eight clients")
        XCTAssertEqual(try run(2), one)
    }
}
