import Events
import PacketCore

/// HTTP facts of one flow: its first request and first response, and how many there were.
public struct HTTPFacts: SlotFacts, Sendable {
    public var generation: UInt32
    public var request: HTTPRequestHead?
    public var response: HTTPResponseHead?
    public var requests: UInt64 = 0
    public var responses: UInt64 = 0

    public init(generation: UInt32, request: HTTPRequestHead? = nil, response: HTTPResponseHead? = nil) {
        self.generation = generation
        self.request = request
        self.response = response
    }

    /// The Host header without a port, lower-cased (the key beaconing uses for (source, host) pairs).
    public var hostName: String? { request.flatMap(Self.hostName) }

    /// Counts a request, keeping the first; true for the first. (In place: reading the facts out of the
    /// store to test them would copy every head they hold.)
    mutating func noteRequest(_ r: HTTPRequestHead) -> Bool {
        requests &+= 1
        guard request == nil else { return false }
        request = r
        return true
    }

    /// Counts a response, keeping the first.
    mutating func noteResponse(_ r: HTTPResponseHead) {
        responses &+= 1
        if response == nil { response = r }
    }

    public static func hostName(_ r: HTTPRequestHead) -> String? {
        guard let h = r.host, !h.isEmpty else { return nil }
        var end = h.count
        if h.first != 0x5b, let colon = h.lastIndex(of: 58) { end = colon }  // not an IPv6 literal
        // Lower-cased straight into the string's storage, validated and repaired as `String(decoding:)` does.
        return h.withUnsafeBufferPointer { b in
            String(unsafeUninitializedCapacity: end) { out in
                for i in 0..<end { out[i] = b[i] >= 0x41 && b[i] <= 0x5a ? b[i] | 0x20 : b[i] }
                return end
            }
        }
    }
}

public struct HTTPCounters: Sendable, Equatable {
    public var requests: UInt64 = 0
    public var responses: UInt64 = 0
    public var malformed: UInt64 = 0
    /// `spanwatch.http` events written.
    public var transactions: UInt64 = 0
    /// Requests reported without a response (the flow ended or too many were waiting).
    public var unanswered: UInt64 = 0
    /// Responses for which no request was seen.
    public var responsesWithoutRequest: UInt64 = 0
    /// Requests reported early because `maxPending` requests were already waiting.
    public var pendingOverflow: UInt64 = 0
    /// Bodies cut by a gap or the end of the flow before their framing said they were complete.
    public var truncatedBodies: UInt64 = 0
    /// Directions that realigned on a head after a gap.
    public var resynced: UInt64 = 0
    public init() {}
}

extension EventDescriptor {
    /// `spanwatch.http`: one request with its response (or a request left unanswered).
    public static let http = EventDescriptor(kind: .event, categories: ["network", "web"], types: ["protocol", "info"], dataset: "spanwatch.http")
    /// `spanwatch.file`: one file transferred over HTTP or SMB, with its hashes.
    public static let file = EventDescriptor(kind: .event, categories: ["file", "network"], types: ["info"], dataset: "spanwatch.file")
}

/// Reads every HTTP/1.x request and response of flows that start with a request, on any port.
///
/// Chosen by content like the TLS analyser, so HTTP on 8001 or 22 is parsed as HTTP on 80. Each
/// direction alternates between a head (gathered over segments only when split, bounded by
/// `HTTPParser.maxHead` and the worker's `ParserMemoryBudget`) and a body walked in place by
/// `HTTPBodyReader` (Content-Length, chunked, or until close), so keep-alive and pipelined exchanges,
/// 100-continue and bodiless HEAD/204/304 responses are all followed. Requests wait in order for their
/// responses (at most `maxPending`, each charged to the budget); every pair becomes a `spanwatch.http`
/// event and every request an intel fact; bodies are hashed as `spanwatch.file` events when files are on.
/// The flow event keeps the first exchange and the counts.
public final class HTTPAnalyzer: StreamConsumer, PacketAnalyzer, StreamStatistics {
    public let name = "http"
    public internal(set) var counters = HTTPCounters()
    var store = FlowFactStore<HTTPFacts>()
    var connections: [Int32: HTTPConnection] = [:]

