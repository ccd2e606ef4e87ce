import Events
import PacketCore

/// Settings of the DNS analyser (config section `dns:`).
public struct DNSConfiguration: Sendable, Equatable {
    /// Passive-DNS `spanwatch.dns` events on or off; parsing still runs for detectors when off.
    public var eventsEnabled = true
    /// A query without a response after this long (packet clock) is reported as unanswered.
    public var transactionTimeout: Timestamp.Duration = .seconds(10)
    /// Queries waiting for a response, per worker; beyond it the oldest is reported unanswered early.
    public var maxPendingQueries = 16384
    /// The Public Suffix List file; nil means Debian's `publicsuffix` package location.
    public var publicSuffixListPath: String?
    /// Follow DNS over TCP (length-prefixed messages on the shared stream reassembler).
    public var tcpEnabled = true
    public init() {}
}

/// What detectors see of every DNS message. The buffers are valid only during the call.
public struct DNSMessageFacts {
    public var timestamp: Timestamp
    /// The querying side (the sender of a query, the receiver of a response) and the server.
    public var client: IPAddress
    public var server: IPAddress
    public var clientPort: UInt16
    public var serverPort: UInt16
    public var ipProtocol: UInt8
    public var appProtocol: AppProtocol
    public var isResponse: Bool
    public var id: UInt16
    /// Type of the first question, 0 when the message has none.
    public var queryType: UInt16
    public var responseCode: UInt16
    /// First question name as sent, without trailing dot; empty for the root or no question.
    public var name: UnsafeRawBufferPointer
    /// The same name lower-cased (ASCII), same length and offsets.
    public var lowercaseName: UnsafeRawBufferPointer
    /// Offset in `name` where the registered domain begins (-1: none, e.g. a bare public suffix or no PSL).
    public var registeredDomainStart: Int
    /// Offset in `name` where the public suffix begins (-1 when unknown).
    public var publicSuffixStart: Int
    public var messageLength: Int
    public var answerCount: Int
    /// RDATA bytes in the answer section.
    public var answerDataBytes: Int
    /// The data the answers of the asked-for unusual type carry (TXT, NULL, CNAME, MX …): a tunnel's downstream.
    public var answerPayload: DNSAnswerPayload
}

/// Receives every parsed DNS message (the tunnelling detector and any later DNS consumers).
///
/// Observers are driven by the DNS analyser alone, clock included, so they cost nothing on the
/// packets of other protocols (they are not in the pipeline's per-packet analyser list).
public protocol DNSMessageObserver: AnyObject {
    func dnsMessage(_ facts: DNSMessageFacts)
    /// The packet clock passed another second.
    func dnsTick(_ now: Timestamp)
}

extension DNSMessageObserver {
    public func dnsTick(_ now: Timestamp) {}
}

/// Counters of the DNS analyser.
public struct DNSCounters: Sendable, Equatable {
    public var messages: UInt64 = 0
    public var queries: UInt64 = 0
    public var responses: UInt64 = 0
    public var malformed: UInt64 = 0
    public var incomplete: UInt64 = 0
    public var tcpMessages: UInt64 = 0
    public var transactions: UInt64 = 0
    public var unanswered: UInt64 = 0
    public var responsesWithoutQuery: UInt64 = 0
    public var pendingForcedOut: UInt64 = 0
    public var retransmittedQueries: UInt64 = 0
    public init() {}
}

extension EventDescriptor {
    /// `spanwatch.dns`: one passive-DNS transaction (query and response, or a query left unanswered).
    public static let dns = EventDescriptor(kind: .event, categories: ["network"], types: ["protocol", "info"], dataset: "spanwatch.dns")
}

