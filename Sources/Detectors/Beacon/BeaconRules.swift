import ConfigKit
import PacketCore

/// Tuning of the beacon detector, from `Rules/beaconing.yaml` (every key optional; the defaults are the
/// shipped file's values).
public struct BeaconRules: RulesDocument {
    public static let fileName = "beaconing.yaml"
    public var enabled = true
    /// Weighted-mean score (0…1) at which an alert is raised.
    public var threshold = 0.8
    public var scoring = BeaconScoring()
    /// Sliding window of history per pair, seconds.
    public var windowSeconds = 86_400.0
    /// How often pairs with new connections are re-scored, packet-clock seconds.
    public var evaluateEverySeconds = 60.0
    /// One alert per pair within this many seconds.
    public var suppressSeconds = 86_400.0
    /// Pairs kept per table ((source, destination, port) and (source, host)); the stalest are evicted.
    public var maxPairs = 16_384
    /// Connection samples kept per pair (the oldest dropped first).
    public var maxSamples = 256
    /// `network.direction` values considered (the originator is the suspected implant).
    public var directions: Set<String> = ["outbound", "internal", "external"]
    /// Infrastructure chatter that is periodic by design (DNS, NTP, NetBIOS, mDNS, LLMNR, SSDP, DHCP).
    public var ignoreUDPPorts = PortSet([53...53, 67...68, 123...123, 137...138, 1900...1900, 5353...5353, 5355...5355])
    public var ignoreTCPPorts = PortSet()
    public var ignoreDestinations: [IPNetwork] = []
    public var ignoreSources: [IPNetwork] = []
    /// SNI/Host names (exact, or `.suffix`) that are never scored (update services, telemetry).
    public var ignoreHosts: [String] = []

    public init() {}

    static let keys: Set<String> = ["enabled", "threshold", "min_starts", "merge_window", "min_interval", "jitter_tolerance",
                                    "min_dispersion_cutoff", "size_dispersion_cutoff", "skew_min_iqr_seconds", "skew_min_iqr_bytes",
                                    "count_full", "max_bins", "weights", "window", "evaluate_every", "suppress", "max_pairs",
                                    "max_samples", "directions", "ignore"]

    public static func parse(_ root: ConfigValue) throws(ConfigIssues) -> BeaconRules {
        var rules = BeaconRules()
        var r = ConfigReader()
        let top = r.table(root, allowed: ["beaconing"])
        guard let section = top["beaconing"] else {
            if !r.issues.isEmpty { throw ConfigIssues(r.issues) }
            return rules
        }
        let t = r.table(section, allowed: keys)
        if let v = r.bool(t["enabled"]) { rules.enabled = v }
        if let v = r.double(t["threshold"], in: 0...1) { rules.threshold = v }
        if let v = r.int(t["min_starts"], in: 4...100_000) { rules.scoring.minStarts = v }
        if let v = r.seconds(t["merge_window"], in: 0...3600) { rules.scoring.mergeWindowSeconds = v }
        if let v = r.seconds(t["min_interval"], in: 0...86_400) { rules.scoring.minIntervalSeconds = v }
        if let v = r.double(t["jitter_tolerance"], in: 0.01...10) { rules.scoring.jitterTolerance = v }
        if let v = r.seconds(t["min_dispersion_cutoff"], in: 0.001...86_400) { rules.scoring.minDispersionCutoffSeconds = v }
        if let v = r.double(t["size_dispersion_cutoff"], in: 1...1e9) { rules.scoring.sizeDispersionCutoffBytes = v }
        if let v = r.double(t["skew_min_iqr_seconds"], in: 0...86_400) { rules.scoring.skewMinIQRSeconds = v }
        if let v = r.double(t["skew_min_iqr_bytes"], in: 0...1e9) { rules.scoring.skewMinIQRBytes = v }
        if let v = r.double(t["count_full"], in: 1...1e6) { rules.scoring.countFull = v }
        if let v = r.int(t["max_bins"], in: 4...1000) { rules.scoring.maxBins = v }
        if let wv = t["weights"] {
            let w = r.table(wv, allowed: ["interval_skew", "interval_dispersion", "size_skew", "size_dispersion", "histogram", "duration", "count"])
            if let v = r.double(w["interval_skew"], in: 0...100) { rules.scoring.weights.intervalSkew = v }
            if let v = r.double(w["interval_dispersion"], in: 0...100) { rules.scoring.weights.intervalDispersion = v }
            if let v = r.double(w["size_skew"], in: 0...100) { rules.scoring.weights.sizeSkew = v }
            if let v = r.double(w["size_dispersion"], in: 0...100) { rules.scoring.weights.sizeDispersion = v }
            if let v = r.double(w["histogram"], in: 0...100) { rules.scoring.weights.histogram = v }
            if let v = r.double(w["duration"], in: 0...100) { rules.scoring.weights.duration = v }
            if let v = r.double(w["count"], in: 0...100) { rules.scoring.weights.count = v }
            if rules.scoring.weights.total <= 0 { r.report(wv, "at least one weight must be positive") }
        }
        if let v = r.seconds(t["window"], in: 60...2_592_000) { rules.windowSeconds = v }
        if let v = r.seconds(t["evaluate_every"], in: 1...86_400) { rules.evaluateEverySeconds = v }
        if let v = r.seconds(t["suppress"], in: 0...2_592_000) { rules.suppressSeconds = v }
        if let v = r.int(t["max_pairs"], in: 16...10_000_000) { rules.maxPairs = v }
        if let v = r.int(t["max_samples"], in: 8...100_000) { rules.maxSamples = v }
        if let v = RuleReading.directions(t["directions"], &r) { rules.directions = v }
        if let iv = t["ignore"] {
            let i = r.table(iv, allowed: ["udp_ports", "tcp_ports", "destinations", "sources", "hosts"])
            if let v = RuleReading.ports(i["udp_ports"], &r) { rules.ignoreUDPPorts = v }
            if let v = RuleReading.ports(i["tcp_ports"], &r) { rules.ignoreTCPPorts = v }
            if let v = RuleReading.networks(i["destinations"], &r) { rules.ignoreDestinations = v }
            if let v = RuleReading.networks(i["sources"], &r) { rules.ignoreSources = v }
            if let v = r.stringList(i["hosts"]) { rules.ignoreHosts = v.map { $0.lowercased() } }
        }
        if !r.issues.isEmpty { throw ConfigIssues(r.issues) }
        return rules
    }

    func ignoresHost(_ host: String) -> Bool {
        ignoreHosts.contains { $0.hasPrefix(".") ? host.hasSuffix($0) || "." + host == $0 : host == $0 }
    }
}