    /// Where transactions, files and request facts go, if anywhere.
    let emitter: EventEmitter?
    /// The worker's bound on head buffers and per-connection state (shared with its other stream parsers).
    let budget: ParserMemoryBudget
    /// File hashing bounds and counters (nil: files off).
    public let files: FileHashing?
    /// Write `spanwatch.http` events (the facts and flow summary are kept either way).
    public let transactionEvents: Bool
    /// Told of every request head (beaconing measured per request inside keep-alive connections).
    public weak var requestObserver: (any HTTPRequestObserver)?

    /// Requests that may wait for responses on one connection (pipelining depth); more are reported unanswered.
    static let maxPending = 64
    /// What a connection's own state costs against the budget (object, two digest sets, bookkeeping).
    static let connectionCost = 1024

    public init(emitter: EventEmitter? = nil, budget: ParserMemoryBudget = ParserMemoryBudget(),
                files: FileHashing? = nil, transactionEvents: Bool = true) {
        self.emitter = emitter
        self.budget = budget
        self.files = files
        self.transactionEvents = transactionEvents
    }

    public func facts(slot: Int32, generation: UInt32) -> HTTPFacts? { store.facts(slot: slot, generation: generation) }

    /// Calls `body` with the HTTP facts of the live (or just-ended) flow in `slot`, read where they are
    /// stored (`facts(slot:generation:)` copies both heads out); false when the flow is not HTTP.
    public func withFacts(slot: Int32, generation: UInt32, _ body: (HTTPFacts) -> Void) -> Bool {
        store.withFacts(slot: slot, generation: generation) { body($0) } != nil
    }

    public func wantsStream(_ flow: FlowRecord, slot: Int32, firstPayload: UnsafeRawBufferPointer, fromOriginator: Bool) -> Bool {
        store.purgeEnded()
        store.reset(slot: slot)
        if let old = connections.removeValue(forKey: slot) { release(old) }
        guard fromOriginator, HTTPParser.looksLikeRequest(firstPayload) else { return false }
        guard budget.charge(Self.connectionCost) else { return false }
        store[slot] = HTTPFacts(generation: flow.generation)
        connections[slot] = HTTPConnection(generation: flow.generation, charged: Self.connectionCost)
        return true
    }

    public func stream(_ data: UnsafeRawBufferPointer, fromOriginator: Bool, slot: Int32, flows table: FlowTable, at time: Timestamp) -> StreamVerdict {
        guard let c = connections[slot], c.generation == table.generation(slot: slot), store.contains(slot: slot) else { return .doneWithFlow }
        var rest = data
        if fromOriginator ? c.orig.resync : c.resp.resync {
            // Realign after a gap where a segment starts with a head, as tshark does; until then skip.
            guard fromOriginator ? HTTPParser.looksLikeRequest(data) : HTTPParser.looksLikeResponse(data) else { return .more }
            if fromOriginator { c.orig.resync = false } else { c.resp.resync = false }
            counters.resynced &+= 1
        }
        while !rest.isEmpty {
            let stopped = fromOriginator ? c.orig.stopped : c.resp.stopped
            if stopped { break }
            let inBody = fromOriginator ? c.orig.body != nil : c.resp.body != nil
            if inBody {
                let used = body(rest, c, fromOriginator: fromOriginator, slot: slot, table: table, at: time)
                rest = UnsafeRawBufferPointer(rebasing: rest[used...])
                continue
            }
            // Blank lines between messages (after a POST body, some clients send an extra CRLF).
            if (fromOriginator ? c.orig.partial : c.resp.partial) == nil {
                var skip = 0
                while skip < rest.count, rest[skip] == 13 || rest[skip] == 10 { skip += 1 }
                rest = UnsafeRawBufferPointer(rebasing: rest[skip...])
                if rest.isEmpty { break }
            }
            if fromOriginator {
                guard case .head(let r, let used) = readHead(rest, &c.orig, parse: HTTPParser.request, length: { $0.headLength }) else { break }
                request(r, c, slot: slot, table: table, at: time)
                rest = UnsafeRawBufferPointer(rebasing: rest[used...])
            } else {
                guard case .head(let r, let used) = readHead(rest, &c.resp, parse: HTTPParser.response, length: { $0.headLength }) else { break }
                response(r, c, slot: slot, table: table, at: time)
                rest = UnsafeRawBufferPointer(rebasing: rest[used...])
            }
        }
        if c.orig.stopped && c.resp.stopped { return .doneWithFlow }
        return (fromOriginator ? c.orig.stopped : c.resp.stopped) ? .doneWithDirection : .more
    }

