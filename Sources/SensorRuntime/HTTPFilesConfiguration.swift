import Analyzers
import ConfigKit
import Events

extension SensorConfiguration {
    /// `http: {events}` and `files: {enabled, max_bytes_per_flow, max_bytes_per_second}`.
    static func parseHTTPAndFiles(_ top: [String: ConfigValue], into c: inout SensorConfiguration, _ r: inout ConfigReader) {
        if let v = top["http"] {
            let t = r.table(v, allowed: ["events"])
            if let b = r.bool(t["events"]) { c.httpEvents = b }
        }
        if let v = top["files"] {
            let t = r.table(v, allowed: ["enabled", "max_bytes_per_flow", "max_bytes_per_second"])
            if let b = r.bool(t["enabled"]) { c.files.enabled = b }
            if let n = r.int(t["max_bytes_per_flow"], in: 0...(1 << 40)) { c.files.maxBytesPerFlow = n }
            if let n = r.int(t["max_bytes_per_second"], in: 0...(1 << 40)) { c.files.maxBytesPerSecond = n }
        }
    }

    /// The worker's file hashing, or nil when files are off.
    func makeFileHashing(emitter: EventEmitter) -> FileHashing? { files.enabled ? FileHashing(configuration: files, emitter: emitter) : nil }
}
