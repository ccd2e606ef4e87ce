import Events
import PacketCore

/// TLS facts of one flow, for the flow event and for detectors (beaconing keys on the SNI).
public struct TLSFacts: SlotFacts, Sendable {
    public var generation: UInt32
    public var client: ClientHello?
    public var server: ServerHello?
    public var ja3: String?
    public var ja4: String?
    public var ja3s: String?
    /// The server's first certificate (TLS ≤ 1.2; TLS 1.3 sends it encrypted).
    public var certificate: X509Summary?
    /// SNI as text (invalid UTF-8 replaced), for detectors' keys and messages.
    public var serverName: String? { client?.serverName.map { String(decoding: $0, as: UTF8.self) } }
}

/// Counters of the TLS analyser.
public struct TLSCounters: Sendable, Equatable {
    public var clientHellos: UInt64 = 0
    public var serverHellos: UInt64 = 0
    /// Streams that began like TLS but whose hello did not parse (or outgrew the buffer bound).
    public var malformed: UInt64 = 0
    /// Server certificates read, and Certificate messages or certificates that did not parse.
    public var certificates: UInt64 = 0
    public var malformedCertificates: UInt64 = 0
    public init() {}
}

/// Reads the ClientHello and ServerHello of TLS flows from the shared TCP reassembly, on any port.
///
/// Flows are chosen by content (a handshake record at the first byte of a direction), not by port, so
/// TLS on 4444 is seen like TLS on 443 — including a hello that opens the *responder's* stream after a
/// non-TLS request (Meterpreter's TLS upgrade on its stage connection). Only the two hellos are read;
/// a direction that does not start with a handshake record, or whose hello is read, is released back
/// to the reassembler at once, so a long TLS session costs nothing after its handshake.
/// Per-flow state: a byte and a generation per flow-table slot (allocated once), and for TLS flows only,
/// their facts and at most one bounded hello buffer per direction (`TLSHandshakeParser.maxHandshake`,
/// and the worker's `ParserMemoryBudget`).
public final class TLSAnalyzer: StreamConsumer, PacketAnalyzer {
    public let name = "tls"
    public private(set) var counters = TLSCounters()
    var store = FlowFactStore<TLSFacts>()
    let capacity: Int
    let generations: UnsafeMutablePointer<UInt32>
    /// Bit 0: the originator's first bytes were checked; bit 1: the responder's; bit 2: a direction began
    /// with a handshake record (the flow is TLS). Facts are stored only once a hello is read: a flow that
    /// only began like TLS costs this bit, not a facts entry (500k such flows would otherwise hold 500k).
    let checked: UnsafeMutablePointer<UInt8>

    /// Where ClientHello facts are published for correlation (threat intelligence), if anywhere.
    let emitter: EventEmitter?
    /// The worker's bound on hello buffers (shared with its other stream parsers).
    let budget: ParserMemoryBudget

    public init(flowCapacity: Int, emitter: EventEmitter? = nil, budget: ParserMemoryBudget = ParserMemoryBudget()) {
        self.emitter = emitter
        self.budget = budget
        capacity = max(16, flowCapacity)
        // Zero-filled, paged in on use (0 is no flow's generation: the flow table skips it).
        generations = ZeroFilledMemory.allocate(UInt32.self, count: capacity)
        checked = ZeroFilledMemory.allocate(UInt8.self, count: capacity)
    }

    deinit {
        ZeroFilledMemory.deallocate(generations)
        ZeroFilledMemory.deallocate(checked)
    }

    /// Calls `body` with the TLS facts of the live (or just-ended) flow in `slot`, read where they are
    /// stored (`facts(slot:generation:)` copies them out); false when the flow is not TLS.
    public func withFacts(slot: Int32, generation: UInt32, _ body: (TLSFacts) -> Void) -> Bool {
        if store.withFacts(slot: slot, generation: generation, { body($0) }) != nil { return true }
        let s = Int(slot)
        guard s >= 0, s < capacity, generations[s] == generation, checked[s] & 4 != 0 else { return false }
        body(TLSFacts(generation: generation))
        return true
    }

    /// The TLS facts of the live (or just-ended) flow in `slot`, if it is TLS (a copy: `withFacts` reads them in place).
    public func facts(slot: Int32, generation: UInt32) -> TLSFacts? {
        var found: TLSFacts?
        _ = withFacts(slot: slot, generation: generation) { found = $0 }
        return found
    }