    enum HeadRead<T> {
        /// A whole head, which took `used` bytes of the data offered.
        case head(T, used: Int)
        /// All the data was taken: kept for more, or the direction stopped.
        case taken
    }

    /// Gathers a head from `data`, continuing a partial one.
    func readHead<T>(_ data: UnsafeRawBufferPointer, _ d: inout HTTPDirectionState,
                     parse: (UnsafeRawBufferPointer) -> HTTPParser.Outcome<T>, length: (T) -> Int) -> HeadRead<T> {
        guard var held = d.partial else {
            switch parse(data) {
            case .parsed(let h): return .head(h, used: min(data.count, length(h)))
            case .invalid: malformed(&d); return .taken
            case .needMore:
                guard data.count < HTTPParser.maxHead else { malformed(&d); return .taken }
                guard let b = ParserBuffer(budget: budget, holding: data) else { d.stopped = true; return .taken }
                d.partial = b
                return .taken
            }
        }
        d.partial = nil
        let before = held.count
        let take = min(data.count, HTTPParser.maxHead - before)
        guard take > 0 else { malformed(&d); return .taken }
        guard held.append(UnsafeRawBufferPointer(rebasing: data[..<take])) else { d.stopped = true; return .taken }
        switch held.withUnsafeBytes({ parse($0) }) {
        case .parsed(let h):
            // The head ended inside `data`: the rest of `data` follows it.
            return .head(h, used: min(data.count, max(0, length(h) - before)))
        case .invalid: malformed(&d); return .taken
        case .needMore:
            guard held.count < HTTPParser.maxHead else { malformed(&d); return .taken }
            d.partial = held
            return .taken
        }
    }

    func malformed(_ d: inout HTTPDirectionState) {
        counters.malformed &+= 1
        d.stopped = true
        d.partial = nil
    }

    // MARK: Requests

    /// A request head: the fact, the flow summary, then its body or the queue.
    func request(_ r: consuming HTTPRequestHead, _ c: HTTPConnection, slot: Int32, table: FlowTable, at time: Timestamp) {
        counters.requests &+= 1
        if store.update(slot: slot, { $0.noteRequest(r) }) == true { table.setAppProtocol(AppProtocol.http.rawValue, slot: slot) }
        if let e = emitter, e.hasFactObservers {
            e.publish(.httpRequest(host: HTTPFacts.hostName(r), url: HTTPAnalyzer.fullURL(r)), flow: table[slot], at: time)
        }
        if let o = requestObserver {
            let flow = table[slot]
            // Declared length only: hostile values are clamped, never trusted for arithmetic.
            let body = r.chunked ? 0 : min(max(r.contentLength ?? 0, 0), 1 << 40)
            o.httpRequest(HTTPRequestFact(client: flow.originator, server: flow.responder, serverPort: flow.responderPort,
                                          time: time, host: HTTPFacts.hostName(r), bytes: r.headLength &+ body))
        }
        let cost = 128 &+ r.method.count &+ r.target.count &+ r.version.count &+ (r.host?.count ?? 0) &+ (r.userAgent?.count ?? 0)
            &+ (r.referrer?.count ?? 0) &+ (r.contentType?.count ?? 0) &+ (r.contentEncoding?.count ?? 0)
        let framing = r.bodyFraming
        let p = HTTPPendingRequest(head: r, time: time, charged: budget.charge(cost) ? cost : 0)
        if framing == .none {
            enqueue(p, c, flow: table[slot])
        } else {
            c.requestInBody = p
            c.orig.body = HTTPBodyReader(framing)
            c.orig.file = files.map { FileHasher(algorithms: $0.configuration.hashes) }
        }
    }

