import Foundation
import TestSupport
import XCTest

/// Server certificates through the real binary: the flow events of the shared TLS 1.2 captures carry the
/// certificate tshark dissects, and a certificate SHA-1 indicator matches in `sensor hunt`.
final class TLSCertificateCLITests: XCTestCase {
    static let captures = ["benign/smtp.pcap", "beacon/emotet.pcap", "benign/google-duplicate.pcap", "beacon/malware.pcap"]

    static func bytes(_ hex: Substring) -> Data {
        var out = Data()
        var it = hex.utf8.makeIterator()
        while let a = it.next(), let b = it.next() {
            func v(_ c: UInt8) -> UInt8 { c <= 0x39 ? c - 0x30 : (c | 0x20) - 0x61 + 10 }
            out.append(v(a) << 4 | v(b))
        }
        return out
    }

    func digest(_ tool: String, _ data: Data) throws -> String {
        let dir = try TestSupport.temporaryDirectory("cert")
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("c.der")
        try data.write(to: file)
        return String(try TestSupport.run(tool, [file.path]).stdoutText.prefix { $0 != " " })
    }

    func testServerCertificatesAgreeWithTsharkAndMatchIndicators() throws {
        let schema = try EventSchema.load()
        var compared = 0
        for capture in Self.captures {
            let path = TestSupport.data("pcaps/" + capture)
            let t = try TestSupport.run("tshark", ["-r", path, "-Y", "tls.handshake.certificate", "-T", "fields", "-E", "occurrence=f",
                                                   "-e", "ip.src", "-e", "tcp.srcport", "-e", "ip.dst", "-e", "tcp.dstport",
                                                   "-e", "tls.handshake.certificate", "-e", "x509af.serialNumber"])
            XCTAssertEqual(t.status, 0, t.stderr)
            let r = try TestSupport.sensor(["replay", path])
            XCTAssertEqual(r.status, 0, r.stderr)
            let flows = try TestSupport.events(r).filter { TestSupport.value($0, "event.dataset") as? String == "spanwatch.flow" }
            var sha1s: [String] = []
            for row in t.lines {
                let c = row.split(separator: "\t", omittingEmptySubsequences: false)
                // tshark's row is the server's packet: the flow's originator is its destination.
                let flow = try XCTUnwrap(flows.first {
                    TestSupport.value($0, "source.ip") as? String == String(c[2]) && "\(TestSupport.value($0, "source.port") ?? "")" == c[3]
                        && TestSupport.value($0, "destination.ip") as? String == String(c[0]) && "\(TestSupport.value($0, "destination.port") ?? "")" == c[1]
                }, "\(capture): no flow for \(row.prefix(60))")
                let der = Self.bytes(c[4])
                let sha1 = try digest("sha1sum", der)
                XCTAssertEqual(TestSupport.value(flow, "tls.server.hash.sha1") as? String, sha1.uppercased(), capture)
                XCTAssertEqual(TestSupport.value(flow, "tls.server.hash.sha256") as? String, try digest("sha256sum", der).uppercased(), capture)
                var serial = c[5].uppercased()
                while serial.count > 2, serial.hasPrefix("00") { serial.removeFirst(2) }
                XCTAssertEqual(TestSupport.value(flow, "tls.server.x509.serial_number") as? String, serial, capture)
                XCTAssertNotNil(TestSupport.value(flow, "tls.server.x509.subject.distinguished_name"), capture)
                XCTAssertNotNil(TestSupport.value(flow, "tls.server.x509.not_after"), capture)
                XCTAssertEqual(schema.problems(flow), [], capture)
                sha1s.append(sha1)
                compared += 1
            }
            // A certificate SHA-1 indicator matches in a hunt over the same capture.
            guard let sha1 = sha1s.first else { continue }
            let dir = try TestSupport.temporaryDirectory("cert-hunt")
            defer { try? FileManager.default.removeItem(at: dir) }
            let feed = dir.appendingPathComponent("certs.csv").path
            try "type,value,description\nsha1,\(sha1),server certificate\n".write(toFile: feed, atomically: true, encoding: .utf8)
            let h = try TestSupport.sensor(["hunt", "--indicators", feed, path])
            XCTAssertEqual(h.status, 0, h.stderr)
            let alerts = try TestSupport.events(h)
            XCTAssertFalse(alerts.isEmpty, "\(capture): \(h.stderr)")
            for a in alerts {
                XCTAssertEqual(TestSupport.value(a, "spanwatch.threat_intel.matched.field") as? String, "tls.server.hash.sha1", capture)
                XCTAssertEqual(TestSupport.value(a, "spanwatch.threat_intel.indicator.value") as? String, sha1, capture)
            }
        }
        XCTAssertGreaterThanOrEqual(compared, 5)
    }
}
