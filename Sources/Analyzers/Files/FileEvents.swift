import Events
import PacketCore

/// Which analyser saw a file (`spanwatch.file.source`).
public enum FileSource: String, Sendable {
    case http, smb
}

extension EventEmitter {
    /// `network.*`, `source.*`, `destination.*` of a flow for events about one exchange on it (HTTP
    /// transactions, files): the flow's Community ID, its originator as source.
    func writeFlowEndpoints(_ flow: FlowRecord, into w: inout JSONWriter) {
        let key = flow.key
        w.beginObject("network")
        writeCommunityID(key, into: &w)
        if let t = IPProtocol.name(key.ipProtocol) { w.field("transport", t) }
        if flow.appProtocol != 0, let app = AppProtocol(rawValue: flow.appProtocol) { w.field("protocol", app.name) }
        w.field("iana_number", decimalString: UInt64(key.ipProtocol))
        w.field("type", key.isIPv6 ? "ipv6" : "ipv4")
        w.field("direction", direction(from: flow.originator, to: flow.responder))
        w.endObject()
        w.beginObject("source"); w.field("ip", flow.originator); w.field("port", Int(flow.originatorPort)); w.endObject()
        w.beginObject("destination"); w.field("ip", flow.responder); w.field("port", Int(flow.responderPort)); w.endObject()
    }

    /// Writes a `spanwatch.file` event and offers its hashes to the fact observers (file-hash indicators).
    /// `upload`: sent by the flow's originator (an HTTP request body, an SMB write).
    /// `fileFields` adds members of `file` (name, path), `fields` top-level ones, `sensorFields` members of `spanwatch.file`.
    func emitFile(_ d: FileDigests, source: FileSource, upload: Bool, flow: FlowRecord, at time: Timestamp,
                  fileFields: (inout JSONWriter) -> Void, fields: (inout JSONWriter) -> Void, sensorFields: (inout JSONWriter) -> Void) {
        emit(.file, at: time, sourceIP: flow.originator, body: { w in
            writeFlowEndpoints(flow, into: &w)
            w.beginObject("file")
            w.beginObject("hash")
            if let h = d.md5 { w.field("md5", h) }
            if let h = d.sha1 { w.field("sha1", h) }
            if let h = d.sha256 { w.field("sha256", h) }
            w.endObject()
            w.field("size", d.size)
            if let m = d.mimeType { w.field("mime_type", m) }
            fileFields(&w)
            w.endObject()
            fields(&w)
            w.beginObject("spanwatch"); w.beginObject("file")
            w.field("source", source.rawValue)
            w.field("direction", upload ? "upload" : "download")
            if d.incomplete { w.field("incomplete", true) }
            sensorFields(&w)
            w.endObject(); w.endObject()
        })
        if hasFactObservers {
            if let h = d.sha256 { publish(.fileHash(algorithm: "sha256", value: h), flow: flow, at: time) }
            if let h = d.sha1 { publish(.fileHash(algorithm: "sha1", value: h), flow: flow, at: time) }
            if let h = d.md5 { publish(.fileHash(algorithm: "md5", value: h), flow: flow, at: time) }
        }
    }
}