    func enqueue(_ p: HTTPPendingRequest, _ c: HTTPConnection, flow: FlowRecord) {
        if p.charged == 0 || c.pending.count >= Self.maxPending {
            // No room to wait for its response (budget or depth): reported now, unanswered.
            if p.charged != 0 { counters.pendingOverflow &+= 1 }
            transaction(p, nil, responseBody: nil, flow: flow, at: p.time)
            release(p)
            return
        }
        c.pending.append(p)
    }

    func release(_ p: HTTPPendingRequest) { if p.charged > 0 { budget.release(p.charged) } }

    func release(_ c: HTTPConnection) {
        for p in c.pending { release(p) }
        if let p = c.requestInBody { release(p) }
        if let p = c.answering { release(p) }
        c.pending.removeAll()
        c.requestInBody = nil
        c.answering = nil
        budget.release(c.charged)
    }

    // MARK: Responses

    func response(_ r: consuming HTTPResponseHead, _ c: HTTPConnection, slot: Int32, table: FlowTable, at time: Timestamp) {
        counters.responses &+= 1
        store.update(slot: slot) { $0.noteResponse(r) }
        let status = r.status
        // 100 Continue, 102, 103: interim; the final response follows for the same request.
        if status >= 100 && status < 200 && status != 101 { return }
        var req: HTTPPendingRequest?
        if !c.pending.isEmpty {
            req = c.pending.removeFirst()
        } else if let p = c.requestInBody {
            // Answered before its body was done (an early 401/413): the body still has to be walked.
            req = p
            req!.charged = 0
            c.requestAnswered = true
        } else {
            counters.responsesWithoutRequest &+= 1
        }
        let isConnect = req?.head.method == HTTPAnalyzer.connect
        let framing = r.bodyFraming(answeringHead: req?.head.method == HTTPAnalyzer.head)
        // Moved into the connection, not copied (a copy retains each of a head's buffers).
        c.answering = req.take()
        c.response = r
        c.responseTime = time
        // A protocol switch (WebSocket, h2c) or an established CONNECT tunnel: no HTTP/1 after this.
        if status == 101 || (isConnect && status >= 200 && status < 300) {
            finishResponse(c, flow: table[slot], at: time)
            c.orig.stopped = true
            c.resp.stopped = true
            return
        }
        if framing == .none {
            finishResponse(c, flow: table[slot], at: time)
        } else {
            c.resp.body = HTTPBodyReader(framing)
            c.resp.file = files.map { FileHasher(algorithms: $0.configuration.hashes) }
        }
    }

    static let head: [UInt8] = Array("HEAD".utf8)
    static let connect: [UInt8] = Array("CONNECT".utf8)

    /// Reports the response being read with its request and body, and clears it.
    func finishResponse(_ c: HTTPConnection, flow: FlowRecord, at time: Timestamp) {
        let digests = c.resp.file?.finish()
        c.resp.file = nil
        c.resp.body = nil
        // Taken out, not copied: every copy of a head retains each of its buffers.
        let answering = c.answering.take(), response = c.response.take()
        if let d = digests, d.size > 0 {
            file(d, upload: false, request: answering?.head, response: response, flow: flow, at: time)
        }
        if let p = answering { release(p) }
        transaction(answering, response, responseBody: digests, flow: flow, at: answering?.time ?? c.responseTime)
    }

