import ConfigKit
import Events
import Foundation
import Logging
import PacketCore
import ThreatIntel

/// The `intel:` config section: which indicator files to match traffic against and how often to look
/// for changes to them.
///
/// ```yaml
/// intel:
///   indicators: [/etc/sensor/intel/feed.csv, /var/lib/misp/export.json]   # files or directories
///   reload_interval: 60s      # file change check (0 = only on SIGHUP)
///   alert_interval: 1h        # one alert per indicator and host per interval
///   rules_indicators: true    # also load <rules>/indicators/ (default true)
/// ```
public struct IntelConfiguration: Sendable {
    public var indicators: [String] = []
    public var reloadInterval: Double = 60
    public var alertInterval: Double = 3600
    /// Load the files directly inside `<rules directory>/indicators/` too.
    public var rulesIndicators = true
    /// A feed built in memory (the fuzz harness), used instead of indicator files; not from YAML.
    public var feed: IndicatorFeed?

    public init() {}

    static func parse(_ v: ConfigValue, _ r: inout ConfigReader) -> IntelConfiguration {
        var c = IntelConfiguration()
        let t = r.table(v, allowed: ["indicators", "reload_interval", "alert_interval", "rules_indicators"])
        if let l = r.stringList(t["indicators"]) { c.indicators = l }
        if let s = r.seconds(t["reload_interval"], in: 0...86_400) { c.reloadInterval = s }
        if let s = r.seconds(t["alert_interval"], in: 0...604_800) { c.alertInterval = s }
        if let b = r.bool(t["rules_indicators"]) { c.rulesIndicators = b }
        return c
    }

    /// Every indicator path in effect: the configured ones, then `<rules>/indicators` if present.
    public func paths(rulesDirectory: String?) -> [String] {
        var out = indicators
        if rulesIndicators, let dir = RulesDirectory.resolve(rulesDirectory) {
            let d = dir + "/indicators"
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: d, isDirectory: &isDir), isDir.boolValue,
               !IndicatorFeed.expand([d]).isEmpty {
                out.append(d)
            }
        }
        return out
    }

    /// Builds (and starts watching) the feed, or nil when no indicator file is in effect.
    /// Throws every problem of every file (`file:line:column: message`).
    public func makeFeed(rulesDirectory: String?, logger: Logger, fileHashes: Set<IndicatorType>) throws(ConfigIssues) -> IndicatorFeed? {
        if let feed { return feed }
        let p = paths(rulesDirectory: rulesDirectory)
        if p.isEmpty { return nil }
        let f = try IndicatorFeed(paths: p, logger: logger, fileHashes: fileHashes)
        f.startWatching(interval: reloadInterval)
        return f
    }

    /// `check-rules`: every indicator file under `dir` (recursively, so the format examples are checked too).
    static func checkIndicatorFiles(in dir: String) -> [ConfigIssue] {
        guard let e = FileManager.default.enumerator(atPath: dir) else { return [] }
        var issues: [ConfigIssue] = []
        var files: [String] = []
        while let f = e.nextObject() as? String {
            if IndicatorFeed.extensions.contains(where: { f.lowercased().hasSuffix($0) }) { files.append(dir + "/" + f) }
        }
        for f in files.sorted() {
            do { _ = try IndicatorLoader.load(path: f) } catch { issues += error.issues }
        }
        return issues
    }

    public var settings: ThreatIntelSettings {
        var s = ThreatIntelSettings()
        s.alertInterval = .seconds(alertInterval)
        return s
    }
}

/// Passes only the alerts of one rule category (hunt mode: the matches and nothing else).
///
/// `EventMetadata` carries the kind but not the rule category, so the category is found in the JSON
/// the emitter wrote (`"rule":{"category":"…"`, always in that form); alerts are rare, so the search
/// costs nothing that matters, and every other event is dropped on the kind alone.
public final class AlertCategorySink: EventSink, @unchecked Sendable {
    let inner: any EventSink
    let needle: [UInt8]
    public var name: String { inner.name }
    public private(set) var passed: UInt64 = 0

    public init(_ inner: any EventSink, category: RuleCategory) {
        self.inner = inner
        self.needle = Array("\"rule\":{\"category\":\"\(category.rawValue)\"".utf8)
    }

    public func write(_ json: UnsafeRawBufferPointer, metadata: EventMetadata) {
        guard metadata.kind == .alert, contains(json) else { return }
        passed &+= 1
        inner.write(json, metadata: metadata)
    }

    func contains(_ json: UnsafeRawBufferPointer) -> Bool {
        let n = needle.count
        guard json.count >= n else { return false }
        var i = 0
        while i <= json.count - n {
            if json[i] == needle[0] {
                var k = 1
                while k < n, json[i + k] == needle[k] { k += 1 }
                if k == n { return true }
            }
            i += 1
        }
        return false
    }

    public func flush() throws { try inner.flush() }
    public func flushDelivery() throws { try inner.flushDelivery() }
    public func close() throws { try inner.close() }
    public var statistics: SinkStatistics { inner.statistics }
    public var failureReason: String? { inner.failureReason }
}