/// Passive DNS: parses DNS over UDP and TCP and writes one `spanwatch.dns` event per transaction.
///
/// Flows are chosen once, on their first packet: UDP or TCP port 53 (DNS), 5353 (mDNS), 5355 (LLMNR),
/// or content that parses as a well-formed query (DNS on other ports). Other flows cost one side-table
/// read per packet. A query is held in a bounded pending table until its response (same flow, same
/// DNS id) arrives or the timeout passes on the packet clock; the event is then written straight from
/// the response's bytes. Parsing allocates nothing; only writing an event touches (reused) buffers.
/// Observers (detectors) see every message, whether events are on or not.
public final class DNSAnalyzer: PacketAnalyzer, StreamConsumer {
    public let name = "dns"
    public let configuration: DNSConfiguration
    public let publicSuffixList: PublicSuffixList?
    let emitter: EventEmitter
    public private(set) var counters = DNSCounters()
    public private(set) var observers: [any DNSMessageObserver] = []

    struct SlotState {
        var generation: UInt32 = 0
        /// 0 undecided, 1 not DNS, 2 DNS.
        var decision: UInt8 = 0
        var app: UInt8 = 0
    }
    let capacity: Int
    let slots: UnsafeMutablePointer<SlotState>
    let pending: DNSPendingTable
    /// TCP framing state, only for flows carrying DNS over TCP (rare): index slot*2+direction.
    var tcpBuffers: [Int: ParserBuffer] = [:]
    /// The worker's bound on those buffers (shared with its other stream parsers).
    let budget: ParserMemoryBudget
    /// Scratch for names (original and lower case) and rendered text.
    let nameBuffer: UnsafeMutableRawBufferPointer
    let lowerBuffer: UnsafeMutableRawBufferPointer
    let pendingNameBuffer: UnsafeMutableRawBufferPointer
    let pendingLowerBuffer: UnsafeMutableRawBufferPointer
    var scratch: [UInt8] = []
    var answerIPs: [IPAddress] = []
    var rawScratch: [UInt8] = []

    public init(flowCapacity: Int, configuration: DNSConfiguration, emitter: EventEmitter, publicSuffixList: PublicSuffixList?,
                budget: ParserMemoryBudget = ParserMemoryBudget()) {
        self.configuration = configuration
        self.budget = budget
        self.emitter = emitter
        self.publicSuffixList = publicSuffixList
        capacity = max(16, flowCapacity)
        // Zero-filled, paged in on use: an all-zero `SlotState` is "undecided, no flow".
        slots = ZeroFilledMemory.allocate(SlotState.self, count: capacity)
        pending = DNSPendingTable(capacity: configuration.maxPendingQueries)
        nameBuffer = .allocate(byteCount: 256, alignment: 8)
        lowerBuffer = .allocate(byteCount: 256, alignment: 8)
        pendingNameBuffer = .allocate(byteCount: 256, alignment: 8)
        pendingLowerBuffer = .allocate(byteCount: 256, alignment: 8)
        scratch.reserveCapacity(70_000)
        answerIPs.reserveCapacity(64)
    }

    deinit {
        ZeroFilledMemory.deallocate(slots)
        nameBuffer.deallocate()
        lowerBuffer.deallocate()
        pendingNameBuffer.deallocate()
        pendingLowerBuffer.deallocate()
    }

    public func addObserver(_ o: any DNSMessageObserver) { observers.append(o) }

    /// The application protocol a port pair suggests, if any.
    @inlinable
    static func appProtocol(_ a: UInt16, _ b: UInt16) -> AppProtocol? {
        if a == 53 || b == 53 { return .dns }
        if a == 5353 || b == 5353 { return .mdns }
        if a == 5355 || b == 5355 { return .llmnr }
        return nil
    }

