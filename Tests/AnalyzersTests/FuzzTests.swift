import XCTest
@testable import Analyzers
import Events
import PacketCore
import TestSupport

/// A consumer that realigns after gaps (like DCE-RPC), to exercise the resume path.
final class ResumingConsumer: StreamConsumer {
    let name = "resume"
    var bytes = 0
    var gaps = 0
    var resumesAfterGap: Bool { true }
    func wantsStream(_ flow: FlowRecord, slot: Int32, firstPayload: UnsafeRawBufferPointer, fromOriginator: Bool) -> Bool { true }
    func stream(_ data: UnsafeRawBufferPointer, fromOriginator: Bool, slot: Int32, flows: FlowTable, at time: Timestamp) -> StreamVerdict {
        bytes += data.count
        return .more
    }
    func gap(fromOriginator: Bool, slot: Int32, flows: FlowTable, at time: Timestamp) { gaps += 1 }
    func streamEnded(_ flow: FlowRecord, slot: Int32) {}
}

/// Seeded random and mutation property tests (≥1M inputs each): no input crashes or traps, and
/// reassembly only ever delivers a prefix of what was sent.
final class FuzzTests: XCTestCase {
    static let iterations = 1_000_000

    func testReassemblyDeliversOnlyPrefixesOverAMillionRandomSegments() {
        var rng = SeededRandom(seed: 0x5EED_0001)
        let table = FlowTable(configuration: { var c = FlowTableConfiguration(); c.capacity = 4096; return c }())
        var config = ReassemblyConfiguration()
        // Real memory (4 KiB blocks plus bookkeeping): room for a few blocks, so holes both fill and overflow.
        config.maxPendingBytesPerFlow = 16 << 10
        config.maxBytesPerDirection = 1 << 20
        let reassembler = StreamReassembler(flowCapacity: 4096, configuration: config)
        let collect = CollectingConsumer(), resume = ResumingConsumer()
        reassembler.add(collect)
        reassembler.add(resume)
        var frame = [UInt8](repeating: 0, count: 54 + 1500)
        var segments = 0, flowsChecked = 0, exact = 0
        let pool = (0..<65536).map { _ in rng.byte() }
        var time: Int64 = 1_000_000_000
        var port: UInt16 = 1024
        while segments < FuzzTests.iterations {
            port = port == 65535 ? 1024 : port + 1
            collect.data = [[], []]
            collect.gaps = [false, false]
            // Both directions' true streams and their (possibly damaged) segment schedules.
            var truth: [[UInt8]] = [[], []]
            let isn: [UInt32] = [UInt32(truncatingIfNeeded: rng.next()), UInt32(truncatingIfNeeded: rng.next())]
            var schedule: [(dir: Int, offset: Int, length: Int)] = []
            var dropped = [false, false]
            let handshake = rng.below(2) == 0
            for dir in 0..<2 {
                let length = rng.below(2501)
                // A random window of a random pool: distinct content per flow without per-byte generation.
                let from = rng.below(pool.count - length)
                truth[dir] = Array(pool[from..<(from + length)])
                var offset = 0
                while offset < length {
                    let n = min(length - offset, 1 + rng.below(400))
                    switch rng.below(20) {
                    case 0: dropped[dir] = true                                   // capture loss
                    case 1: schedule.append((dir, offset, n)); schedule.append((dir, offset, n))   // retransmission
                    case 2: schedule.append((dir, max(0, offset - 50), min(length - max(0, offset - 50), n + 50)))  // overlap
                    default: schedule.append((dir, offset, n))
                    }
                    offset += n
                }
            }
            // Mild reordering: swap some neighbours.
            if schedule.count > 1 {
                for _ in 0..<rng.below(4) {
                    let i = rng.below(schedule.count - 1)
                    schedule.swapAt(i, i + 1)
                }
            }
            if handshake { schedule.insert((0, -1, 0), at: 0); schedule.insert((1, -1, 0), at: 1) }
            var acked = [0, 0]
            var clientIsOriginator = true
            for seg in schedule {
                time += 1000
                var p = DecodedPacket()
                p.timestamp = Timestamp(nanoseconds: time)
                p.ipVersion = 4
                p.ipProtocol = IPProtocol.tcp
                let client = IPAddress(ipv4: 0x0A00_0001), server = IPAddress(ipv4: 0x0A00_0002)
                p.source = seg.dir == 0 ? client : server
                p.destination = seg.dir == 0 ? server : client
                p.sourcePort = seg.dir == 0 ? port : 445
                p.destinationPort = seg.dir == 0 ? 445 : port
                p.hasPorts = true
                if seg.offset < 0 {
                    p.tcpFlags = seg.dir == 0 ? [.syn] : [.syn, .ack]
                    p.tcpSequence = isn[seg.dir] &- 1
                    p.payloadLength = 0
                } else {
                    p.tcpFlags = [.ack, .psh]
                    p.tcpSequence = isn[seg.dir] &+ UInt32(seg.offset)
                    p.payloadLength = seg.length
                    truth[seg.dir].withUnsafeBytes { t in
                        frame.withUnsafeMutableBytes { f in
                            f.baseAddress!.advanced(by: 54).copyMemory(from: t.baseAddress!.advanced(by: seg.offset), byteCount: seg.length)
                        }
                    }
                    // The peer acknowledges what it has received so far (beyond any hole we dropped).
                    acked[seg.dir] = max(acked[seg.dir], seg.offset + seg.length)
                }
                p.tcpAcknowledgement = isn[1 - seg.dir] &+ UInt32(acked[1 - seg.dir])
                p.payloadOffset = 54
                p.wireLength = 54 + p.payloadLength
                p.capturedLength = 54 + p.payloadLength
                let u = table.update(p) { r, reason, slot in reassembler.flowEnded(r, reason: reason, slot: slot) }
                clientIsOriginator = (seg.dir == 0) == u.fromOriginator
                frame.withUnsafeBytes { f in
                    let ctx = PacketContext(packet: p, frame: UnsafeRawBufferPointer(rebasing: f[0..<(54 + p.payloadLength)]),
                                            linkType: .ethernet, slot: u.slot, fromOriginator: u.fromOriginator, isNewFlow: u.isNew)
                    reassembler.packet(ctx, flows: table)
                }
                segments += 1
            }
            // Property: each direction delivered a contiguous run of what was sent, starting where the sensor
            // first saw that direction (byte 0 with a handshake; midstream, the first segment seen); all of it
            // when nothing was lost and the stream started at its first byte.
            for dir in 0..<2 {
                let got = collect.data[clientIsOriginator ? dir : 1 - dir]
                let start = handshake ? 0 : (schedule.first { $0.dir == dir }?.offset ?? 0)
                XCTAssertTrue(start + got.count <= truth[dir].count && got[...] == truth[dir][start..<(start + got.count)],
                              "flow \(flowsChecked) dir \(dir) handshake \(handshake) start \(start) got \(got.count) of \(truth[dir].count) port \(port) \(schedule.filter { $0.dir == dir }.prefix(6))")
                if !dropped[dir] && handshake && !collect.gaps[clientIsOriginator ? dir : 1 - dir] {
                    XCTAssertEqual(got.count, truth[dir].count, "flow \(flowsChecked) dir \(dir)")
                    exact += 1
                }
            }
            flowsChecked += 1
        }
        XCTAssertGreaterThan(exact, flowsChecked / 2)
        XCTAssertGreaterThan(reassembler.counters.retransmittedBytes, 0)
        XCTAssertGreaterThan(reassembler.counters.gaps, 0)
        XCTAssertGreaterThan(reassembler.counters.ackedHoles, 0)
        XCTAssertGreaterThan(resume.gaps, 0)
    }

