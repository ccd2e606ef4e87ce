import Events
import PacketCore

/// Counters of the QUIC Initial analyser.
public struct QUICCounters: Sendable, Equatable {
    /// Client Initial packets decrypted (authenticated).
    public var initialsDecrypted: UInt64 = 0
    /// Client Initial packets whose authentication failed (a capture joined mid-handshake, a forged packet).
    public var initialsUndecryptable: UInt64 = 0
    public var clientHellos: UInt64 = 0
    /// Flows given up on: malformed frames, a CRYPTO stream that is not a ClientHello or outgrows the
    /// bound, or no complete ClientHello within the first `maxInitialPackets` Initial packets.
    public var abandoned: UInt64 = 0
    /// Half-assembled hellos dropped because `maxPending` flows were assembling at once (oldest first).
    public var pendingEvictions: UInt64 = 0
    public init() {}
}

/// Reads the TLS ClientHello out of the client's first QUIC Initial packets (RFC 9001 §5: their keys
/// derive from the client's first Destination Connection ID), so a QUIC flow gets the same
/// `tls.client.*` facts — SNI, ALPN, JA4 (`q…`), JA3 — as TLS over TCP.
///
/// Runs only on UDP flows that content identification tagged QUIC, only on the originator's
/// long-header datagrams, and only until the hello is read or `maxInitialPackets` Initial packets were
/// tried: a decided flow costs one byte compare per packet. The hello goes into the `TLSAnalyzer`'s
/// per-slot facts (one store for both transports), so flow events, detectors and fact observers
/// see it without knowing the transport.
///
/// Memory, allocated once per analyser: a generation and a state byte per flow-table slot, a
/// 2 kB decryption scratch, and `maxPending` CRYPTO assembly buffers of `cryptoBound` bytes (256 kB)
/// for hellos that span Initial packets; an assembly slot is freed when its hello is read, the flow
/// is given up, or it ends, and the oldest is evicted (counted) when all are busy. Per decrypted
/// Initial, swift-crypto allocates the plaintext and the keys are derived once per flow.
public final class QUICAnalyzer: PacketAnalyzer {
    public let name = "quic"
    /// Client Initial packets tried per flow (the first flight: a hello with post-quantum key
    /// shares spans two, a retransmission makes three).
    public static let maxInitialPackets: UInt8 = 3
    /// Largest CRYPTO stream prefix assembled: a ClientHello beyond 8 kB is not one we fingerprint.
    public static let cryptoBound = 8192
    /// Flows assembling a hello at once.
    public static let maxPending = 32
    static let done: UInt8 = 0xff
    /// A client pads every datagram carrying an Initial packet to at least 1200 bytes (RFC 9000 §14.1):
    /// shorter ones are not worth a key derivation and a decryption (a cheap filter for floods, too).
    public static let minimumInitialDatagram = 1200

    public private(set) var counters = QUICCounters()
    let tls: TLSAnalyzer
    let capacity: Int
    let generations: UnsafeMutablePointer<UInt32>
    /// Initial packets tried so far, or `done`.
    let states: UnsafeMutablePointer<UInt8>
    let scratch: UnsafeMutableRawBufferPointer
    let arena: UnsafeMutableRawBufferPointer

    /// One flow assembling its hello: the keys of its first Initial and the CRYPTO ranges received.
    struct Assembly {
        var slot: Int32 = -1
        var generation: UInt32 = 0
        var keys: QUICInitialKeys?
        /// Received CRYPTO byte ranges, merged and sorted (capacity reserved once).
        var ranges: [Range<Int>] = []
        var lastUse: UInt64 = 0
    }
    var assemblies: [Assembly]
    var useClock: UInt64 = 0

    public init(flowCapacity: Int, tls: TLSAnalyzer) {
        self.tls = tls
        capacity = max(16, flowCapacity)
        // Zero-filled, paged in on use (0 is no flow's generation: the flow table skips it).
        generations = ZeroFilledMemory.allocate(UInt32.self, count: capacity)
        states = ZeroFilledMemory.allocate(UInt8.self, count: capacity)
        scratch = .allocate(byteCount: QUICInitialProtection.scratchSize, alignment: 16)
        scratch.initializeMemory(as: UInt8.self, repeating: 0)
        arena = .allocate(byteCount: QUICAnalyzer.maxPending * QUICAnalyzer.cryptoBound, alignment: 16)
        arena.initializeMemory(as: UInt8.self, repeating: 0)
        assemblies = (0..<QUICAnalyzer.maxPending).map { _ in
            var a = Assembly()
            a.ranges.reserveCapacity(16)
            return a
        }
    }

    deinit {
        ZeroFilledMemory.deallocate(generations)
        ZeroFilledMemory.deallocate(states)
        scratch.deallocate()
        arena.deallocate()
    }

