import Foundation
import TestSupport
import XCTest
@testable import Evidence

/// age recipients files (`--evidence-recipients-file`, `evidence.recipients_file`, age's `-R` format)
/// and the refusal of SSH and plugin recipients, which this sensor's in-process age writer cannot wrap to.
final class EvidenceRecipientsTests: XCTestCase {
    static let ssh = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHWrEq5lP3vU0X8m6ebV6Xm3gQ1x8hFQ7Bw6xP5YJz0e ir@example"
    static let plugin = "age1yubikey1qwt50d05nh5vutpdzmlg5wn80xq5negm4uj9ghv0snvdd3yysf5yw3rhl3t"

    func testRecipientsFileFormatAsAgeReadsIt() throws {
        let a = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"
        let text = "# IR team\n\n  \(a)  \n# on call\n\(a.uppercased())\n"
        XCTAssertEqual(try AgeRecipientsFile.parse(text, path: "team.txt").map(\.text), [a, a])
        XCTAssertThrowsError(try AgeRecipientsFile.parse("# nobody yet\n", path: "empty.txt")) { e in
            XCTAssertEqual((e as? AgeError)?.description, "empty.txt: no recipient in the file")
        }
        // Every bad line at once, with its line number.
        XCTAssertThrowsError(try AgeRecipientsFile.parse("\(a)\n\n\(Self.ssh)\n\(Self.plugin)\nage1nope\n", path: "t.txt")) { e in
            let lines = ((e as? AgeError)?.description ?? "").split(separator: "\n").map(String.init)
            XCTAssertEqual(lines.count, 3, "\(lines)")
            XCTAssertTrue(lines[0].hasPrefix("t.txt:3: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA…' is an SSH public key"), lines[0])
            XCTAssertTrue(lines[1].hasPrefix("t.txt:4: 'age1yubikey1qwt50d05nh5vutpdzmlg5wn8…' is an age plugin recipient (plugin 'yubikey')"), lines[1])
            XCTAssertTrue(lines[2].hasPrefix("t.txt:5: 'age1nope' is not a valid age1… recipient"), lines[2])
        }
    }

    /// An SSH public key given as a recipient used to fail as "mixed-case Bech32 string".
    func testSSHAndPluginRecipientsAreRefusedByName() throws {
        let work = try TestSupport.temporaryDirectory("recipients")
        defer { try? FileManager.default.removeItem(at: work) }
        let source = TestSupport.captures("c2-nonstd-port")[0]
        let ssh = try TestSupport.sensor(["replay", "--evidence-recipient", Self.ssh, "--authorization", "A-1",
                                          "--evidence-dir", work.appendingPathComponent("ev").path, source])
        XCTAssertNotEqual(ssh.status, 0, ssh.stderr)  // a usage error (its code is ExitStatus's)
        XCTAssertTrue(ssh.stderr.contains("is an SSH public key: evidence is encrypted in-process to age X25519 recipients only"), ssh.stderr)
        XCTAssertFalse(ssh.stderr.contains("mixed-case"), ssh.stderr)

        // The same in a recipients file named in the YAML: a configuration error naming file and line.
        let file = work.appendingPathComponent("team.txt")
        try "# IR team\nage1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\n\(Self.plugin)\n".write(to: file, atomically: true, encoding: .utf8)
        let config = work.appendingPathComponent("sensor.yaml")
        try """
            evidence:
              authorization: A-1
              directory: \(work.appendingPathComponent("ev").path)
              recipients_file: \(file.path)
            """.write(to: config, atomically: true, encoding: .utf8)
        let plugin = try TestSupport.sensor(["replay", "--config", config.path, "--output", "file:/dev/null", source])
        XCTAssertEqual(plugin.status, 78, plugin.stderr)
        XCTAssertTrue(plugin.stderr.contains("\(file.path):3: 'age1yubikey1"), plugin.stderr)
        XCTAssertTrue(plugin.stderr.contains("is an age plugin recipient (plugin 'yubikey')"), plugin.stderr)
        let missing = try TestSupport.sensor(["replay", "--evidence-recipients-file", work.appendingPathComponent("nope.txt").path,
                                              "--authorization", "A-1", "--evidence-dir", work.appendingPathComponent("ev").path,
                                              "--output", "file:/dev/null", source])
        XCTAssertEqual(missing.status, 78, missing.stderr)
        XCTAssertTrue(missing.stderr.contains("nope.txt: cannot read recipients file"), missing.stderr)
    }

    /// Evidence encrypted to a team's recipients file: the real `age -d` opens it with each member's identity.
    func testEvidenceDecryptsWithEveryIdentityOfTheRecipientsFile() throws {
        try EvidenceChecks.requireTools()
        let work = try TestSupport.temporaryDirectory("recipients")
        defer { try? FileManager.default.removeItem(at: work) }
        let alice = try AgeKey.generate(in: work.appendingPathComponent("alice").creating())
        let bob = try AgeKey.generate(in: work.appendingPathComponent("bob").creating())
        let file = work.appendingPathComponent("team.txt")
        try "# IR team\n\(alice.recipient)\n\n# on call\n\(bob.recipient)\n".write(to: file, atomically: true, encoding: .utf8)
        let source = try XCTUnwrap(TestSupport.captures("c2-nonstd-port").first {
            !TestSupport.c2CapturesWithoutReportableChannel.contains(($0 as NSString).lastPathComponent)
        })
        let evidence = work.appendingPathComponent("evidence")
        let r = try TestSupport.sensor(["replay", "--rules", "Rules", "--output", "file:/dev/null", "--evidence-dir", evidence.path,
                                        "--evidence-recipients-file", file.path, "--authorization", "A-1", source])
        XCTAssertEqual(r.status, 0, r.stderr)
        let closed = try EvidenceChecks.custodyEntries(evidence.appendingPathComponent("custody.jsonl").path)
            .filter { $0["action"] as? String == "evidence_closed" }
        let name = try XCTUnwrap(closed.first?["file"] as? String, "evidence for \(source)")
        for (who, key) in [("alice", alice), ("bob", bob)] {
            let out = work.appendingPathComponent("\(who).pcapng").path
            try key.decrypt(evidence.appendingPathComponent(name).path, to: out)
            let info = try TestSupport.run("capinfos", ["-c", out])
            XCTAssertEqual(info.status, 0, "\(who): \(info.stderr)")
        }
    }
}
