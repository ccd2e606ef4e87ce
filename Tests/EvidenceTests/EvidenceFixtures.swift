import Crypto
import Capture
import Events
import Foundation
import PacketCore
import TestSupport
import XCTest
@testable import Evidence

/// Keeps every event a pipeline writes (as parsed JSON).
final class CollectingSink: EventSink, @unchecked Sendable {
    let name = "collect"
    var events: [[String: Any]] = []
    func write(_ json: UnsafeRawBufferPointer, metadata: EventMetadata) {
        if let o = try? JSONSerialization.jsonObject(with: Data(json)) as? [String: Any] { events.append(o) }
    }
    func flush() throws {}
    func close() throws {}
    var statistics: SinkStatistics { SinkStatistics() }
    func dataset(_ d: String) -> [[String: Any]] { events.filter { TestSupport.value($0, "event.dataset") as? String == d } }
}

/// An age identity made with the real `age-keygen`.
struct AgeKey {
    let identityPath: String
    let recipient: String

    static func generate(in dir: URL) throws -> AgeKey {
        let path = dir.appendingPathComponent("identity.txt").path
        let gen = try TestSupport.run("age-keygen", ["-o", path])
        XCTAssertEqual(gen.status, 0, gen.stderr)
        let pub = try TestSupport.run("age-keygen", ["-y", path])
        XCTAssertEqual(pub.status, 0, pub.stderr)
        return AgeKey(identityPath: path, recipient: pub.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// Decrypts with the real `age -d` into `output`.
    func decrypt(_ file: String, to output: String) throws {
        let r = try TestSupport.run("age", ["-d", "-i", identityPath, "-o", output, file])
        XCTAssertEqual(r.status, 0, "age -d failed for \(file): \(r.stderr)")
    }
}

/// One packet as a capture file holds it, for comparing files packet by packet.
struct StoredPacket: Equatable, CustomStringConvertible {
    var timestamp: Int64
    var wireLength: Int
    var bytes: [UInt8]
    var description: String { "\(Timestamp(nanoseconds: timestamp)) len \(wireLength)/\(bytes.count)" }

    static func read(_ path: String, filter: String? = nil) throws -> [StoredPacket] {
        let r = try PcapFileReader(path: path, filter: filter)
        var out: [StoredPacket] = []
        while let p = try r.next() {
            out.append(StoredPacket(timestamp: p.timestamp.nanoseconds, wireLength: p.wireLength, bytes: Array(p.bytes)))
        }
        return out
    }
}

enum EvidenceChecks {
    static let tools = ["age", "age-keygen", "tshark", "capinfos", "tcpdump"]

    static func requireTools() throws {
        for t in tools where !TestSupport.hasTool(t) {
            throw XCTSkip("\(t) is not installed (scripts/install-deps.sh test installs it)")
        }
    }

    /// Custody entries (parsed) of a log.
    static func custodyEntries(_ log: String) throws -> [[String: Any]] {
        let text = try String(contentsOfFile: log, encoding: .utf8)
        return try text.split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
    }

    /// No file under `dirs` (recursively) starts like a pcap or pcapng: plaintext evidence never touched disk.
    static func assertNoPlaintextCapture(in dirs: [URL], file: StaticString = #filePath, line: UInt = #line) {
        let magics: [[UInt8]] = [[0x0a, 0x0d, 0x0d, 0x0a], [0xd4, 0xc3, 0xb2, 0xa1], [0xa1, 0xb2, 0xc3, 0xd4], [0x4d, 0x3c, 0xb2, 0xa1], [0xa1, 0xb2, 0x3c, 0x4d]]
        for d in dirs {
            guard let e = FileManager.default.enumerator(atPath: d.path) else { continue }
            while let f = e.nextObject() as? String {
                let path = d.appendingPathComponent(f).path
                guard let h = FileHandle(forReadingAtPath: path) else { continue }
                let head = [UInt8](h.readData(ofLength: 4))
                try? h.close()
                XCTAssertFalse(magics.contains(head), "plaintext capture on disk: \(path)", file: file, line: line)
            }
        }
    }

    /// The contents of this process's open part files in `dir`: they have no name (unlinked at creation),
    /// so they are found through /proc/self/fd.
    static func openParts(in dir: URL) -> [Data] {
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        var out: [Data] = []
        for fd in fds {
            guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(fd)"),
                  target.hasPrefix(dir.path + "/"), target.hasSuffix(".partial (deleted)") else { continue }
            if let d = FileManager.default.contents(atPath: "/proc/self/fd/\(fd)") { out.append(d) }
        }
        return out
    }

    /// No packet of `packets` (its first 48 bytes, or all of a shorter one) appears in any of `parts`.
    static func assertNoPlaintext(of packets: [StoredPacket], in parts: [Data], file: StaticString = #filePath, line: UInt = #line) {
        for part in parts {
            for p in packets where p.bytes.count >= 34 {
                XCTAssertNil(part.range(of: Data(p.bytes.prefix(48))), "plaintext packet in a part file: \(p)", file: file, line: line)
            }
        }
    }

    static func mode(_ path: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: path)[.posixPermissions]) as? NSNumber)?.intValue ?? -1
    }

    /// The full check of one evidence file against its source capture and its custody entry:
    /// real `age -d` decrypts it; `capinfos` and `tshark` read it and show the comments; its packets are
    /// exactly what `tcpdump -r SOURCE 'SCOPE'` selects between its first and last packet; both SHA-256
    /// in the custody entry match. Returns the decrypted packets.
    @discardableResult
    static func verify(entry: [String: Any], evidenceDir: URL, source: String, key: AgeKey, work: URL,
                       expectComments: [String], file: StaticString = #filePath, line: UInt = #line) throws -> [StoredPacket] {
        let name = try XCTUnwrap(entry["file"] as? String, file: file, line: line)
        let path = evidenceDir.appendingPathComponent(name).path
        XCTAssertEqual(mode(path), 0o600, "evidence file mode", file: file, line: line)
        let head = [UInt8](try XCTUnwrap(FileHandle(forReadingAtPath: path)).readData(ofLength: 22))
        XCTAssertEqual(String(decoding: head, as: UTF8.self), "age-encryption.org/v1\n", file: file, line: line)
        XCTAssertEqual(CustodyVerifier.sha256(ofFile: path), entry["sha256"] as? String, "file SHA-256 vs custody log", file: file, line: line)

        let plain = work.appendingPathComponent(name.replacingOccurrences(of: ".age", with: "")).path
        try key.decrypt(path, to: plain)
        XCTAssertEqual(CustodyVerifier.sha256(ofFile: plain), entry["plaintext_sha256"] as? String, "plaintext SHA-256 vs custody log", file: file, line: line)

        let cap = try TestSupport.run("capinfos", [plain])
        XCTAssertEqual(cap.status, 0, cap.stderr, file: file, line: line)
        XCTAssertTrue(cap.stdoutText.contains("pcapng"), cap.stdoutText, file: file, line: line)
        XCTAssertTrue(cap.stdoutText.contains("nanoseconds"), "if_tsresol declares ns: \(cap.stdoutText)", file: file, line: line)
        for c in expectComments {
            XCTAssertTrue(cap.stdoutText.contains(c), "capinfos shows comment '\(c)':\n\(cap.stdoutText)", file: file, line: line)
        }
        let scope = try XCTUnwrap((entry["scope"] as? [String: Any])?["bpf"] as? String, file: file, line: line)
        XCTAssertTrue(cap.stdoutText.contains("scope: \(scope)"), cap.stdoutText, file: file, line: line)

        let ts = try TestSupport.run("tshark", ["-r", plain, "-T", "fields", "-e", "frame.number"])
        XCTAssertEqual(ts.status, 0, ts.stderr, file: file, line: line)
        // tshark shows the provenance as the first packet's comment and the scope as the capture filter.
        let first = try TestSupport.run("tshark", ["-r", plain, "-c", "1", "-T", "fields", "-e", "frame.comment"])
        XCTAssertEqual(first.status, 0, first.stderr, file: file, line: line)
        for c in expectComments + ["scope: \(scope)"] {
            XCTAssertTrue(first.stdoutText.contains(c), "tshark shows '\(c)':\n\(first.stdoutText.prefix(3000))", file: file, line: line)
        }
        let filterShown = try TestSupport.run("tshark", ["-r", plain, "-c", "1", "-T", "fields", "-e", "frame.interface_description"])
        XCTAssertTrue(filterShown.stdoutText.contains(scope), "interface description: \(filterShown.stdoutText)", file: file, line: line)
        let packets = try StoredPacket.read(plain)
        XCTAssertEqual(ts.lines.count, packets.count, "tshark reads every packet", file: file, line: line)
        XCTAssertEqual(packets.count, (entry["packets"] as? NSNumber)?.intValue, file: file, line: line)

        // Reference: tcpdump's own cut of the source with the scope's BPF, within the evidence's window.
        let ref = work.appendingPathComponent("ref-\(name).pcap").path
        let td = try TestSupport.run("tcpdump", ["-n", "--time-stamp-precision=nano", "-r", source, "-w", ref, scope])
        XCTAssertEqual(td.status, 0, td.stderr, file: file, line: line)
        guard let first = packets.first, let last = packets.last else {
            XCTFail("evidence file holds no packets", file: file, line: line)
            return packets
        }
        let expected = try StoredPacket.read(ref).filter { $0.timestamp >= first.timestamp && $0.timestamp <= last.timestamp }
        XCTAssertEqual(packets.count, expected.count, "packet count vs tcpdump '\(scope)'", file: file, line: line)
        if packets != expected {
            let i = Array(zip(packets, expected)).firstIndex { $0 != $1 } ?? min(packets.count, expected.count)
            XCTFail("evidence differs from tcpdump '\(scope)' at packet \(i + 1): \(i < packets.count ? packets[i].description : "-") vs \(i < expected.count ? expected[i].description : "-")", file: file, line: line)
        }
        return packets
    }

    /// The host pair with the most packets in a capture (the alert's subject in manager tests), with
    /// the time of its middle packet (the alert's time) and its transport details.
    static func busiestPair(_ path: String) throws -> (a: IPAddress, b: IPAddress, sport: UInt16, dport: UInt16, proto: UInt8, alertAt: Timestamp) {
        let r = try PcapFileReader(path: path)
        struct Key: Hashable { var a: IPAddress; var b: IPAddress }
        var counts: [Key: [(Timestamp, UInt16, UInt16, UInt8, IPAddress)]] = [:]
        while let raw = try r.next() {
            var p = DecodedPacket()
            p.timestamp = raw.timestamp
            guard PacketDecoder.decode(raw.bytes, linkType: raw.linkType, into: &p) == .ok, p.hasPorts else { continue }
            let k = p.source < p.destination ? Key(a: p.source, b: p.destination) : Key(a: p.destination, b: p.source)
            counts[k, default: []].append((p.timestamp, p.sourcePort, p.destinationPort, p.ipProtocol, p.source))
        }
        let (k, list) = try XCTUnwrap(counts.max { $0.value.count < $1.value.count })
        let mid = list[list.count / 2]
        let firstSeen = list[0]
        return (firstSeen.4, firstSeen.4 == k.a ? k.b : k.a, firstSeen.1, firstSeen.2, firstSeen.3, mid.0)
    }
}

