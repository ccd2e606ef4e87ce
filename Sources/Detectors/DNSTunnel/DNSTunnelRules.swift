import ConfigKit
import PacketCore

/// Thresholds, weights and allowlist of the DNS tunnelling detector (`Rules/dns-tunneling.yaml`).
///
/// The file is documented in place; every key has a default here, so a rules file only needs what it
/// changes. Loaded through ConfigKit, so mistakes are reported as `file:line:column: message`.
public struct DNSTunnelRules: RulesDocument, Equatable {
    /// One scored feature: contributes 0 below `from`, `weight` at or above `to`, linearly between.
    public struct Feature: Sendable, Equatable {
        public var from: Double
        public var to: Double
        public var weight: Double
        public init(from: Double, to: Double, weight: Double) { self.from = from; self.to = to; self.weight = weight }

        public func points(_ x: Double) -> Double {
            guard weight > 0 else { return 0 }
            if to <= from { return x >= to ? weight : 0 }
            return weight * min(1, max(0, (x - from) / (to - from)))
        }
    }

    public var enabled = true
    /// Sliding window per (client, registered domain), on the packet clock, and its resolution.
    public var windowSeconds: Double = 300
    public var buckets = 6
    /// Channel rule: at least this many queries in the window and a score at or above `alertScore`.
    public var minQueries = 5
    public var alertScore: Double = 60
    /// Score at which a pair starts keeping sample names for its alert.
    public var sampleScore: Double = 30
    /// Bytes carried upstream in query names (subdomain part) within the window from which the alert
    /// also names exfiltration (T1048.003).
    public var exfiltrationBytes = 2000
    /// One alert per pair per this many seconds; alerts in between are counted as suppressed.
    public var rateLimitSeconds: Double = 3600
    /// (client, domain) pairs tracked per worker; the least recently active is evicted beyond it.
    public var maxPairs = 20000
    public var samples = 5
    /// Leave multicast DNS and LLMNR (service discovery on the local link) out.
    public var ignoreMulticastDNS = true

    public var uniqueSubdomains = Feature(from: 2, to: 12, weight: 25)
    public var subdomainLength = Feature(from: 12, to: 40, weight: 15)
    public var labelLength = Feature(from: 16, to: 48, weight: 10)
    public var entropy = Feature(from: 3.0, to: 4.0, weight: 25)
    public var unusualTypes = Feature(from: 0.2, to: 0.8, weight: 20)
    public var queryRate = Feature(from: 30, to: 300, weight: 5)
    public var bytes = Feature(from: 300, to: 3000, weight: 10)
    public var nxdomain = Feature(from: 0.3, to: 0.8, weight: 5)

    /// Single-name rule: one query whose subdomain alone looks like encoded data.
    public var singleNameEnabled = true
    public var singleNameMinLength = 48
    public var singleNameMinLabel = 40
    public var singleNameMinEntropy = 4.2

    /// Names (and their subdomains) never scored: reputation lookups, CDNs, DNS-SD, reverse zones.
    public var allowlist: [String] = []

    public init() {}

    public static let fileName = "dns-tunneling.yaml"

    static let featureKeys = ["unique_subdomains", "subdomain_length", "label_length", "entropy", "unusual_types", "query_rate", "bytes", "nxdomain"]

    public static func parse(_ root: ConfigValue) throws(ConfigIssues) -> DNSTunnelRules {
        var rules = DNSTunnelRules()
        var r = ConfigReader()
        let top = r.table(root, allowed: ["enabled", "window", "buckets", "min_queries", "alert_score", "sample_score", "exfiltration_bytes",
                                          "rate_limit", "max_pairs", "samples", "ignore_multicast_dns", "score", "single_name", "allowlist"])
        if let b = r.bool(top["enabled"]) { rules.enabled = b }
        if let s = r.seconds(top["window"], in: 10...86400) { rules.windowSeconds = s }
        if let b = r.int(top["buckets"], in: 1...32) { rules.buckets = b }
        if let m = r.int(top["min_queries"], in: 1...1_000_000) { rules.minQueries = m }
        if let s = r.double(top["alert_score"], in: 1...100) { rules.alertScore = s }
        if let s = r.double(top["sample_score"], in: 0...100) { rules.sampleScore = s }
        if let b = r.int(top["exfiltration_bytes"], in: 1...1_000_000_000) { rules.exfiltrationBytes = b }
        if let s = r.seconds(top["rate_limit"], in: 0...604_800) { rules.rateLimitSeconds = s }
        if let m = r.int(top["max_pairs"], in: 16...10_000_000) { rules.maxPairs = m }
        if let s = r.int(top["samples"], in: 0...50) { rules.samples = s }
        if let b = r.bool(top["ignore_multicast_dns"]) { rules.ignoreMulticastDNS = b }
        if let v = top["score"] {
            let t = r.table(v, allowed: Set(featureKeys))
            func feature(_ key: String, _ f: inout Feature) {
                guard let fv = t[key] else { return }
                let ft = r.table(fv, allowed: ["from", "to", "weight"])
                if let x = r.double(ft["from"]) { f.from = x }
                if let x = r.double(ft["to"]) { f.to = x }
                if let x = r.double(ft["weight"], in: 0...100) { f.weight = x }
                if f.to < f.from { r.report(fv, "'to' (\(f.to)) must not be below 'from' (\(f.from))") }
            }
            feature("unique_subdomains", &rules.uniqueSubdomains)
            feature("subdomain_length", &rules.subdomainLength)
            feature("label_length", &rules.labelLength)
            feature("entropy", &rules.entropy)
            feature("unusual_types", &rules.unusualTypes)
            feature("query_rate", &rules.queryRate)
            feature("bytes", &rules.bytes)
            feature("nxdomain", &rules.nxdomain)
        }
        if let v = top["single_name"] {
            let t = r.table(v, allowed: ["enabled", "min_length", "min_label", "min_entropy"])
            if let b = r.bool(t["enabled"]) { rules.singleNameEnabled = b }
            if let x = r.int(t["min_length"], in: 1...253) { rules.singleNameMinLength = x }
            if let x = r.int(t["min_label"], in: 1...63) { rules.singleNameMinLabel = x }
            if let x = r.double(t["min_entropy"], in: 0...8) { rules.singleNameMinEntropy = x }
        }
        if let v = top["allowlist"] {
            for item in v.items ?? [v] {
                guard var s = r.string(item) else { continue }
                s = s.lowercased()
                if s.hasPrefix("*.") { s.removeFirst(2) }
                if s.hasSuffix(".") { s.removeLast() }
                if s.isEmpty || s.hasPrefix(".") || s.contains("..") || s.contains(" ") {
                    r.report(item, "'\(s)' is not a domain name")
                    continue
                }
                rules.allowlist.append(s)
            }
        }
        if !r.issues.isEmpty { throw ConfigIssues(r.issues) }
        return rules
    }
}