    // MARK: Per packet

    public func packet(_ context: PacketContext, flows: FlowTable) {
        guard context.fromOriginator else { return }
        let slot = context.slot
        let s = Int(slot)
        guard s >= 0, s < capacity, flows[slot].appProtocol == AppProtocol.quic.rawValue else { return }
        let generation = flows.generation(slot: slot)
        if generations[s] != generation {
            generations[s] = generation
            states[s] = 0
        }
        guard states[s] < QUICAnalyzer.maxInitialPackets else { return }
        let d = context.payload
        // A short-header packet from the client: its handshake is over, Initials will not come.
        guard d.count > 0, d[0] & 0x80 != 0 else { finish(s, slot: slot, abandoned: false); return }
        guard d.count >= QUICAnalyzer.minimumInitialDatagram else { return }
        readInitials(d, slot: slot, generation: generation, flows: flows, at: context.packet.timestamp)
    }

    /// Decrypts the client Initial packets coalesced in one datagram and assembles their CRYPTO data.
    func readInitials(_ d: UnsafeRawBufferPointer, slot: Int32, generation: UInt32, flows: FlowTable, at time: Timestamp) {
        let s = Int(slot)
        var offset = 0
        while offset < d.count, d[offset] & 0x80 != 0, states[s] < QUICAnalyzer.maxInitialPackets {
            guard let h = QUICPacketParser.longHeader(d, at: offset) else { break }
            offset = h.end
            guard h.isInitial, let version = QUICVersion(rawValue: h.version) else { continue }
            states[s] += 1
            let i = assembly(slot: slot, generation: generation) ?? claim(slot: slot, generation: generation)
            if assemblies[i].keys == nil || assemblies[i].keys!.version != version {
                // The client's first Initial names the DCID every Initial key of the connection derives from.
                assemblies[i].keys = QUICInitialKeys(version: version, destinationCID: UnsafeRawBufferPointer(rebasing: d[h.destinationCID]))
            }
            useClock &+= 1
            assemblies[i].lastUse = useClock
            let buffer = UnsafeMutableRawBufferPointer(rebasing: arena[(i * QUICAnalyzer.cryptoBound)..<((i + 1) * QUICAnalyzer.cryptoBound)])
            var ranges = assemblies[i].ranges
            assemblies[i].ranges = []
            let assemble = { (plain: UnsafeRawBufferPointer, _: UInt64) -> Bool in
                QUICPacketParser.initialFrames(plain) { off, data in
                    QUICAnalyzer.store(data, at: off, into: buffer, ranges: &ranges)
                }
            }
            var wellFormed = QUICInitialProtection.open(d, header: h, keys: assemblies[i].keys!, scratch: scratch, assemble)
            if wellFormed == nil {
                // After a Retry the client starts over under the DCID the server chose: keys from this packet's.
                let fresh = QUICInitialKeys(version: version, destinationCID: UnsafeRawBufferPointer(rebasing: d[h.destinationCID]))
                if fresh.key != assemblies[i].keys!.key {
                    wellFormed = QUICInitialProtection.open(d, header: h, keys: fresh, scratch: scratch, assemble)
                    if wellFormed != nil { assemblies[i].keys = fresh }
                }
            }
            assemblies[i].ranges = ranges
            guard let wellFormed else {
                counters.initialsUndecryptable &+= 1
                if states[s] >= QUICAnalyzer.maxInitialPackets { finish(s, slot: slot, abandoned: true) }
                continue
            }
            counters.initialsDecrypted &+= 1
            switch QUICAnalyzer.clientHello(UnsafeRawBufferPointer(buffer), contiguous: ranges.first?.lowerBound == 0 ? ranges[0].upperBound : 0) {
            case .parsed(let hello):
                counters.clientHellos &+= 1
                tls.quicClientHello(hello, slot: slot, flows: flows, at: time)
                finish(s, slot: slot, abandoned: false)
                return
            case .invalid:
                finish(s, slot: slot, abandoned: true)
                return
            case .needMore:
                if !wellFormed || states[s] >= QUICAnalyzer.maxInitialPackets { finish(s, slot: slot, abandoned: true); return }
            }
        }
    }

