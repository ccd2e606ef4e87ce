import Foundation
import XCTest
import TestSupport
@testable import Analyzers
import PacketCore
import Events

/// The certificate reader against tshark's X.509 dissector on the shared captures that carry TLS ≤ 1.2
/// Certificate messages: every certificate of every chain, not only the first.
final class X509ReaderTests: XCTestCase {
    /// tshark's RDN attribute names (`id-at-commonName`) to the short names the sensor writes.
    static let shortNames = ["id-at-commonName": "CN", "id-at-countryName": "C", "id-at-localityName": "L",
                             "id-at-stateOrProvinceName": "ST", "id-at-organizationName": "O",
                             "id-at-organizationalUnitName": "OU", "id-at-serialNumber": "serialNumber",
                             "id-at-streetAddress": "STREET", "pkcs-9-at-emailAddress": "emailAddress"]

    static func hexBytes(_ s: Substring) -> [UInt8] {
        var out: [UInt8] = []
        var it = s.utf8.makeIterator()
        while let a = it.next(), let b = it.next() {
            func v(_ c: UInt8) -> UInt8 { c <= 0x39 ? c - 0x30 : (c | 0x20) - 0x61 + 10 }
            out.append(v(a) << 4 | v(b))
        }
        return out
    }

    /// Validity times as certificates write them, including RFC 5280's "no expiry" 9999-12-31 (beyond the
    /// nanosecond packet clock: kept in seconds and rendered as written, not wrapped or clamped).
    func testValidityTimesIncludingTheYear9999() {
        func time(_ tag: UInt8, _ s: String) -> Int64? { Array(s.utf8).withUnsafeBytes { X509Reader.time(tag, $0) } }
        XCTAssertEqual(time(0x17, "491231235959Z"), 2_524_607_999)
        XCTAssertEqual(time(0x17, "500101000000Z"), -631_152_000)
        XCTAssertEqual(time(0x18, "99991231235959Z"), 253_402_300_799)
        XCTAssertNil(time(0x18, "9999123123595Z"))
        XCTAssertNil(time(0x17, "991331000000Z"))
        var w = JSONWriter(capacity: 64)
        w.beginObject()
        w.field("not_after", epochSeconds: time(0x18, "99991231235959Z")!)
        w.endObject()
        XCTAssertEqual(String(decoding: w.bytes, as: UTF8.self), #"{"not_after":"9999-12-31T23:59:59.000000Z"}"#)
    }

    func testCertificatesAgreeWithTshark() throws {
        var compared = 0
        for capture in ["benign/google-duplicate.pcap", "benign/smtp.pcap", "beacon/emotet.pcap", "beacon/malware.pcap"] {
            let path = TestSupport.data("pcaps/" + capture)
            // One row per Certificate message: the DER of each certificate and their serial numbers.
            let fields = try TestSupport.run("tshark", ["-r", path, "-Y", "tls.handshake.certificate", "-T", "fields",
                                                        "-E", "occurrence=a", "-E", "aggregator=|",
                                                        "-e", "tls.handshake.certificate", "-e", "x509af.serialNumber",
                                                        "-e", "x509ce.dNSName"])
            XCTAssertEqual(fields.status, 0, fields.stderr)
            // tshark's verbose tree gives each name as "rdnSequence: N items (id-at-commonName=…,…)", issuer then subject.
            let verbose = try TestSupport.run("tshark", ["-r", path, "-Y", "tls.handshake.certificate", "-V"])
            let names = verbose.stdoutText.split(separator: "\n").compactMap { line -> String? in
                guard let r = line.range(of: "rdnSequence: "), let open = line[r.upperBound...].firstIndex(of: "(") else { return nil }
                return String(line[line.index(after: open)..<line.index(before: line.endIndex)])
            }
            var nameIndex = 0
            for row in fields.lines {
                let cols = row.split(separator: "\t", omittingEmptySubsequences: false)
                let certs = cols[0].split(separator: "|")
                let serials = cols[1].split(separator: "|")
                XCTAssertEqual(certs.count, serials.count, capture)
                for (k, hex) in certs.enumerated() {
                    let der = Self.hexBytes(hex)
                    let s = try XCTUnwrap(der.withUnsafeBytes { X509Reader.parse($0) }, "\(capture) certificate \(k)")
                    XCTAssertEqual(s.serialNumber, Self.serial(serials[k]), capture)
                    XCTAssertEqual(tsharkStyle(s.issuer), names[nameIndex], "\(capture) issuer \(k)")
                    XCTAssertEqual(tsharkStyle(s.subject), names[nameIndex + 1], "\(capture) subject \(k)")
                    nameIndex += 2
                    let file = try TestSupport.temporaryDirectory("x509").appendingPathComponent("c.der")
                    try Data(der).write(to: file)
                    let sha1 = try TestSupport.run("sha1sum", [file.path]).stdoutText.prefix(40)
                    let sha256 = try TestSupport.run("sha256sum", [file.path]).stdoutText.prefix(64)
                    XCTAssertEqual(s.sha1, String(sha1), capture)
                    XCTAssertEqual(s.sha256, String(sha256), capture)
                    XCTAssertNotNil(s.notBefore)
                    XCTAssertNotNil(s.notAfter)
                    XCTAssertGreaterThan(s.publicKeySize ?? 0, 0, "\(capture) key \(s.publicKeyAlgorithm)")
                    compared += 1
                }
                // SANs of the chain's certificates, in order.
                let sans = cols.count > 2 && !cols[2].isEmpty ? cols[2].split(separator: "|").map(String.init) : []
                let ours = certs.flatMap { hex in Self.hexBytes(hex).withUnsafeBytes { X509Reader.parse($0)?.alternativeNames ?? [] } }
                XCTAssertEqual(ours, sans, capture)
            }
        }
        XCTAssertGreaterThanOrEqual(compared, 8)
    }

    /// tshark's serial number bytes without the sign octets DER adds, upper-case.
    static func serial(_ hex: Substring) -> String {
        var h = hex.uppercased()
        while h.count > 2, h.hasPrefix("00") { h.removeFirst(2) }
        return h
    }

    /// The first certificate of google-duplicate.pcap's chain, as tshark extracts it.
    static func sampleCertificate() throws -> [UInt8] {
        let r = try TestSupport.run("tshark", ["-r", TestSupport.data("pcaps/benign/google-duplicate.pcap"), "-Y", "tls.handshake.certificate",
                                               "-T", "fields", "-E", "occurrence=f", "-e", "tls.handshake.certificate", "-c", "20"])
        return hexBytes(try XCTUnwrap(r.lines.first).prefix { $0 != "\t" })
    }

    /// A TLS 1.2 server flight: ServerHello record, then a Certificate record holding `der`.
    static func serverFlight(_ der: [UInt8]) -> [UInt8] {
        func u24(_ n: Int) -> [UInt8] { [UInt8(n >> 16 & 0xff), UInt8(n >> 8 & 0xff), UInt8(n & 0xff)] }
        let helloBody: [UInt8] = [3, 3] + [UInt8](repeating: 1, count: 32) + [0] + [0xc0, 0x2f] + [0]
        let hello: [UInt8] = [2] + u24(helloBody.count) + helloBody
        let list = u24(der.count) + der
        let certificate: [UInt8] = [11] + u24(list.count + 3) + u24(list.count) + list
        return [0x16, 3, 3] + HelloBuilder.u16(UInt16(hello.count)) + hello + [0x16, 3, 3] + HelloBuilder.u16(UInt16(certificate.count)) + certificate
    }

    func testServerFlightSplitAnywhereYieldsTheCertificate() throws {
        let der = try Self.sampleCertificate()
        let flight = Self.serverFlight(der)
        let whole = flight.withUnsafeBytes { TLSHandshakeParser.serverFlight($0) }
        guard case .parsed(let f) = whole else { return XCTFail("\(whole)") }
        XCTAssertEqual(f.certificate, der)
        XCTAssertEqual(f.hello.cipherSuite, 0xc02f)
        // Every prefix is "need more", never a wrong answer.
        for cut in stride(from: 1, to: flight.count, by: 7) {
            let r = flight.withUnsafeBytes { TLSHandshakeParser.serverFlight(UnsafeRawBufferPointer(rebasing: $0[..<cut])) }
            guard case .needMore = r else { return XCTFail("prefix \(cut): \(r)") }
        }
        // A resumed session (ChangeCipherSpec after the hello) ends the flight without a certificate.
        let resumed = Array(flight.prefix(5 + 4 + 38)) + [0x14, 3, 3, 0, 1, 1]
        guard case .parsed(let r) = resumed.withUnsafeBytes({ TLSHandshakeParser.serverFlight($0) }) else { return XCTFail() }
        XCTAssertNil(r.certificate)
        XCTAssertFalse(r.certificateMalformed)
    }

    /// Through the analyser: a flight split over segments yields the certificate, its fact and flow
    /// fields; a corrupt certificate is counted and the ServerHello facts stay.
    func testAnalyserReadsTheCertificateAndCountsBadOnes() throws {
        let der = try Self.sampleCertificate()
        var corrupt = der
        corrupt[4] = 0xff  // the TBSCertificate's tag: a multi-byte tag, which DER certificates never use
        for (cert, good) in [(der, true), (corrupt, false)] {
            let stage = TLSFingerprintTests.OneFlow()
            let (facts, table, tls) = (stage.facts, stage.table, stage.tls)
            let slot = stage.slot
            let flight = Self.serverFlight(cert)
            flight.withUnsafeBytes { b in
                XCTAssertTrue(tls.wantsStream(table[slot], slot: slot, firstPayload: b, fromOriginator: false))
                XCTAssertEqual(tls.stream(UnsafeRawBufferPointer(rebasing: b[..<60]), fromOriginator: false, slot: slot, flows: table, at: .zero), .more)
                XCTAssertEqual(tls.stream(UnsafeRawBufferPointer(rebasing: b[60...]), fromOriginator: false, slot: slot, flows: table, at: .zero), .doneWithDirection)
            }
            let f = try XCTUnwrap(tls.facts(slot: slot, generation: table[slot].generation))
            XCTAssertNotNil(f.ja3s)
            XCTAssertEqual(tls.counters.serverHellos, 1)
            if good {
                let x = try XCTUnwrap(f.certificate)
                XCTAssertEqual(x.alternativeNames.first, "*.google.com")
                XCTAssertEqual(tls.counters.certificates, 1)
                XCTAssertEqual(facts.certificates, [x.sha1])
                var w = JSONWriter(capacity: 4096)
                w.beginObject(); TLSAnalyzer.write(f, into: &w); w.endObject()
                let json = String(decoding: w.bytes, as: UTF8.self)
                XCTAssertTrue(json.contains("\"sha1\":\"\(x.sha1.uppercased())\""), json)
                XCTAssertTrue(json.contains("\"alternative_names\":[\"*.google.com\""), json)
            } else {
                XCTAssertNil(f.certificate)
                XCTAssertEqual(tls.counters.malformedCertificates, 1)
                XCTAssertEqual(facts.certificates, [])
            }
        }
    }

    /// Mutated certificates and server flights never trap; each outcome is a value (seeded, reproducible).
    func testX509AndServerFlightNeverTrap() throws {
        let der = try Self.sampleCertificate()
        let seeds = [der, Self.serverFlight(der)]
        var rng = SeededRandom(seed: 0x0509_ce47)
        var buf: [UInt8] = []
        var parsed = 0
        for n in 0..<200_000 {
            ParserFuzzTests.mutate(seeds[n % 2], into: &buf, &rng)
            buf.withUnsafeBytes { b in
                if X509Reader.parse(b) != nil { parsed += 1 }
                if case .parsed(let f) = TLSHandshakeParser.serverFlight(b), let c = f.certificate {
                    _ = c.withUnsafeBytes { X509Reader.parse($0) }
                }
            }
        }
        XCTAssertGreaterThan(parsed, 100, "mutations should still produce parseable certificates")
    }

    /// `C=US, O=X, CN=y` in tshark's form: reversed, long attribute names, comma-joined.
    func tsharkStyle(_ dn: String) -> String {
        let long = Dictionary(uniqueKeysWithValues: Self.shortNames.map { ($0.value, $0.key) })
        // Attributes are separated by ", " before the next `NAME=` (a value may hold ", " itself: "OpenDNS, Inc.").
        let marked = dn.replacingOccurrences(of: ", (?=[A-Za-z0-9.]+=)", with: "\u{1}", options: .regularExpression)
        return marked.components(separatedBy: "\u{1}").reversed().map { part -> String in
            guard let eq = part.firstIndex(of: "=") else { return part }
            return (long[String(part[..<eq])] ?? String(part[..<eq])) + part[eq...]
        }.joined(separator: ",")
    }
}