    // MARK: Bodies

    /// Walks body bytes at the front of `data`; returns how many it took.
    func body(_ data: UnsafeRawBufferPointer, _ c: HTTPConnection, fromOriginator: Bool, slot: Int32, table: FlowTable, at time: Timestamp) -> Int {
        // Taken out while it runs, so hashing can update the connection without overlapping access.
        var reader = fromOriginator ? c.orig.body! : c.resp.body!
        let progress = reader.consume(data) { bytes in hashBody(bytes, fromOriginator: fromOriginator, c, at: time) }
        if fromOriginator { c.orig.body = reader } else { c.resp.body = reader }
        switch progress {
        case .more:
            return data.count
        case .complete(let used):
            if fromOriginator { finishRequestBody(c, flow: table[slot], at: time) } else { finishResponse(c, flow: table[slot], at: time) }
            return used
        case .malformed:
            counters.malformed &+= 1
            counters.truncatedBodies &+= 1
            if fromOriginator {
                c.orig.file?.incomplete = true
                finishRequestBody(c, flow: table[slot], at: time)
                c.orig.stopped = true
            } else {
                c.resp.file?.incomplete = true
                finishResponse(c, flow: table[slot], at: time)
                c.resp.stopped = true
            }
            return data.count
        }
    }

    @inline(__always)
    func hashBody(_ bytes: UnsafeRawBufferPointer, fromOriginator: Bool, _ c: HTTPConnection, at time: Timestamp) {
        guard let files else { return }
        if fromOriginator {
            if c.orig.file != nil { _ = files.hash(bytes, into: &c.orig.file!, flowBytes: &c.hashedBytes, at: time) }
        } else {
            if c.resp.file != nil { _ = files.hash(bytes, into: &c.resp.file!, flowBytes: &c.hashedBytes, at: time) }
        }
    }

    func finishRequestBody(_ c: HTTPConnection, flow: FlowRecord, at time: Timestamp) {
        c.orig.body = nil
        guard var p = c.requestInBody.take() else { return }
        if let f = c.orig.file {
            let d = f.finish()
            if d.size > 0 {
                p.body = d
                file(d, upload: true, request: p.head, response: nil, flow: flow, at: time)
            }
        }
        c.orig.file = nil
        // Already answered (an early response took it): nothing waits for a response any more.
        if c.requestAnswered {
            c.requestAnswered = false
            release(p)
            return
        }
        enqueue(p, c, flow: flow)
    }

    // MARK: Gaps and ends

    /// Bytes of a direction were lost: the message in progress is reported (a body as incomplete) and
    /// the direction realigns on the next segment that starts with a head. Pairing stays in order, so
    /// whole messages lost in the hole shift which request a later response is paired with.
    public func gap(fromOriginator: Bool, slot: Int32, flows: FlowTable, at time: Timestamp) {
        guard let c = connections[slot], c.generation == flows.generation(slot: slot) else { return }
        if fromOriginator {
            c.orig.partial = nil
            if c.orig.body != nil {
                counters.truncatedBodies &+= 1
                c.orig.file?.incomplete = true
                finishRequestBody(c, flow: flows[slot], at: time)
            }
            c.orig.resync = true
        } else {
            c.resp.partial = nil
            if c.resp.body != nil {
                counters.truncatedBodies &+= 1
                c.resp.file?.incomplete = true
                finishResponse(c, flow: flows[slot], at: time)
            }
            c.resp.resync = true
        }
    }

    public var resumesAfterGap: Bool { true }

