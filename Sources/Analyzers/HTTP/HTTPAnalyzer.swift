import Events
import PacketCore

/// HTTP facts of one flow: its first request and first response.
public struct HTTPFacts: SlotFacts, Sendable {
    public var generation: UInt32
    public var request: HTTPRequestHead?
    public var response: HTTPResponseHead?

    /// The Host header without a port, lower-cased (the key beaconing uses for (source, host) pairs).
    public var hostName: String? {
        guard let h = request?.host, !h.isEmpty else { return nil }
        var end = h.count
        if h.first != 0x5b, let colon = h.lastIndex(of: 58) { end = colon }  // not an IPv6 literal
        return String(decoding: h[..<end].map { $0 >= 0x41 && $0 <= 0x5a ? $0 | 0x20 : $0 }, as: UTF8.self)
    }
}

public struct HTTPCounters: Sendable, Equatable {
    public var requests: UInt64 = 0
    public var responses: UInt64 = 0
    public var malformed: UInt64 = 0
    public init() {}
}

/// Reads the first HTTP/1.x request and response of flows that start with a request, on any port.
///
/// Chosen by content like the TLS analyser, so HTTP on 8001 or 22 is parsed as HTTP on 80. One head
/// per direction (bounded by `HTTPParser.maxHead` and the worker's `ParserMemoryBudget`), then the flow
/// goes back to the reassembler.
public final class HTTPAnalyzer: StreamConsumer, PacketAnalyzer {
    public let name = "http"
    public private(set) var counters = HTTPCounters()
    var store = FlowFactStore<HTTPFacts>()

    /// Where request facts are published for correlation (threat intelligence), if anywhere.
    let emitter: EventEmitter?
    /// The worker's bound on head buffers (shared with its other stream parsers).
    let budget: ParserMemoryBudget

    public init(emitter: EventEmitter? = nil, budget: ParserMemoryBudget = ParserMemoryBudget()) {
        self.emitter = emitter
        self.budget = budget
    }

    public func facts(slot: Int32, generation: UInt32) -> HTTPFacts? { store.facts(slot: slot, generation: generation) }

    public func wantsStream(_ flow: FlowRecord, slot: Int32, firstPayload: UnsafeRawBufferPointer, fromOriginator: Bool) -> Bool {
        store.purgeEnded()
        store.reset(slot: slot)
        guard fromOriginator, HTTPParser.looksLikeRequest(firstPayload) else { return false }
        store[slot] = HTTPFacts(generation: flow.generation)
        return true
    }

    public func stream(_ data: UnsafeRawBufferPointer, fromOriginator: Bool, slot: Int32, flows table: FlowTable, at time: Timestamp) -> StreamVerdict {
        guard store[slot] != nil else { return .doneWithFlow }
        var pair = store.takeHeads(slot: slot)
        var request: HTTPRequestHead?
        var response: HTTPResponseHead?
        let step: StreamHead.Step
        if fromOriginator {
            step = pair.0.feed(data, limit: HTTPParser.maxHead, budget: budget) { b in
                switch HTTPParser.request(b) {
                case .parsed(let r): request = r; return .done
                case .needMore: return .needMore
                case .invalid: return .invalid
                }
            }
        } else {
            step = pair.1.feed(data, limit: HTTPParser.maxHead, budget: budget) { b in
                switch HTTPParser.response(b) {
                case .parsed(let r): response = r; return .done
                case .needMore: return .needMore
                case .invalid: return .invalid
                }
            }
        }
        if let r = request {
            counters.requests &+= 1
            store[slot]!.request = r
            table.setAppProtocol(AppProtocol.http.rawValue, slot: slot)
            if let e = emitter, e.hasFactObservers {
                let f = store[slot]!
                e.publish(.httpRequest(host: f.hostName, url: HTTPAnalyzer.fullURL(f)), flow: table[slot], at: time)
            }
        }
        if let r = response {
            counters.responses &+= 1
            store[slot]!.response = r
        }
        if step == .invalid { counters.malformed &+= 1 }
        if step == .needMore { store.keepHeads(pair, slot: slot) }
        return step == .needMore ? .more : .doneWithDirection
    }

    public func gap(fromOriginator: Bool, slot: Int32, flows: FlowTable, at time: Timestamp) { store.dropHeads(slot: slot) }

    public func streamEnded(_ flow: FlowRecord, slot: Int32) { store.streamEnded(slot: slot) }

    public func packet(_ context: PacketContext, flows: FlowTable) {}
    public func tick(_ now: Timestamp) { store.purgeEnded() }

    public func contributeFlowFields(_ flow: FlowRecord, slot: Int32, into w: inout JSONWriter) {
        guard let f = facts(slot: slot, generation: flow.generation), f.request != nil || f.response != nil else { return }
        HTTPAnalyzer.write(f, into: &w)
    }

    /// ECS `http.*`, `url.*`, `user_agent.original` for one flow's first exchange.
    public static func write(_ f: HTTPFacts, into w: inout JSONWriter) {
        w.beginObject("http")
        if let r = f.request {
            w.field("version", String(decoding: r.version, as: UTF8.self))
            w.beginObject("request")
            r.method.withUnsafeBytes { w.field("method", bytes: $0) }
            if let v = r.referrer { v.withUnsafeBytes { w.field("referrer", bytes: $0) } }
            if let v = r.contentType { v.withUnsafeBytes { w.field("mime_type", bytes: $0) } }
            if let n = r.contentLength { w.beginObject("body"); w.field("bytes", n); w.endObject() }
            w.endObject()
        } else if let r = f.response {
            w.field("version", String(decoding: r.version, as: UTF8.self))
        }
        if let r = f.response {
            w.beginObject("response")
            w.field("status_code", r.status)
            if let v = r.contentType { v.withUnsafeBytes { w.field("mime_type", bytes: $0) } }
            if let n = r.contentLength { w.beginObject("body"); w.field("bytes", n); w.endObject() }
            w.endObject()
        }
        w.endObject()
        guard let r = f.request else { return }
        w.beginObject("url")
        r.target.withUnsafeBytes { t in
            w.field("original", bytes: t)
            // Origin form (/path?query) is the common case; absolute form carries scheme and host.
            var path = t
            if t.starts(with: Array("http://".utf8)) || t.starts(with: Array("https://".utf8)) {
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
        if let host = f.hostName { w.field("domain", host) }
        if let h = r.host, h.first != 0x5b, let colon = h.lastIndex(of: 58), let port = decimalPort(h, after: colon) {
            w.field("port", port)
        }
        // `url.full` as threat-intelligence matches name it: only when there is a host to make it absolute.
        let https = r.target.starts(with: Array("https://".utf8))
        if https || r.target.starts(with: Array("http://".utf8)) || r.host != nil {
            w.field("full", fullURL(f))
            w.field("scheme", https ? "https" : "http")
        }
        w.endObject()
        if let ua = r.userAgent {
            w.beginObject("user_agent"); ua.withUnsafeBytes { w.field("original", bytes: $0) }; w.endObject()
        }
    }

    /// `http://host/path?query` from the Host header and the request target (absolute-form targets as sent).
    public static func fullURL(_ f: HTTPFacts) -> String {
        guard let r = f.request else { return "" }
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
