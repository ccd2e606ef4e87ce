import Analyzers
import Events
@testable import HostStage
import PacketCore
import XCTest

/// Records off a Kafka topic are anyone's bytes: the envelope refuses what it cannot read, and the
/// codec refuses fields whose bit patterns would be undefined behaviour or out-of-bounds offsets.
final class HostFactEnvelopeTests: XCTestCase {
    func testEnvelopeRoundTripAndRefusals() {
        let buf = UnsafeMutableRawPointer.allocate(byteCount: HostFactEnvelope.maxHeader + 16, alignment: 8)
        defer { buf.deallocate() }
        let producer = HostFactEnvelope.Producer(sensor: String(repeating: "s", count: 300), session: 42, worker: 3)
        let n = HostFactEnvelope.writeHeader(buf, type: .watermark, watermark: 1234, producer: producer)
        XCTAssertEqual(n, HostFactEnvelope.headerLength(producer))
        XCTAssertEqual(n, HostFactEnvelope.maxHeader, "the sensor name is cut to 255 bytes")
        guard case .success(let d) = HostFactEnvelope.decode(UnsafeRawBufferPointer(start: buf, count: n)) else { return XCTFail() }
        XCTAssertEqual(d.watermark, 1234)
        XCTAssertEqual(d.producer.session, 42)
        XCTAssertEqual(d.producer.worker, 3)
        XCTAssertEqual(d.producer.sensor.utf8.count, 255)
        // A watermark carrying a record, a fact without one, truncation, another version.
        guard case .failure(.garbage) = HostFactEnvelope.decode(UnsafeRawBufferPointer(start: buf, count: n + 9)) else { return XCTFail() }
        guard case .failure(.garbage) = HostFactEnvelope.decode(UnsafeRawBufferPointer(start: buf, count: 10)) else { return XCTFail() }
        buf.storeBytes(of: 0, toByteOffset: 3, as: UInt8.self)
        guard case .failure(.garbage) = HostFactEnvelope.decode(UnsafeRawBufferPointer(start: buf, count: n)) else { return XCTFail() }
        buf.storeBytes(of: 2, toByteOffset: 2, as: UInt8.self)
        guard case .failure(.unknownVersion(2)) = HostFactEnvelope.decode(UnsafeRawBufferPointer(start: buf, count: n)) else { return XCTFail() }
    }

    /// A flow record whose Bool or enum bytes hold another value is refused, not loaded.
    func testFlowRecordTagBytesAreChecked() {
        let size = 9 + MemoryLayout<FlowRecord>.size
        let record = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 8)
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: HostFactCodec.maxDNSName, alignment: 8)
        defer { record.deallocate(); scratch.deallocate() }
        XCTAssertEqual(HostFactReader.flowTagBytes.count, 5)
        for (offset, largest) in HostFactReader.flowTagBytes {
            record.initializeMemory(as: UInt8.self, repeating: 0)
            record[8] = HostFactKind.flowElsewhere.rawValue
            XCTAssertNotNil(HostFactCodec.decode(UnsafeRawBufferPointer(record), scratch: scratch), "all-zero flow")
            record[9 + offset] = largest
            XCTAssertNotNil(HostFactCodec.decode(UnsafeRawBufferPointer(record), scratch: scratch), "offset \(offset) = \(largest)")
            record[9 + offset] = largest &+ 1
            XCTAssertNil(HostFactCodec.decode(UnsafeRawBufferPointer(record), scratch: scratch), "offset \(offset) = \(largest + 1)")
        }
    }

    /// A DNS message whose registered-domain or suffix offset lies past its name is refused.
    func testDNSOffsetsBeyondTheNameAreRefused() {
        let name: [UInt8] = Array("a.example.com".utf8)
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: HostFactCodec.maxDNSName, alignment: 8)
        let out = UnsafeMutableRawPointer.allocate(byteCount: HostFactWriter.capacity, alignment: 16)
        defer { scratch.deallocate(); out.deallocate() }
        func record(registered: Int, suffix: Int) -> Bool {
            name.withUnsafeBytes { n in
                let f = DNSMessageFacts(at: Timestamp(seconds: 1), client: IPAddress(ipv4: 0x0A00_0001), server: IPAddress(ipv4: 0x0A00_0002),
                                        clientPort: 5353, serverPort: 53, ipProtocol: 17, appProtocol: .dns, isResponse: false, id: 1,
                                        queryType: 1, responseCode: 0, name: n, lowercaseName: n, registeredDomainStart: registered,
                                        publicSuffixStart: suffix, messageLength: 40, answerCount: 0, answerDataBytes: 0)
                var w = HostFactWriter(base: out)
                HostFactCodec.encode(.dnsMessage(f), stamp: 1, into: &w)
                return HostFactCodec.decode(w.bytes, scratch: scratch) != nil
            }
        }
        XCTAssertTrue(record(registered: 2, suffix: 10))
        XCTAssertTrue(record(registered: -1, suffix: -1))
        XCTAssertTrue(record(registered: name.count, suffix: name.count))
        XCTAssertFalse(record(registered: name.count + 1, suffix: 10))
        XCTAssertFalse(record(registered: 2, suffix: 1000))
    }
}