    public func streamEnded(_ flow: FlowRecord, slot: Int32) {
        if let c = connections.removeValue(forKey: slot), c.generation == flow.generation {
            let time = flow.lastSeen
            if c.orig.body != nil {
                counters.truncatedBodies &+= 1
                c.orig.file?.incomplete = true
                finishRequestBody(c, flow: flow, at: time)
            }
            if let b = c.resp.body {
                // A body delimited by the close is complete when the stream ends; any other was cut.
                if b.state != .untilClose {
                    counters.truncatedBodies &+= 1
                    c.resp.file?.incomplete = true
                }
                finishResponse(c, flow: flow, at: time)
            }
            for p in c.pending { transaction(p, nil, responseBody: nil, flow: flow, at: p.time) }
            release(c)
        }
        store.streamEnded(slot: slot)
    }

    public func packet(_ context: PacketContext, flows: FlowTable) {}
    public func tick(_ now: Timestamp) {
        store.purgeEnded()
    }

    /// `spanwatch.stats.http`.
    public func writeStatistics(into w: inout JSONWriter) {
        let c = counters
        w.beginObject("http")
        w.field("requests", c.requests)
        w.field("responses", c.responses)
        w.field("transactions", c.transactions)
        w.field("unanswered", c.unanswered)
        w.field("responses_without_request", c.responsesWithoutRequest)
        w.field("pending_overflow", c.pendingOverflow)
        w.field("truncated_bodies", c.truncatedBodies)
        w.field("resynced", c.resynced)
        w.field("malformed", c.malformed)
        w.endObject()
    }

    public func contributeFlowFields(_ flow: FlowRecord, slot: Int32, into w: inout JSONWriter) {
        store.withFacts(slot: slot, generation: flow.generation) { f in
            guard f.request != nil || f.response != nil else { return }
            HTTPAnalyzer.write(f, into: &w)
        }
    }

    /// The flow's request and response counts (`spanwatch.http.requests`, `spanwatch.http.responses`): no ECS field.
    public func contributeVendorFields(_ flow: FlowRecord, slot: Int32, into w: inout JSONWriter) {
        store.withFacts(slot: slot, generation: flow.generation) { f in
            guard f.request != nil || f.response != nil else { return }
            w.beginObject("http")
            w.field("requests", f.requests)
            w.field("responses", f.responses)
            w.endObject()
        }
    }

    /// ECS `http.*`, `url.*`, `user_agent.original` for one flow's first exchange.
    public static func write(_ f: HTTPFacts, into w: inout JSONWriter) {
        writeExchange(f.request, f.response, requestBodyBytes: f.request?.contentLength, responseBodyBytes: f.response?.contentLength, into: &w)
    }

    /// ECS `http.*`, `url.*` (with `url.full`), `user_agent.original` for one request and its response.
    static func writeExchange(_ request: HTTPRequestHead?, _ response: HTTPResponseHead?, requestBodyBytes: Int?, responseBodyBytes: Int?,
                              into w: inout JSONWriter) {
        w.beginObject("http")
        if let r = request {
            r.version.withUnsafeBytes { w.field("version", decoding: $0) }
            w.beginObject("request")
            r.method.withUnsafeBytes { w.field("method", bytes: $0) }
            if let v = r.referrer { v.withUnsafeBytes { w.field("referrer", bytes: $0) } }
            if let v = r.contentType { v.withUnsafeBytes { w.field("mime_type", bytes: $0) } }
            if let n = requestBodyBytes { w.beginObject("body"); w.field("bytes", n); w.endObject() }
            w.endObject()
        } else if let r = response {
            r.version.withUnsafeBytes { w.field("version", decoding: $0) }
        }
        if let r = response {
            w.beginObject("response")
            w.field("status_code", r.status)
            if let v = r.contentType { v.withUnsafeBytes { w.field("mime_type", bytes: $0) } }
            if let n = responseBodyBytes { w.beginObject("body"); w.field("bytes", n); w.endObject() }
            w.endObject()
        }
        w.endObject()
        guard let r = request else { return }
        w.beginObject("url")
        r.target.withUnsafeBytes { t in
            w.field("original", bytes: t)
            // Origin form (/path?query) is the common case; absolute form carries scheme and host.
            var path = t
            if t.starts(with: httpPrefix) || t.starts(with: httpsPrefix) {
                let afterScheme = t.firstIndex(of: 47).map { $0 + 2 } ?? t.count
                let rest = UnsafeRawBufferPointer(rebasing: t[min(afterScheme, t.count)...])
                path = rest.firstIndex(of: 47).map { UnsafeRawBufferPointer(rebasing: rest[$0...]) } ?? UnsafeRawBufferPointer(rebasing: rest[rest.count...])
            }
            if let q = path.firstIndex(of: 63) {
                w.field("path", bytes: UnsafeRawBufferPointer(rebasing: path[..<q]))
                w.field("query", bytes: UnsafeRawBufferPointer(rebasing: path[(q + 1)...]))
            } else if !path.isEmpty {
                w.field("path", bytes: path)
            }
        }
        if let host = HTTPFacts.hostName(r) { w.field("domain", host) }
        if let h = r.host, h.first != 0x5b, let colon = h.lastIndex(of: 58), let port = decimalPort(h, after: colon) {
            w.field("port", port)
        }
        if hasAbsoluteURL(r) {
            let https = writeFullURL(r, into: &w)
            w.field("scheme", https ? "https" : "http")
        }
        w.endObject()
        if let ua = r.userAgent {
            w.beginObject("user_agent"); ua.withUnsafeBytes { w.field("original", bytes: $0) }; w.endObject()
        }
    }