    /// A first payload that is DNS on a port that does not say so: a complete, plain query, optionally
    /// followed by DNSCrypt-style padding (0x80 then zeros), as DNSCrypt certificate lookups send.
    static func looksLikeQuery(_ payload: UnsafeRawBufferPointer) -> Bool {
        guard payload.count >= 17, payload.count <= 4096 else { return false }
        guard let m = DNSMessage.parse(payload) else { return false }
        let h = m.header
        guard !h.isResponse && h.opcode == 0 && h.questionCount == 1 && h.answerCount == 0 && h.authorityCount == 0
            && h.additionalCount <= 1 && !h.zBit && h.rcode == 0 && m.isComplete,
            m.firstQuestion.map({ $0.qclass == 1 }) ?? false else { return false }
        if m.end == payload.count { return true }
        guard payload[m.end] == 0x80 else { return false }
        for i in (m.end + 1)..<payload.count where payload[i] != 0 { return false }
        return true
    }

    /// Ports whose protocols share DNS's wire format but are not DNS (NetBIOS name and datagram service).
    @inlinable
    static func isLookalikePort(_ a: UInt16, _ b: UInt16) -> Bool {
        a == 137 || b == 137 || a == 138 || b == 138
    }

    // MARK: UDP

    public var packetTransports: PacketTransports { .udp }

    public func packet(_ context: PacketContext, flows: FlowTable) {
        guard context.packet.ipProtocol == IPProtocol.udp, context.packet.hasPorts, context.packet.fragment != 2 else { return }
        let s = Int(context.slot)
        guard s < capacity else { return }
        let generation = flows.generation(slot: context.slot)
        if slots[s].generation != generation || slots[s].decision == 0 {
            decideUDP(context, flows: flows, generation: generation)
        }
        guard slots[s].decision == 2 else { return }
        let payload = context.payload
        guard !payload.isEmpty else { return }
        message(payload, time: context.packet.timestamp, slot: context.slot, fromOriginator: context.fromOriginator, flows: flows)
    }

    @inline(never)
    func decideUDP(_ context: PacketContext, flows: FlowTable, generation: UInt32) {
        let s = Int(context.slot)
        let p = context.packet
        var state = SlotState(generation: generation, decision: 1, app: 0)
        if let app = DNSAnalyzer.appProtocol(p.sourcePort, p.destinationPort) {
            state.decision = 2
            state.app = app.rawValue
        } else if context.isNewFlow && !DNSAnalyzer.isLookalikePort(p.sourcePort, p.destinationPort) && DNSAnalyzer.looksLikeQuery(context.payload) {
            state.decision = 2
            state.app = AppProtocol.dns.rawValue
        }
        slots[s] = state
        if state.decision == 2 && flows[context.slot].appProtocol == 0 { flows.setAppProtocol(state.app, slot: context.slot) }
    }

    // MARK: TCP (length-prefixed messages over the shared reassembler)

    public func wantsStream(_ flow: FlowRecord, slot: Int32, firstPayload: UnsafeRawBufferPointer, fromOriginator: Bool) -> Bool {
        guard configuration.tcpEnabled, Int(slot) < capacity else { return false }
        var app = DNSAnalyzer.appProtocol(flow.key.aPort, flow.key.bPort)
        if app == nil, fromOriginator, firstPayload.count >= 19 {
            var c = ByteCursor(firstPayload)
            if let l = c.u16(), Int(l) == firstPayload.count - 2,
               DNSAnalyzer.looksLikeQuery(UnsafeRawBufferPointer(rebasing: firstPayload[2...])) { app = .dns }
        }
        guard let app, app != .mdns else { return false }
        slots[Int(slot)] = SlotState(generation: flow.generation, decision: 2, app: app.rawValue)
        tcpBuffers[Int(slot) * 2] = nil
        tcpBuffers[Int(slot) * 2 + 1] = nil
        return true
    }

