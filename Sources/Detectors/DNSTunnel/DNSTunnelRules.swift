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
    /// … and at least this many distinct names: a tunnel never repeats a name (caches would answer it),
    /// a client resolving one long host name again and again does.
    public var minUniqueSubdomains = 4
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
    /// Mean payload characters per answered response (TXT/NULL/CNAME/MX data of the type asked for), and
    /// its entropy; both scaled by the share of distinct payloads.
    public var answerPayload = Feature(from: 40, to: 160, weight: 15)
    public var answerEntropy = Feature(from: 4.0, to: 5.5, weight: 10)
    /// Subtracted: share of the names' letters and digits in pronounceable word-like runs.
    public var descriptiveNames = Feature(from: 0.5, to: 0.8, weight: 40)

    /// Single-name rule: one query whose subdomain alone looks like encoded data.
    public var singleNameEnabled = true
    public var singleNameMinLength = 48
    public var singleNameMinLabel = 40
    public var singleNameMinEntropy = 4.2
    /// … and less than this share of its letters and digits in word-like runs (not a descriptive name).
    public var singleNameMaxWordShare = 0.65

    /// Resolver search suffixes to strip before judging a name (`corp.example.com`); more are learned from
    /// clients asking for a name with and without one, `searchSuffixEvidence` times within
    /// `searchSuffixWindowSeconds`.
    public var searchSuffixes: [String] = []
    public var learnSearchSuffixes = true
    public var searchSuffixWindowSeconds: Double = 10
    public var searchSuffixEvidence = 2

    /// Names (and their subdomains) never scored: reputation lookups, CDNs, DNS-SD, reverse zones.
    public var allowlist: [String] = []

    public init() {}

    public static let fileName = "dns-tunneling.yaml"

    static let featureKeys = ["unique_subdomains", "subdomain_length", "label_length", "entropy", "unusual_types", "query_rate", "bytes", "nxdomain",
                              "answer_payload", "answer_entropy", "descriptive_names"]

    public static func parse(_ root: ConfigValue) throws(ConfigIssues) -> DNSTunnelRules {
        var rules = DNSTunnelRules()
        var r = ConfigReader()
        let top = r.table(root, allowed: ["enabled", "window", "buckets", "min_queries", "min_unique_subdomains", "alert_score", "sample_score",
                                          "exfiltration_bytes", "rate_limit", "max_pairs", "samples", "ignore_multicast_dns", "score", "single_name",
                                          "search_suffixes", "learn_search_suffixes", "allowlist"])
        if let b = r.bool(top["enabled"]) { rules.enabled = b }
        if let s = r.seconds(top["window"], in: 10...86400) { rules.windowSeconds = s }
        if let b = r.int(top["buckets"], in: 1...32) { rules.buckets = b }
        if let m = r.int(top["min_queries"], in: 1...1_000_000) { rules.minQueries = m }
        if let m = r.int(top["min_unique_subdomains"], in: 1...1_000_000) { rules.minUniqueSubdomains = m }
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
            feature("answer_payload", &rules.answerPayload)
            feature("answer_entropy", &rules.answerEntropy)
            feature("descriptive_names", &rules.descriptiveNames)
        }
        if let v = top["single_name"] {
            let t = r.table(v, allowed: ["enabled", "min_length", "min_label", "min_entropy", "max_word_share"])
            if let b = r.bool(t["enabled"]) { rules.singleNameEnabled = b }
            if let x = r.int(t["min_length"], in: 1...253) { rules.singleNameMinLength = x }
            if let x = r.int(t["min_label"], in: 1...63) { rules.singleNameMinLabel = x }
            if let x = r.double(t["min_entropy"], in: 0...8) { rules.singleNameMinEntropy = x }
            if let x = r.double(t["max_word_share"], in: 0...1) { rules.singleNameMaxWordShare = x }
        }
        if let v = top["search_suffixes"] {
            for item in v.items ?? [v] {
                if let s = domainName(item, &r) { rules.searchSuffixes.append(s) }
            }
        }
        if let v = top["learn_search_suffixes"] {
            let t = r.table(v, allowed: ["enabled", "window", "evidence"])
            if let b = r.bool(t["enabled"]) { rules.learnSearchSuffixes = b }
            if let s = r.seconds(t["window"], in: 0.001...3600) { rules.searchSuffixWindowSeconds = s }
            if let n = r.int(t["evidence"], in: 1...1000) { rules.searchSuffixEvidence = n }
        }
        if let v = top["allowlist"] {
            for item in v.items ?? [v] {
                if let s = domainName(item, &r) { rules.allowlist.append(s) }
            }
        }
        if !r.issues.isEmpty { throw ConfigIssues(r.issues) }
        return rules
    }

    /// A zone name from the rules: lower-cased, `*.` and a trailing dot dropped; nil (reported) if malformed.
    static func domainName(_ item: ConfigValue, _ r: inout ConfigReader) -> String? {
        guard var s = r.string(item) else { return nil }
        s = s.lowercased()
        if s.hasPrefix("*.") { s.removeFirst(2) }
        if s.hasSuffix(".") { s.removeLast() }
        if s.isEmpty || s.hasPrefix(".") || s.contains("..") || s.contains(" ") {
            r.report(item, "'\(s)' is not a domain name")
            return nil
        }
        return s
    }
}
