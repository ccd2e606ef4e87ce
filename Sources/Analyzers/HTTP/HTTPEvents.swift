import Events
import PacketCore

extension HTTPAnalyzer {
    /// One `spanwatch.http` event: a request with its response, a request left unanswered, or a response
    /// whose request was not seen. `@timestamp` is the request's time.
    func transaction(_ p: HTTPPendingRequest?, _ response: HTTPResponseHead?, responseBody: FileDigests?, flow: FlowRecord, at time: Timestamp) {
        if p != nil && response == nil { counters.unanswered &+= 1 }
        guard transactionEvents, let e = emitter else { return }
        counters.transactions &+= 1
        // HEAD, 1xx, 204, 304: a Content-Length there describes another response, not a body sent.
        let bodiless = response.map { $0.bodyFraming(answeringHead: p?.head.method == HTTPAnalyzer.head) == .none } ?? true
        let status: StaticString = p == nil ? "response_only" : (response == nil ? "unanswered" : "answered")
        e.emit(.http, at: time, sourceIP: flow.originator, eventFields: { w in
            if let r = response {
                w.field("outcome", r.status < 400 ? "success" : "failure")
            } else {
                w.field("outcome", "unknown")
            }
        }, body: { w in
            e.writeFlowEndpoints(flow, into: &w)
            HTTPAnalyzer.writeExchange(p?.head, response, requestBodyBytes: p?.body?.size ?? p?.head.contentLength,
                                       responseBodyBytes: responseBody?.size ?? (bodiless ? nil : response?.contentLength), into: &w)
            w.beginObject("spanwatch"); w.beginObject("http")
            w.field("status", status)
            if let h = p?.body?.sha256 { w.field("request_body_sha256", h) }
            if let b = responseBody, b.size > 0, let h = b.sha256 { w.field("response_body_sha256", h) }
            w.endObject(); w.endObject()
        })
    }

    /// One `spanwatch.file` event for a body (`upload`: a request body).
    func file(_ d: FileDigests, upload: Bool, request: HTTPRequestHead?, response: HTTPResponseHead?, flow: FlowRecord, at time: Timestamp) {
        guard let files else { return }
        let encoding = upload ? request?.contentEncoding : response?.contentEncoding
        files.report(d, source: .http, upload: upload, flow: flow, at: time, fields: { w in
            if let r = request, HTTPAnalyzer.hasAbsoluteURL(r) {
                w.beginObject("url"); _ = HTTPAnalyzer.writeFullURL(r, into: &w); w.endObject()
            }
        }, sensorFields: { w in
            if let c = encoding { c.withUnsafeBytes { w.field("content_encoding", bytes: $0) } }
        })
    }
}
