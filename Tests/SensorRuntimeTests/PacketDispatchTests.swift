import Capture
import Events
import PacketCore
@testable import SensorRuntime
import XCTest

/// The pipeline's per-packet calls: an analyser hears the packets of the transports it names
/// (`packetTransports`), in pipeline order, each with its flow's slot and direction.
final class PacketDispatchTests: XCTestCase {
    final class Recorder: PacketAnalyzer {
        let name: String
        let packetTransports: PacketTransports
        var heard: [(ipProtocol: UInt8, slot: Int32, fromOriginator: Bool, isNew: Bool)] = []
        init(_ name: String, _ transports: PacketTransports) {
            self.name = name
            packetTransports = transports
        }
        func packet(_ context: PacketContext, flows: FlowTable) {
            heard.append((context.packet.ipProtocol, context.slot, context.fromOriginator, context.isNewFlow))
        }
    }

    /// A raw IPv4 packet from 10.0.0.1 to 10.0.0.2 (or back) with a 20-byte transport header of `ipProtocol`.
    static func packet(_ ipProtocol: UInt8, reply: Bool = false) -> [UInt8] {
        var b = [UInt8](repeating: 0, count: 48)
        b[0] = 0x45; b[3] = 48; b[8] = 64; b[9] = ipProtocol
        b[12] = 10; b[15] = reply ? 2 : 1
        b[16] = 10; b[19] = reply ? 1 : 2
        b[20] = reply ? 0 : 0x30; b[21] = reply ? 80 : 0x39  // ports 12345 → 80
        b[22] = reply ? 0x30 : 0; b[23] = reply ? 0x39 : 80
        if ipProtocol == IPProtocol.tcp { b[32] = 0x50; b[33] = 0x10 }  // header length 20, ACK
        if ipProtocol == IPProtocol.udp { b[25] = 28 }
        if ipProtocol == IPProtocol.icmp { b[20] = 8; b[21] = 0; b[22] = 0; b[23] = 0 }  // echo request
        return b
    }

    func testAnalysersHearOnlyTheTransportsTheyName() {
        let udp = Recorder("udp", .udp), tcp = Recorder("tcp", .tcp), all = Recorder("all", .all), both = Recorder("both", [.tcp, .udp])
        let emitter = EventEmitter(observer: ObserverInfo(name: "test"), sinks: [CompositionRootTests.Discard()])
        let pipeline = Pipeline(flows: FlowTableConfiguration(), emitter: emitter, analyzers: [udp, tcp, all, both])
        let sequence: [(UInt8, Bool)] = [(IPProtocol.tcp, false), (IPProtocol.udp, false), (IPProtocol.tcp, true), (IPProtocol.icmp, false)]
        for (i, (proto, reply)) in sequence.enumerated() {
            Self.packet(proto, reply: reply).withUnsafeBytes { b in
                pipeline.process(RawPacket(timestamp: Timestamp(nanoseconds: 1_000_000_000 + Int64(i) * 1_000), capturedLength: b.count,
                                           wireLength: b.count, linkType: .raw, bytes: b))
            }
        }
        XCTAssertEqual(udp.heard.map(\.ipProtocol), [IPProtocol.udp])
        XCTAssertEqual(tcp.heard.map(\.ipProtocol), [IPProtocol.tcp, IPProtocol.tcp])
        XCTAssertEqual(all.heard.map(\.ipProtocol), [IPProtocol.tcp, IPProtocol.udp, IPProtocol.tcp, IPProtocol.icmp])
        XCTAssertEqual(both.heard.map(\.ipProtocol), [IPProtocol.tcp, IPProtocol.udp, IPProtocol.tcp])
        // The TCP reply belongs to the first packet's flow, from its responder; every first packet made a flow.
        XCTAssertEqual(tcp.heard.map(\.slot), [tcp.heard[0].slot, tcp.heard[0].slot])
        XCTAssertEqual(tcp.heard.map(\.fromOriginator), [true, false])
        XCTAssertEqual(all.heard.map(\.isNew), [true, true, false, true])
        XCTAssertEqual(pipeline.counters.flowPackets, 4)
    }
}