    func smbSeeds() -> [[UInt8]] {
        let svcctl = "367abb81-9844-35f1-ad32-98f038001003"
        return [
            Build.netbios(Build.sessionSetup(Build.ntlmAuthenticate(user: "u", domain: "d", workstation: "w"), message: 1)),
            Build.netbios(Build.sessionSetupResponse(status: 0xC000_006D, message: 1)),
            Build.netbios(Build.treeConnect("\\\\h\\ADMIN$", message: 2)),
            Build.netbios(Build.treeConnectResponse(tree: 1, message: 2)),
            Build.netbios(Build.create("svcctl", tree: 1, message: 3)),
            Build.netbios(Build.createResponse(file: 9, tree: 1, message: 3)),
            Build.netbios(Build.write(file: 9, tree: 1, message: 4, data: Build.rpcBind(svcctl))),
            Build.netbios(Build.ioctlTransceive(file: 9, tree: 1, message: 5, data: Build.rpcRequest(context: 0, opnum: 12))),
            Build.netbios(Build.compound([Build.create("x", tree: 1, message: 6), Build.write(file: 1, tree: 1, message: 7, data: [1, 2, 3])])),
            Build.netbios(Build.smb1TreeConnect("\\\\H\\C$", mid: 3)),
            Build.netbios([0xFD, 0x53, 0x4D, 0x42] + [UInt8](repeating: 0, count: 48)),
            // Exploitation: EternalBlue's transactions, DoublePulsar, the MS17-010 check, SMBGhost's header.
            Build.netbios(Build.smb1(0xA0, words: Build.ntTransactWords(totalData: 0x10FE8, function: 0), mid: 0x40)),
            Build.netbios(Build.smb1(0x33, words: [UInt8](repeating: 0, count: 18), bytes: [0x41, 0x41], mid: 0x40)),
            Build.netbios(Build.smb1(0x32, words: Build.trans2Words(subcommand: 0x000E), mid: 0x41)),
            Build.netbios(Build.smb1(0x32, words: [], response: true, status: 0xC000_0002, mid: 0x51)),
            Build.netbios(Build.smb1(0x25, words: Build.transactionWords(function: 0x23, fid: 0), mid: 0x20)),
            Build.netbios([0xFC, 0x53, 0x4D, 0x42] + Build.le32(-1) + Build.le16(1) + Build.le16(0) + Build.le32(16) + [UInt8](repeating: 0x41, count: 32)),
        ]
    }