    /// Copies one CRYPTO frame's data into the assembly buffer (what lies beyond the bound is dropped)
    /// and merges its range into the sorted, disjoint list.
    static func store(_ data: UnsafeRawBufferPointer, at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer, ranges: inout [Range<Int>]) {
        guard offset < UInt64(buffer.count), !data.isEmpty else { return }
        let start = Int(offset)
        let count = min(data.count, buffer.count - start)
        UnsafeMutableRawBufferPointer(rebasing: buffer[start..<(start + count)])
            .copyMemory(from: UnsafeRawBufferPointer(rebasing: data[0..<count]))
        var new = start..<(start + count)
        var i = 0
        while i < ranges.count && ranges[i].upperBound < new.lowerBound { i += 1 }
        var j = i
        while j < ranges.count && ranges[j].lowerBound <= new.upperBound {
            new = min(new.lowerBound, ranges[j].lowerBound)..<max(new.upperBound, ranges[j].upperBound)
            j += 1
        }
        if j - i == 1 && ranges[i] == new { return }
        // Keep the list short: a hello arrives in a handful of frames (Chrome shuffles and splits them);
        // a flood of tiny disjoint frames beyond 16 ranges is not a hello worth assembling.
        if ranges.count - (j - i) + 1 > 16 { return }
        ranges.replaceSubrange(i..<j, with: CollectionOfOne(new))
    }

    /// The ClientHello at the start of the assembled CRYPTO stream, once its first `contiguous` bytes hold it.
    static func clientHello(_ buffer: UnsafeRawBufferPointer, contiguous: Int) -> TLSHandshakeParser.Outcome<ClientHello> {
        guard contiguous >= 4 else { return .needMore(needed: 4) }
        guard buffer[0] == 1 else { return .invalid }  // the client's first handshake message is its hello
        let length = Int(buffer[1]) << 16 | Int(buffer[2]) << 8 | Int(buffer[3])
        guard 4 + length <= buffer.count else { return .invalid }
        guard 4 + length <= contiguous else { return .needMore(needed: 4 + length) }
        guard let hello = TLSHandshakeParser.parseClientHelloBody(UnsafeRawBufferPointer(rebasing: buffer[4..<(4 + length)])) else {
            return .invalid
        }
        return .parsed(hello)
    }

    // MARK: Assembly slots

    func assembly(slot: Int32, generation: UInt32) -> Int? {
        assemblies.firstIndex { $0.slot == slot && $0.generation == generation }
    }

    /// A free assembly slot for the flow, evicting the least recently used when all are busy.
    func claim(slot: Int32, generation: UInt32) -> Int {
        var victim = 0
        for i in assemblies.indices {
            if assemblies[i].slot < 0 { victim = i; break }
            if assemblies[i].lastUse < assemblies[victim].lastUse { victim = i }
        }
        if assemblies[victim].slot >= 0 {
            counters.pendingEvictions &+= 1
            let old = Int(assemblies[victim].slot)
            if old < capacity, generations[old] == assemblies[victim].generation { states[old] = QUICAnalyzer.done }
        }
        assemblies[victim].slot = slot
        assemblies[victim].generation = generation
        assemblies[victim].keys = nil
        assemblies[victim].ranges.removeAll(keepingCapacity: true)
        return victim
    }

    func release(slot: Int32) {
        for i in assemblies.indices where assemblies[i].slot == slot {
            assemblies[i].slot = -1
            assemblies[i].keys = nil
            assemblies[i].ranges.removeAll(keepingCapacity: true)
        }
    }

    func finish(_ s: Int, slot: Int32, abandoned: Bool) {
        states[s] = QUICAnalyzer.done
        if abandoned { counters.abandoned &+= 1 }
        release(slot: slot)
    }

    // MARK: Flow end

    public func flowEnded(_ flow: FlowRecord, reason: FlowEndReason, slot: Int32) {
        guard reason != .activeTimeout, flow.key.ipProtocol == IPProtocol.udp else { return }
        let s = Int(slot)
        if s >= 0, s < capacity, generations[s] == flow.generation, states[s] != QUICAnalyzer.done {
            release(slot: slot)
            states[s] = QUICAnalyzer.done
        }
        tls.quicFlowEnded(flow, slot: slot)
    }
}

extension TLSAnalyzer {
    /// A ClientHello read from a QUIC flow's Initial packets: kept in the same per-slot facts as TLS
    /// over TCP (flow fields, detectors and fact observers read one store), with JA4's `q` transport.
    public func quicClientHello(_ hello: ClientHello, slot: Int32, flows table: FlowTable, at time: Timestamp) {
        // Facts of ended flows go first, as when a TCP stream starts: the slot may be an ended flow's.
        store.purgeEnded()
        var f = TLSFacts(generation: table.generation(slot: slot))
        f.client = hello
        f.ja3 = TLSFingerprint.ja3(hello)
        f.ja4 = TLSFingerprint.ja4(hello, transport: .quic)
        store[slot] = f
        if let e = emitter, e.hasFactObservers {
            e.publish(.tlsClientHello(serverName: f.serverName, ja3: f.ja3, ja4: f.ja4), flow: table[slot], at: time)
        }
    }

    /// A UDP flow ended: its QUIC facts are purged like a TCP stream's, after this round of detectors.
    public func quicFlowEnded(_ flow: FlowRecord, slot: Int32) {
        store.flowEnded(slot: slot, generation: flow.generation)
    }
}