    // MARK: StreamConsumer

    public func wantsStream(_ flow: FlowRecord, slot: Int32, firstPayload: UnsafeRawBufferPointer, fromOriginator: Bool) -> Bool {
        store.purgeEnded()
        let s = Int(slot)
        guard s < capacity else { return false }
        generations[s] = flow.generation
        checked[s] = 0
        store.reset(slot: slot)
        return true
    }

    public func stream(_ data: UnsafeRawBufferPointer, fromOriginator: Bool, slot: Int32, flows table: FlowTable, at time: Timestamp) -> StreamVerdict {
        let s = Int(slot)
        guard s < capacity, !data.isEmpty else { return .more }
        let bit: UInt8 = fromOriginator ? 1 : 2
        if checked[s] & bit == 0 {
            checked[s] |= bit
            guard TLSHandshakeParser.looksLikeHandshakeRecord(data) else { return .doneWithDirection }
            checked[s] |= 4
        }
        guard checked[s] & 4 != 0 else { return .doneWithDirection }
        var pair = store.takeHeads(slot: slot)
        var parsedClient: ClientHello?
        var parsedServer: ServerHello?
        var flight: ServerFlight?
        let limit = TLSHandshakeParser.maxHandshake + 4096
        // Either hello may open either direction; the handshake type byte says which.
        let parse: (UnsafeRawBufferPointer) -> StreamHead.Step = { b in
            if b.count >= 6 && b[5] == 2 {
                // The server's direction is read on to its Certificate message; the hello counts as soon as it is whole.
                switch TLSHandshakeParser.serverFlight(b) {
                case .parsed(let f): parsedServer = f.hello; flight = f; return .done
                case .needMore:
                    if case .parsed(let h) = TLSHandshakeParser.serverHello(b) { parsedServer = h }
                    return .needMore
                case .invalid:
                    if case .parsed(let h) = TLSHandshakeParser.serverHello(b) { parsedServer = h }
                    return .invalid
                }
            }
            switch TLSHandshakeParser.clientHello(b) {
            case .parsed(let h): parsedClient = h; return .done
            case .needMore: return .needMore
            case .invalid: return .invalid
            }
        }
        let step = fromOriginator ? pair.0.feed(data, limit: limit, budget: budget, parse)
            : pair.1.feed(data, limit: limit, budget: budget, parse)
        if (parsedClient != nil || parsedServer != nil) && !store.contains(slot: slot) { store[slot] = TLSFacts(generation: generations[s]) }
        // Facts are set where they are stored, in one access each (`store[slot]!.x = …` per field would
        // look the entry up, and may copy it, per field).
        if let h = parsedClient {
            counters.clientHellos &+= 1
            let ja3 = TLSFingerprint.ja3(h), ja4 = TLSFingerprint.ja4(h)
            let serverName = store.update(slot: slot) { f in
                f.client = h
                f.ja3 = ja3
                f.ja4 = ja4
                return f.serverName
            } ?? nil
            if table[slot].appProtocol == 0 { table.setAppProtocol(AppProtocol.tls.rawValue, slot: slot) }
            if let e = emitter, e.hasFactObservers {
                e.publish(.tlsClientHello(serverName: serverName, ja3: ja3, ja4: ja4), flow: table[slot], at: time)
            }
        }
        if let h = parsedServer, !store.contains(slot: slot, where: { $0.server != nil }) {
            counters.serverHellos &+= 1
            let ja3s = TLSFingerprint.ja3s(h)
            store.update(slot: slot) { f in
                f.server = h
                f.ja3s = ja3s
            }
            if table[slot].appProtocol == 0 { table.setAppProtocol(AppProtocol.tls.rawValue, slot: slot) }
        }
        if let f = flight { certificate(f, slot: slot, flows: table, at: time) }
        if step == .invalid {
            counters.malformed &+= 1
            // A hello whose certificate did not follow in one piece within the bound.
            if store.contains(slot: slot, where: { $0.server != nil }) { counters.malformedCertificates &+= 1 }
        }
        if step == .needMore { store.keepHeads(pair, slot: slot) }
        return step == .needMore ? .more : .doneWithDirection
    }

