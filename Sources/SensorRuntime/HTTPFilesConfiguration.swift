import Analyzers
import ConfigKit
import Events
import ThreatIntel

extension SensorConfiguration {
    /// `http: {events}` and `files: {enabled, hashes, max_bytes_per_flow, max_bytes_per_second}`.
    static func parseHTTPAndFiles(_ top: [String: ConfigValue], into c: inout SensorConfiguration, _ r: inout ConfigReader) {
        if let v = top["http"] {
            let t = r.table(v, allowed: ["events"])
            if let b = r.bool(t["events"]) { c.httpEvents = b }
        }
        if let v = top["files"] {
            let t = r.table(v, allowed: ["enabled", "hashes", "max_bytes_per_flow", "max_bytes_per_second"])
            if let b = r.bool(t["enabled"]) { c.files.enabled = b }
            if let v = t["hashes"], let names = r.stringList(v) {
                if let h = FileHashAlgorithms(names: names) { c.files.hashes = h } else { r.report(v, FileHashAlgorithms.usage) }
            }
            if let n = r.int(t["max_bytes_per_flow"], in: 0...(1 << 40)) { c.files.maxBytesPerFlow = n }
            if let n = r.int(t["max_bytes_per_second"], in: 0...(1 << 40)) { c.files.maxBytesPerSecond = n }
        }
    }

    /// The file-hash indicator kinds hashing produces (none with files off): the others are warned about at load.
    public var hashedFileIndicatorTypes: Set<IndicatorType> {
        guard files.enabled else { return [] }
        return Set([(FileHashAlgorithms.md5, IndicatorType.md5), (.sha1, .sha1), (.sha256, .sha256)].filter { files.hashes.contains($0.0) }.map(\.1))
    }

    /// The worker's file hashing, or nil when files are off.
    func makeFileHashing(emitter: EventEmitter) -> FileHashing? { files.enabled ? FileHashing(configuration: files, emitter: emitter) : nil }
}