    /// `http://host/path?query` from the Host header and the request target (absolute-form targets as sent).
    public static func fullURL(_ f: HTTPFacts) -> String { f.request.map(fullURL) ?? "" }

    /// `url.full` as threat-intelligence matches name it: only when there is a host to make it absolute.
    public static func absoluteURL(_ r: HTTPRequestHead) -> String? {
        hasAbsoluteURL(r) ? fullURL(r) : nil
    }

    static func hasAbsoluteURL(_ r: HTTPRequestHead) -> Bool {
        r.host != nil || r.target.starts(with: httpsPrefix) || r.target.starts(with: httpPrefix)
    }

    static let httpPrefix: [UInt8] = Array("http://".utf8)
    static let httpsPrefix: [UInt8] = Array("https://".utf8)

    /// `"full":` with `fullURL(r)`, written from the head's bytes when the target and host are ASCII
    /// (the string would be those same bytes); true when it is an https URL.
    static func writeFullURL(_ r: HTTPRequestHead, into w: inout JSONWriter) -> Bool {
        let target = r.target, host = r.host ?? []
        guard !target.contains(where: { $0 >= 0x80 }), !host.contains(where: { $0 >= 0x80 }) else {
            let full = fullURL(r)
            w.field("full", full)
            return full.hasPrefix("https:")
        }
        let https = target.starts(with: httpsPrefix)
        if https || target.starts(with: httpPrefix) {
            target.withUnsafeBytes { w.field("full", bytes: $0) }
            return https
        }
        w.field("full", rawString: { w in
            httpPrefix.withUnsafeBytes { w.append(bytes: $0) }
            host.withUnsafeBytes { w.appendEscapedContent($0) }
            if target.first != 47 { w.append(47) }
            target.withUnsafeBytes { w.appendEscapedContent($0) }
        })
        return false
    }

    public static func fullURL(_ r: HTTPRequestHead) -> String {
        let target = String(decoding: r.target, as: UTF8.self)
        if target.hasPrefix("http://") || target.hasPrefix("https://") { return target }
        let host = r.host.map { String(decoding: $0, as: UTF8.self) } ?? ""
        return "http://" + host + (target.hasPrefix("/") ? target : "/" + target)
    }

    static func decimalPort(_ h: [UInt8], after colon: Int) -> Int? {
        h.withUnsafeBytes { b in
            HTTPParser.decimal(UnsafeRawBufferPointer(rebasing: b[(colon + 1)...])).flatMap { $0 <= 65535 ? $0 : nil }
        }
    }
}