    public func stream(_ data: UnsafeRawBufferPointer, fromOriginator: Bool, slot: Int32, flows: FlowTable, at time: Timestamp) -> StreamVerdict {
        if flows[slot].appProtocol == 0 { flows.setAppProtocol(slots[Int(slot)].app, slot: slot) }
        let key = Int(slot) * 2 + (fromOriginator ? 0 : 1)
        var framer = DNSTCPFramer(buffer: tcpBuffers.removeValue(forKey: key))
        let ok = framer.feed(data, budget: budget) { msg in
            counters.tcpMessages &+= 1
            message(msg, time: time, slot: slot, fromOriginator: fromOriginator, flows: flows)
        }
        if let b = framer.buffer { tcpBuffers[key] = b }
        return ok ? .more : .doneWithDirection
    }

    public func gap(fromOriginator: Bool, slot: Int32, flows: FlowTable, at time: Timestamp) {
        tcpBuffers[Int(slot) * 2 + (fromOriginator ? 0 : 1)] = nil
    }

    public func streamEnded(_ flow: FlowRecord, slot: Int32) {
        tcpBuffers[Int(slot) * 2] = nil
        tcpBuffers[Int(slot) * 2 + 1] = nil
    }

    // MARK: Messages

    /// One DNS message from a flow (a UDP payload or one framed TCP message).
    func message(_ payload: UnsafeRawBufferPointer, time: Timestamp, slot: Int32, fromOriginator: Bool, flows: FlowTable) {
        counters.messages &+= 1
        guard let m = DNSMessage.parse(payload) else { counters.malformed &+= 1; return }
        if !m.isComplete { counters.incomplete &+= 1 }
        let flow = flows[slot]
        let senderIsA = fromOriginator == flow.originatorIsA
        let isResponse = m.header.isResponse
        let clientIsA = isResponse ? !senderIsA : senderIsA
        if isResponse { counters.responses &+= 1 } else { counters.queries &+= 1 }

        // First question name, as sent and lower-cased, plus where its registered domain starts.
        var info = NameInfo(length: -1, suffix: -1, registered: -1)
        var qtype: UInt16 = 0
        if let q = m.firstQuestion, let r = DNSName.read(payload, at: q.nameOffset, into: nameBuffer) {
            qtype = q.type
            info = prepareName(length: r.length == 1 && nameBuffer[0] == 0x2E ? 0 : r.length, name: nameBuffer, lower: lowerBuffer)
        }
        let nameLength = max(0, info.length)
        let suffixStart = info.suffix, registeredStart = info.registered

        if !observers.isEmpty {
            let key = flow.key
            let facts = DNSMessageFacts(
                timestamp: time, client: clientIsA ? key.a : key.b, server: clientIsA ? key.b : key.a,
                clientPort: clientIsA ? key.aPort : key.bPort, serverPort: clientIsA ? key.bPort : key.aPort,
                ipProtocol: key.ipProtocol, appProtocol: AppProtocol(rawValue: slots[Int(slot)].app) ?? .dns,
                isResponse: isResponse, id: m.header.id, queryType: qtype, responseCode: m.responseCode,
                name: UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(nameBuffer)[..<nameLength]),
                lowercaseName: UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(lowerBuffer)[..<nameLength]),
                registeredDomainStart: registeredStart, publicSuffixStart: suffixStart, messageLength: payload.count,
                answerCount: Int(m.header.answerCount), answerDataBytes: m.answerDataBytes,
                answerPayload: isResponse ? DNSAnswerPayload.measure(m, questionType: qtype) : DNSAnswerPayload())
            for o in observers { o.dnsMessage(facts) }
        }

        if emitter.hasFactObservers && nameLength > 0 { publishFacts(m, payload: payload, nameLength: nameLength, flow: flow, time: time) }

        guard configuration.eventsEnabled else { return }
        let generation = flow.generation
        if !isResponse {
            if pending.find(slot: slot, generation: generation, id: m.header.id) != nil {
                counters.retransmittedQueries &+= 1
                return
            }
            let i = pending.reserve(slot: slot, generation: generation, id: m.header.id) { self.forceOut($0) }
            var e = DNSPendingTable.Entry()
            e.slot = slot
            e.generation = generation
            e.id = m.header.id
            e.flags = m.header.flags
            e.qtype = qtype
            e.qclass = m.firstQuestion?.qclass ?? 0
            e.ipProtocol = flow.key.ipProtocol
            e.appProtocol = slots[Int(slot)].app
            e.clientIsA = clientIsA
            e.key = flow.key
            e.time = time
            pending.insert(i, e, name: info.length >= 0 ? UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(nameBuffer)[..<nameLength]) : nil)
            return
        }
        let q = pending.find(slot: slot, generation: generation, id: m.header.id)
        if q == nil { counters.responsesWithoutQuery &+= 1 }
        counters.transactions &+= 1
        if info.length < 0, let q, pending.entries[q].nameLength >= 0 {
            // A response without a question section: the query's question names the transaction.
            let stored = pending.name(q)
            nameBuffer.copyMemory(from: stored)
            info = prepareName(length: stored.count, name: nameBuffer, lower: lowerBuffer)
        }
        emitTransaction(query: q, response: m, responseTime: time, key: flow.key, clientIsA: clientIsA,
                        app: slots[Int(slot)].app, name: info, nameBuffer: nameBuffer, lowerBuffer: lowerBuffer)
        if let q { pending.remove(q) }
    }

    /// Offers the question name and the addresses answers resolved it to (threat-intelligence matching).
    /// Only when someone listens: building the strings allocates.
    @inline(never)
    func publishFacts(_ m: DNSMessage, payload: UnsafeRawBufferPointer, nameLength: Int, flow: FlowRecord, time: Timestamp) {
        let name = String(decoding: UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(lowerBuffer)[..<nameLength]), as: UTF8.self)
        guard m.header.isResponse else {
            emitter.publish(.dnsQuery(name: name), flow: flow, at: time)
            return
        }
        var answered = false
        for r in m.records where r.section == .answer {
            if r.type == DNSRecordType.a && r.rdataLength == 4 {
                emitter.publish(.dnsAnswer(name: name, address: IPAddress.load(payload, at: r.rdataOffset, ipv6: false)), flow: flow, at: time)
                answered = true
            } else if r.type == DNSRecordType.aaaa && r.rdataLength == 16 {
                emitter.publish(.dnsAnswer(name: name, address: IPAddress.load(payload, at: r.rdataOffset, ipv6: true)), flow: flow, at: time)
                answered = true
            }
        }
        // A response whose query was not captured still names the domain.
        if !answered { emitter.publish(.dnsAnswer(name: name, address: nil), flow: flow, at: time) }
    }

    struct NameInfo {
        /// -1: no question.
        var length: Int
        var suffix: Int
        var registered: Int
    }

    /// Fills `lower` from the `length` bytes in `name` and splits the name with the PSL.
    func prepareName(length: Int, name: UnsafeMutableRawBufferPointer, lower: UnsafeMutableRawBufferPointer) -> NameInfo {
        var info = NameInfo(length: length, suffix: -1, registered: -1)
        for i in 0..<length {
            let b = name[i]
            lower[i] = b >= 0x41 && b <= 0x5A ? b | 0x20 : b
        }
        if length > 0, let psl = publicSuffixList,
           let split = psl.split(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(lower)[..<length])) {
            info.suffix = split.suffix
            info.registered = split.registered ?? -1
        }
        return info
    }

    func forceOut(_ i: Int) {
        counters.pendingForcedOut &+= 1
        reportUnanswered(i)
    }

    func reportUnanswered(_ i: Int) {
        counters.unanswered &+= 1
        counters.transactions &+= 1
        let e = pending.entries[i]
        var info = NameInfo(length: -1, suffix: -1, registered: -1)
        if e.nameLength >= 0 {
            // Own buffers: this can run in the middle of handling another message.
            let stored = pending.name(i)
            pendingNameBuffer.copyMemory(from: stored)
            info = prepareName(length: stored.count, name: pendingNameBuffer, lower: pendingLowerBuffer)
        }
        emitTransaction(query: i, response: nil, responseTime: nil, key: e.key, clientIsA: e.clientIsA, app: e.appProtocol,
                        name: info, nameBuffer: pendingNameBuffer, lowerBuffer: pendingLowerBuffer)
        pending.remove(i)
    }

    public func tick(_ now: Timestamp) {
        for o in observers { o.dnsTick(now) }
        guard pending.live > 0 else { return }
        let deadline = Timestamp(nanoseconds: now.nanoseconds &- configuration.transactionTimeout.nanoseconds)
        pending.expire(before: deadline) { self.reportUnanswered($0) }
    }

    public func finish(_ now: Timestamp) {
        pending.expire(before: Timestamp(nanoseconds: .max)) { self.reportUnanswered($0) }
    }

    public func flowEnded(_ flow: FlowRecord, reason: FlowEndReason, slot: Int32) {
        guard reason != .activeTimeout, flow.key.ipProtocol == IPProtocol.tcp else { return }
        tcpBuffers[Int(slot) * 2] = nil
        tcpBuffers[Int(slot) * 2 + 1] = nil
    }

    // MARK: Events

    /// Writes one `spanwatch.dns` event. The question comes from the response when it has one, else from
    /// the stored query; `nameBuffer`/`lowerBuffer` hold that question's name (`nameLength` < 0: none).
    func emitTransaction(query: Int?, response: DNSMessage?, responseTime: Timestamp?, key: FlowKey, clientIsA: Bool, app: UInt8,
                         name info: NameInfo, nameBuffer: UnsafeMutableRawBufferPointer, lowerBuffer: UnsafeMutableRawBufferPointer) {
        let q = query.map { pending.entries[$0] }
        let time = q?.time ?? responseTime ?? .zero
        let client = clientIsA ? key.a : key.b, server = clientIsA ? key.b : key.a
        let clientPort = clientIsA ? key.aPort : key.bPort, serverPort = clientIsA ? key.bPort : key.aPort
        let question = response?.firstQuestion
        let hasQuestion = info.length >= 0
        let suffixStart = info.suffix, registeredStart = info.registered
        let qtype = question?.type ?? q?.qtype ?? 0
        let qclass = question?.qclass ?? q?.qclass ?? 0
        let id = response?.header.id ?? q?.id ?? 0
        let flags = response?.header.flags ?? q?.flags ?? 0
        let status: StaticString = response == nil ? "unanswered" : (q == nil ? "response_only" : "answered")
        let nameLen = max(0, info.length)

        emitter.emit(.dns, at: time, sourceIP: client, eventFields: { w in
            if let q, let rt = responseTime {
                w.field("duration", rt.nanoseconds &- q.time.nanoseconds)
            }
            w.field("outcome", response == nil ? "unknown" : (response!.header.rcode == 0 ? "success" : "failure"))
        }, body: { w in
            w.beginObject("network")
            emitter.writeCommunityID(key, into: &w)
            if let t = IPProtocol.name(key.ipProtocol) { w.field("transport", t) }
            w.field("protocol", (AppProtocol(rawValue: app) ?? .dns).name)
            w.field("iana_number", key.ipProtocol == IPProtocol.tcp ? "6" : "17")
            w.field("type", key.isIPv6 ? "ipv6" : "ipv4")
            w.field("direction", emitter.direction(from: client, to: server))
            w.endObject()
            w.beginObject("source"); w.field("ip", client); w.field("port", Int(clientPort)); w.endObject()
            w.beginObject("destination"); w.field("ip", server); w.field("port", Int(serverPort)); w.endObject()
            w.beginObject("client"); w.field("ip", client); w.endObject()
            w.beginObject("server"); w.field("ip", server); w.endObject()

            w.beginObject("dns")
            rawField(&w, "id") { DNSText.appendDecimal(UInt64(id), to: &$0) }
            w.field("type", response == nil ? "query" : "answer")
            let opcode = UInt8(truncatingIfNeeded: (flags >> 11) & 0xF)
            if let o = DNSOpcode.name(opcode) { w.field("op_code", o) } else { rawField(&w, "op_code") { DNSText.appendDecimal(UInt64(opcode), to: &$0) } }
            w.beginArray("header_flags")
            if flags & 0x0400 != 0 { w.element("AA") }
            if flags & 0x0200 != 0 { w.element("TC") }
            if flags & 0x0100 != 0 { w.element("RD") }
            if flags & 0x0080 != 0 { w.element("RA") }
            if flags & 0x0020 != 0 { w.element("AD") }
            if flags & 0x0010 != 0 { w.element("CD") }
            if response?.edns?.dnssecOK == true { w.element("DO") }
            w.endArray()
            if let r = response {
                let rc = r.responseCode
                if let n = DNSResponseCode.name(rc) { w.field("response_code", n) } else { rawField(&w, "response_code") { DNSText.appendDecimal(UInt64(rc), to: &$0) } }
            }
            if hasQuestion {
                w.beginObject("question")
                writeName("name", UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(nameBuffer)[..<nameLen]), root: nameLen == 0, into: &w)
                rawField(&w, "type") { DNSRecordType.appendName(qtype, to: &$0) }
                rawField(&w, "class") { DNSClass.appendName(qclass, to: &$0) }
                if suffixStart >= 0 {
                    let lower = UnsafeRawBufferPointer(lowerBuffer)
                    if registeredStart >= 0 {
                        w.field("registered_domain", bytes: UnsafeRawBufferPointer(rebasing: lower[registeredStart..<nameLen]))
                        if registeredStart > 1 {
                            writeName("subdomain", UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(nameBuffer)[..<(registeredStart - 1)]), root: false, into: &w)
                        }
                    }
                    w.field("top_level_domain", bytes: UnsafeRawBufferPointer(rebasing: lower[suffixStart..<nameLen]))
                }
                w.endObject()
            }
            if let r = response {
                answerIPs.removeAll(keepingCapacity: true)
                var any = false
                for rr in r.records where rr.section == .answer {
                    if !any { w.beginArray("answers"); any = true }
                    w.beginObject()
                    scratch.removeAll(keepingCapacity: true)
                    DNSText.appendName(r.bytes, at: rr.nameOffset, to: &scratch)
                    scratch.withUnsafeBytes { writeName("name", $0, root: false, into: &w) }
                    rawField(&w, "type") { DNSRecordType.appendName(rr.type, to: &$0) }
                    rawField(&w, "class") { DNSClass.appendName(rr.rrclass, to: &$0) }
                    w.field("ttl", Int(rr.ttl))
                    scratch.removeAll(keepingCapacity: true)
                    DNSText.appendRData(rr, in: r.bytes, to: &scratch)
                    scratch.withUnsafeBytes { w.field("data", bytes: $0) }
                    w.endObject()
                    if (rr.type == DNSRecordType.a && rr.rdataLength == 4) || (rr.type == DNSRecordType.aaaa && rr.rdataLength == 16),
                       answerIPs.count < 64,
                       let ip = DNSText.ipAddress(UnsafeRawBufferPointer(rebasing: r.bytes[rr.rdataOffset..<(rr.rdataOffset + rr.rdataLength)])) {
                        answerIPs.append(ip)
                    }
                }
                if any { w.endArray() }
                if !answerIPs.isEmpty {
                    w.beginArray("resolved_ip")
                    for ip in answerIPs { w.element(ip) }
                    w.endArray()
                }
            }
            w.endObject()
            // related.ip: both ends and every address the answer resolved to (pivot from an address to the name).
            w.beginObject("related"); w.beginArray("ip")
            w.element(client)
            if server != client { w.element(server) }
            if response != nil { for ip in answerIPs where ip != client && ip != server { w.element(ip) } }
            w.endArray(); w.endObject()

            w.beginObject("spanwatch"); w.beginObject("dns")
            w.field("status", status)
            if let r = response {
                w.field("answer_count", Int(r.header.answerCount))
                w.field("authority_count", Int(r.header.authorityCount))
                w.field("additional_count", Int(r.header.additionalCount))
                if !r.isComplete { w.field("incomplete", true) }
                if let e = r.edns { w.field("edns_udp_size", Int(e.udpPayloadSize)) }
            }
            w.endObject(); w.endObject()
        })
    }

    /// A string field rendered by `render` into a reused scratch buffer (numbers, type names): no escaping
    /// needed, nothing allocated.
    func rawField(_ w: inout JSONWriter, _ key: StaticString, _ render: (inout [UInt8]) -> Void) {
        rawScratch.removeAll(keepingCapacity: true)
        render(&rawScratch)
        rawScratch.withUnsafeBytes { b in w.field(key, rawString: { $0.append(bytes: b) }) }
    }

    /// A name as ECS asks: bytes outside printable ASCII as `\DDD` (decimal), the root as `.`.
    func writeName(_ key: StaticString, _ name: UnsafeRawBufferPointer, root: Bool, into w: inout JSONWriter) {
        if root {
            w.field(key, ".")
            return
        }
        var plain = true
        for b in name where b < 0x20 || b > 0x7E { plain = false; break }
        if plain { w.field(key, bytes: name); return }
        var text: [UInt8] = []
        text.reserveCapacity(name.count * 4)
        for b in name {
            if b < 0x20 || b > 0x7E {
                text.append(0x5C)
                text.append(0x30 + b / 100); text.append(0x30 + (b / 10) % 10); text.append(0x30 + b % 10)
            } else {
                text.append(b)
            }
        }
        text.withUnsafeBytes { w.field(key, bytes: $0) }
    }
}