    func testSMBSurvivesAMillionMutatedMessages() {
        var rng = SeededRandom(seed: 0x5EED_0002)
        let seeds = smbSeeds()
        var smb = SMBAnalyzer(messageCap: 512)
        let rec = FactRecorder()
        var h = StreamHarness()
        smb.observer = rec
        _ = h.start(smb, first: seeds[0])
        var input: [UInt8] = []
        for i in 0..<FuzzTests.iterations {
            if i % 1000 == 0 {
                // Fresh state now and then, so state tables see both empty and crowded starts.
                smb = SMBAnalyzer(messageCap: 64 + rng.below(2000))
                smb.observer = rec
                rec.facts.removeAll(keepingCapacity: true)
                h = StreamHarness(clientPort: UInt16(1024 + i / 1000))
                _ = h.start(smb, first: seeds[0])
            }
            if rng.below(8) == 0 {
                input.removeAll(keepingCapacity: true)
                for _ in 0..<rng.below(65) { input.append(rng.byte()) }
            } else {
                rng.mutate(seeds[rng.below(seeds.count)], into: &input)
            }
            // The verdict may end the direction; a new harness continues the run.
            if h.feed(smb, input, fromClient: rng.below(2) == 0) != .more {
                h = StreamHarness(clientPort: UInt16(1024 + i % 60000))
                _ = h.start(smb, first: seeds[0])
            }
        }
        XCTAssertGreaterThan(smb.counters.messages + smb.counters.desyncs, 0)
    }

    func testNTLMSSPSurvivesAMillionMutatedMessages() {
        var rng = SeededRandom(seed: 0x5EED_0003)
        let seeds = [Build.ntlmAuthenticate(user: "administrator", domain: "LAB", workstation: "WS"),
                     Array("NTLMSSP".utf8) + [0] + Build.le32(1) + [UInt8](repeating: 0, count: 24),
                     [0x60, 0x48, 0x06, 0x06] + Build.ntlmAuthenticate(user: "x", domain: "", workstation: "")]
        var parsed = 0
        var m: [UInt8] = []
        for _ in 0..<FuzzTests.iterations {
            rng.mutate(seeds[rng.below(seeds.count)], into: &m)
            if m.withUnsafeBytes({ NTLMSSP.authenticate(in: $0) }) != nil { parsed += 1 }
        }
        XCTAssertGreaterThan(parsed, 0)
    }

    func testDCERPCSurvivesAMillionMutatedPDUs() {
        var rng = SeededRandom(seed: 0x5EED_0004)
        let stub: [UInt8] = [UInt8](repeating: 0, count: 20) + [1, 0, 7, 2, 0, 0xC2, 0x05] + Array("MEOW".utf8)
        let seeds = [Build.rpcBind("e3514235-4b06-11d1-ab04-00c04fc2dcd2"),
                     Build.rpcBind("367abb81-9844-35f1-ad32-98f038001003", context: 2, type: 14,
                                   auth: Build.ntlmAuthenticate(user: "u", domain: "d", workstation: "w")),
                     Build.rpcRequest(context: 0, opnum: 3, stub: stub),
                     Build.rpcHeader(type: 2, length: 24 + stub.count, call: 2) + Build.le32(stub.count) + Build.le16(0) + [0, 0] + stub,
                     // Zerologon's arguments on a Netlogon context, GetNCChanges on an unbound one.
                     Build.rpcBind("12345678-1234-abcd-ef00-01234567cffb", context: 5, type: 14),
                     Build.rpcRequest(context: 5, opnum: 26, stub: Build.netlogonStub(opnum: 26, credential: [UInt8](repeating: 0, count: 8))),
                     Build.rpcRequest(context: 5, opnum: 30, stub: Build.netlogonStub(opnum: 30, credential: [UInt8](repeating: 0, count: 8))),
                     Build.rpcRequest(context: 9, opnum: 3, stub: Build.getNCChangesStub())]
        var assoc = DCERPCAssociation()
        assoc.onEndpointMapperPort = true
        var events = 0
        let rpc = DCERPCAnalyzer(messageCap: 256)
        var h = StreamHarness(serverPort: 135)
        _ = h.start(rpc, first: seeds[0])
        var m: [UInt8] = []
        for i in 0..<FuzzTests.iterations {
            rng.mutate(seeds[rng.below(seeds.count)], into: &m)
            m.withUnsafeBytes { b in
                assoc.clientPDU(b) { _ in events += 1 }
                events += assoc.serverPDU(b).count
            }
            if i % 1000 == 0 { assoc = DCERPCAssociation(); assoc.onEndpointMapperPort = true }
            if i % 4 == 0, h.feed(rpc, m, fromClient: i % 8 == 0) != .more {
                h = StreamHarness(serverPort: 135, clientPort: UInt16(1024 + i % 60000))
                _ = h.start(rpc, first: seeds[0])
            }
        }
        XCTAssertGreaterThan(events, 0)
    }
}