    /// Reads the flight's certificate into the facts and publishes its hashes (certificate-hash indicators).
    func certificate(_ f: ServerFlight, slot: Int32, flows table: FlowTable, at time: Timestamp) {
        if f.certificateMalformed { counters.malformedCertificates &+= 1; return }
        guard let der = f.certificate else { return }
        guard let x = der.withUnsafeBytes({ X509Reader.parse($0) }) else { counters.malformedCertificates &+= 1; return }
        counters.certificates &+= 1
        store.update(slot: slot) { $0.certificate = x }
        if let e = emitter, e.hasFactObservers {
            e.publish(.tlsCertificate(sha256: x.sha256, sha1: x.sha1), flow: table[slot], at: time)
        }
    }

    public func gap(fromOriginator: Bool, slot: Int32, flows: FlowTable, at time: Timestamp) {
        store.dropHeads(slot: slot)
    }

    public func streamEnded(_ flow: FlowRecord, slot: Int32) { store.streamEnded(slot: slot) }

    // MARK: PacketAnalyzer (flow fields and housekeeping only; packets arrive through the reassembler)

    public func packet(_ context: PacketContext, flows: FlowTable) {}

    public func tick(_ now: Timestamp) { store.purgeEnded() }

    // Both read the stored facts in place (a flow without them has no hello to write).
    public func contributeFlowFields(_ flow: FlowRecord, slot: Int32, into w: inout JSONWriter) {
        store.withFacts(slot: slot, generation: flow.generation) { f in
            guard f.client != nil || f.server != nil else { return }
            TLSAnalyzer.write(f, into: &w)
        }
    }

    public func contributeVendorFields(_ flow: FlowRecord, slot: Int32, into w: inout JSONWriter) {
        store.withFacts(slot: slot, generation: flow.generation) { f in
            guard let alpn = f.client?.alpn, f.ja4 != nil || !alpn.isEmpty else { return }
            w.beginObject("tls"); w.beginObject("client")
            if let j = f.ja4 { w.field("ja4", j) }
            if !alpn.isEmpty {
                w.beginArray("alpn")
                for a in alpn { a.withUnsafeBytes { w.element(bytes: $0) } }
                w.endArray()
            }
            w.endObject(); w.endObject()
        }
    }

    /// ECS `tls.server.hash.*` (upper-case hex, as ECS asks) and `tls.server.x509.*`.
    static func writeCertificate(_ x: X509Summary, into w: inout JSONWriter) {
        w.beginObject("hash")
        w.field("sha1", x.sha1.uppercased())
        w.field("sha256", x.sha256.uppercased())
        w.endObject()
        w.beginObject("x509")
        w.beginObject("subject"); w.field("distinguished_name", x.subject); w.endObject()
        w.beginObject("issuer"); w.field("distinguished_name", x.issuer); w.endObject()
        w.field("serial_number", x.serialNumber)
        if let t = x.notBefore { w.field("not_before", epochSeconds: t) }
        if let t = x.notAfter { w.field("not_after", epochSeconds: t) }
        if !x.alternativeNames.isEmpty {
            w.beginArray("alternative_names")
            for n in x.alternativeNames { w.element(n) }
            w.endArray()
        }
        w.field("public_key_algorithm", x.publicKeyAlgorithm)
        if let n = x.publicKeySize { w.field("public_key_size", n) }
        w.endObject()
    }

    /// ECS `tls.*` for one flow (JA4 and the offered ALPN list, which ECS lacks, go to `spanwatch.tls.client.*`).
    public static func write(_ f: TLSFacts, into w: inout JSONWriter) {
        w.beginObject("tls")
        let version = f.server?.version ?? f.client?.highestVersion
        if let v = version, let name = TLSFingerprint.versionName(v) {
            w.field("version", name.version)
            w.field("version_protocol", name.protocol)
        }
        if let s = f.server {
            w.field("cipher", TLSFingerprint.cipherName(s.cipherSuite))
            if let a = s.alpn { a.withUnsafeBytes { w.field("next_protocol", bytes: $0) } }
        }
        if let c = f.client {
            w.beginObject("client")
            if let sni = c.serverName { sni.withUnsafeBytes { w.field("server_name", bytes: $0) } }
            if let j = f.ja3 { w.field("ja3", j) }
            w.endObject()
        }
        if f.ja3s != nil || f.certificate != nil {
            w.beginObject("server")
            if let j = f.ja3s { w.field("ja3s", j) }
            if let x = f.certificate { writeCertificate(x, into: &w) }
            w.endObject()
        }
        w.endObject()
    }
}