/// `sensor replay` (the real binary) with evidence on, TMPDIR pointed at a directory the test watches.
enum EvidenceReplay {
    struct Run {
        let work: URL
        let evidenceDir: URL
        let tmp: URL
        let key: AgeKey
        let result: TestSupport.ProcessResult
        let events: [[String: Any]]
        var custodyLog: String { evidenceDir.appendingPathComponent("custody.jsonl").path }
        func dataset(_ d: String) -> [[String: Any]] { events.filter { TestSupport.value($0, "event.dataset") as? String == d } }
    }

    static func replay(_ source: String, extra: [String] = [], key: AgeKey? = nil, work: URL? = nil, evidenceDir: URL? = nil) throws -> Run {
        let work = try work ?? TestSupport.temporaryDirectory("evidence-cli")
        let key = try key ?? AgeKey.generate(in: work)
        let evidence = evidenceDir ?? work.appendingPathComponent("evidence")
        let tmp = try work.appendingPathComponent("tmp").creating()
        let events = work.appendingPathComponent("events-\(UUID().uuidString).ndjson")
        let args = ["replay", "--rules", TestSupport.repositoryRoot.appendingPathComponent("Rules").path,
                    "--output", "file:\(events.path)", "--sensor-name", "cli-sensor",
                    "--evidence-dir", evidence.path, "--evidence-recipient", key.recipient,
                    "--authorization", "AUTH-CLI-1", "--purpose", "acceptance test", "--operator", "ci"] + extra + [source]
        let r = try TestSupport.run(TestSupport.sensorBinary, args, environment: ["TMPDIR": tmp.path],
                                    currentDirectory: TestSupport.repositoryRoot.path)
        let text = (try? String(contentsOf: events, encoding: .utf8)) ?? ""
        let parsed = text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        return Run(work: work, evidenceDir: evidence, tmp: tmp, key: key, result: r, events: parsed)
    }
}

/// Custody lines made by hand, correctly chained (what someone who rewrites the log can do).
enum CustodyChain {
    /// One line per member list (JSON members without braces), chained from the genesis.
    static func lines(_ members: [String]) -> String {
        var prev = CustodyLog.genesis
        var out = ""
        for (i, m) in members.enumerated() {
            let body = "{\"seq\":\(i + 1),\"prev_sha256\":\"\(prev)\",\(m)}"
            let hash = Hex.string(Crypto.SHA256.hash(data: Array(body.utf8)))
            out += String(body.dropLast()) + ",\"entry_sha256\":\"\(hash)\"}\n"
            prev = hash
        }
        return out
    }
}