/// Splits a TCP byte stream of one direction into DNS messages (RFC 1035 §4.2.2: a two-byte length,
/// then the message). Complete messages inside `data` are handed over without copying; only a message
/// cut across segments is buffered (at most 65,537 bytes, charged to the worker's `ParserMemoryBudget`).
struct DNSTCPFramer {
    var buffer: ParserBuffer?

    /// False when the budget could not hold a cut message: framing of this direction gives up.
    mutating func feed(_ data: UnsafeRawBufferPointer, budget: ParserMemoryBudget, _ deliver: (UnsafeRawBufferPointer) -> Void) -> Bool {
        var i = 0
        let n = data.count
        while i < n {
            guard var b = buffer else {
                if n - i >= 2 {
                    let len = Int(data[i]) << 8 | Int(data[i + 1])
                    if n - i - 2 >= len {
                        deliver(UnsafeRawBufferPointer(rebasing: data[(i + 2)..<(i + 2 + len)]))
                        i += 2 + len
                        continue
                    }
                }
                buffer = ParserBuffer(budget: budget, holding: UnsafeRawBufferPointer(rebasing: data[i...]))
                return buffer != nil
            }
            buffer = nil
            // Complete the length prefix first, then the message.
            if b.count < 2 {
                guard b.append(UnsafeRawBufferPointer(rebasing: data[i..<(i + 1)])) else { return false }
                i += 1
                buffer = b
                continue
            }
            let want = 2 + (Int(b[0]) << 8 | Int(b[1]))
            let take = min(want - b.count, n - i)
            guard b.append(UnsafeRawBufferPointer(rebasing: data[i..<(i + take)])) else { return false }
            i += take
            if b.count == want {
                b.withUnsafeBytes { deliver(UnsafeRawBufferPointer(rebasing: $0[2...])) }
            } else {
                buffer = b
            }
        }
        return true
    }
}
