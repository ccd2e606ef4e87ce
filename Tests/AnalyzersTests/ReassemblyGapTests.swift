import XCTest
@testable import Analyzers
import Events
import PacketCore

/// Holes the peer acknowledged (capture loss) and consumers that resume after a gap.
final class ReassemblyGapTests: XCTestCase {
    func testAcknowledgedHoleEndsDirectionAtOnce() {
        var d = SegmentDriver()
        d.send(fromClient: true, seq: 1000, flags: [.syn], payload: [])
        d.send(fromClient: true, seq: 1001, payload: Array("AAAA".utf8))
        // Bytes 1005..<1009 never captured; later data is held…
        d.send(fromClient: true, seq: 1009, payload: Array("CCCC".utf8))
        XCTAssertEqual(d.consumer.gaps, [false, false])
        // …until the server acknowledges past the hole: it will never fill.
        d.send(fromClient: false, seq: 5000, flags: [.ack], payload: [], ack: 1013)
        XCTAssertEqual(d.consumer.gaps, [true, false])
        XCTAssertEqual(String(decoding: d.consumer.data[0], as: UTF8.self), "AAAA")
        XCTAssertEqual(d.reassembler.counters.ackedHoles, 1)
    }

    func testResumingConsumerContinuesAfterTheHole() {
        var d = SegmentDriver()
        let resume = ResumingConsumer()
        d.reassembler.add(resume)
        d.send(fromClient: true, seq: 1000, flags: [.syn], payload: [])
        d.send(fromClient: true, seq: 1001, payload: Array("AAAA".utf8))
        d.send(fromClient: true, seq: 1009, payload: Array("CCCC".utf8))
        d.send(fromClient: false, seq: 5000, flags: [.ack], payload: [], ack: 1013)
        d.send(fromClient: true, seq: 1013, payload: Array("DD".utf8))
        // The non-resuming consumer stopped at the hole; the resuming one got the held and later bytes.
        XCTAssertEqual(String(decoding: d.consumer.data[0], as: UTF8.self), "AAAA")
        XCTAssertEqual(resume.bytes, 4 + 4 + 2)
        XCTAssertEqual(resume.gaps, 1)
        XCTAssertEqual(d.reassembler.counters.resumedAfterGap, 1)
    }

    func testInOrderAcknowledgementsDeclareNothing() {
        var d = SegmentDriver()
        d.send(fromClient: true, seq: 1000, flags: [.syn], payload: [])
        d.send(fromClient: true, seq: 1001, payload: Array("AAAA".utf8))
        d.send(fromClient: false, seq: 5000, flags: [.ack], payload: [], ack: 1005)
        d.send(fromClient: true, seq: 1009, payload: Array("CCCC".utf8))   // out of order, hole not yet acked
        d.send(fromClient: false, seq: 5000, flags: [.ack], payload: [], ack: 1005)
        d.send(fromClient: true, seq: 1005, payload: Array("BBBB".utf8))   // the hole fills
        XCTAssertEqual(String(decoding: d.consumer.data[0], as: UTF8.self), "AAAABBBBCCCC")
        XCTAssertEqual(d.reassembler.counters.ackedHoles, 0)
    }
}
