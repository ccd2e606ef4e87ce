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
    public var directions: Set<NetworkDirection> = [.outbound, .internal, .external]
    /// Infrastructure chatter that is periodic by design (DNS, NTP, NetBIOS, mDNS, LLMNR, SSDP, DHCP).
    public var ignoreUDPPorts = PortSet([53...53, 67...68, 123...123, 137...138, 514...514, 1900...1900, 5353...5353, 5355...5355])
    public var ignoreTCPPorts = PortSet()
    public var ignoreDestinations: [IPNetwork] = []
    public var ignoreSources: [IPNetwork] = []
    /// SNI/Host names (exact, or `.suffix`) that are never scored: operating-system and browser update,
    /// telemetry and connectivity checks, antivirus updates — periodic by design on every host. The
    /// name is the client's word (SNI, Host), so only names no attacker can serve from are listed.
    public var ignoreHosts: [String] = BeaconRules.defaultIgnoredHosts { didSet { asciiIgnoreHosts = Self.ascii(ignoreHosts) } }
    /// `ignoreHosts` as bytes when every entry is ASCII (nil otherwise), for `ignoresHost`.
    var asciiIgnoreHosts: [[UInt8]]? = BeaconRules.ascii(BeaconRules.defaultIgnoredHosts)
    /// Pairs with at least this many starts within one window-long period are a strobe: reported as
    /// such and not scored (RITA: 86,400 a day).
    public var strobeConnections = 86_400
    public var longConnection = LongConnection()
    public var prevalence = Prevalence()

    /// RITA's long-connection finding: one connection of a pair lasting at least `minimumSeconds`;
    /// medium from `mediumSeconds`, high from `highSeconds`; only a continuous one (a packet every
    /// `maxAverageGapSeconds` on average).
    public struct LongConnection: Sendable, Equatable {
        public var minimumSeconds = 4 * 3600.0
        public var mediumSeconds = 8 * 3600.0
        public var highSeconds = 12 * 3600.0
        /// A connection averages at least one packet per this many seconds, or it is no connection.
        public var maxAverageGapSeconds = 600.0
        public init() {}
    }

    /// How many internal hosts talking to a destination lowers its pairs' scores: from `minSources`
    /// hosts, the score is multiplied by 1 − `impact` × max(share of internal hosts, hosts / `popularSources`).
    public struct Prevalence: Sendable, Equatable {
        public var minSources = 3
        public var popularSources = 32
        public var impact = 0.5
        public init() {}
    }

    public static let defaultIgnoredHosts = [
        ".windowsupdate.com", ".update.microsoft.com", ".delivery.mp.microsoft.com", ".events.data.microsoft.com",
        ".settings-win.data.microsoft.com", ".msftconnecttest.com", ".msftncsi.com",
        ".push.apple.com", ".mesu.apple.com", ".swcdn.apple.com",
        ".update.googleapis.com", ".gvt1.com", "connectivitycheck.gstatic.com",
        ".aus5.mozilla.org", ".telemetry.mozilla.org", "detectportal.firefox.com",
        "connectivity-check.ubuntu.com", "motd.ubuntu.com", "api.snapcraft.io",
        ".symantecliveupdate.com", ".kaspersky-labs.com", ".eset.com", ".avast.com", ".avg.com", ".sophosupd.com",
        ".bitdefender.net", ".trendmicro.com",
    ]

    public init() {}

    static let keys: Set<String> = ["enabled", "threshold", "min_starts", "merge_window", "min_interval", "jitter_tolerance",
                                    "jitter_band", "min_dispersion_cutoff", "size_dispersion_cutoff", "size_tolerance", "skew_min_iqr_seconds",
                                    "skew_min_iqr_bytes", "confidence_intervals", "max_bins", "weights", "window", "evaluate_every",
                                    "suppress", "max_pairs", "max_samples", "directions", "ignore", "prevalence", "strobe",
                                    "long_connection"]

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
        if let v = r.double(t["jitter_band"], in: 0.01...10) { rules.scoring.jitterBand = v }
        if let v = r.seconds(t["min_dispersion_cutoff"], in: 0.001...86_400) { rules.scoring.minDispersionCutoffSeconds = v }
        if let v = r.double(t["size_dispersion_cutoff"], in: 1...1e9) { rules.scoring.sizeDispersionCutoffBytes = v }
        if let v = r.double(t["size_tolerance"], in: 0...10) { rules.scoring.sizeTolerance = v }
        if let v = r.double(t["skew_min_iqr_seconds"], in: 0...86_400) { rules.scoring.skewMinIQRSeconds = v }
        if let v = r.double(t["skew_min_iqr_bytes"], in: 0...1e9) { rules.scoring.skewMinIQRBytes = v }
        if let v = r.double(t["confidence_intervals"], in: 0.1...1000) { rules.scoring.confidenceIntervals = v }
        if let v = r.int(t["max_bins"], in: 4...1000) { rules.scoring.maxBins = v }
        if let wv = t["weights"] {
            let w = r.table(wv, allowed: ["interval_skew", "interval_dispersion", "interval_band", "size_skew", "size_dispersion", "histogram", "duration"])
            if let v = r.double(w["interval_skew"], in: 0...100) { rules.scoring.weights.intervalSkew = v }
            if let v = r.double(w["interval_dispersion"], in: 0...100) { rules.scoring.weights.intervalDispersion = v }
            if let v = r.double(w["size_skew"], in: 0...100) { rules.scoring.weights.sizeSkew = v }
            if let v = r.double(w["size_dispersion"], in: 0...100) { rules.scoring.weights.sizeDispersion = v }
            if let v = r.double(w["histogram"], in: 0...100) { rules.scoring.weights.histogram = v }
            if let v = r.double(w["duration"], in: 0...100) { rules.scoring.weights.duration = v }
            if let v = r.double(w["interval_band"], in: 0...100) { rules.scoring.weights.intervalBand = v }
            if rules.scoring.weights.total <= 0 { r.report(wv, "at least one weight must be positive") }
        }
        if let v = r.seconds(t["window"], in: 60...2_592_000) { rules.windowSeconds = v }
        if let v = r.seconds(t["evaluate_every"], in: 1...86_400) { rules.evaluateEverySeconds = v }
        if let v = r.seconds(t["suppress"], in: 0...2_592_000) { rules.suppressSeconds = v }
        if let v = r.int(t["max_pairs"], in: 16...10_000_000) { rules.maxPairs = v }
        if let v = r.int(t["max_samples"], in: 8...100_000) { rules.maxSamples = v }
        if let v = RuleReading.directions(t["directions"], &r) { rules.directions = v }
        if let pv = t["prevalence"] {
            let p = r.table(pv, allowed: ["min_sources", "popular_sources", "impact"])
            if let v = r.int(p["min_sources"], in: 2...64) { rules.prevalence.minSources = v }
            if let v = r.int(p["popular_sources"], in: 2...64) { rules.prevalence.popularSources = v }
            if let v = r.double(p["impact"], in: 0...1) { rules.prevalence.impact = v }
        }
        if let sv = t["strobe"] {
            let st = r.table(sv, allowed: ["connections"])
            if let v = r.int(st["connections"], in: 16...100_000_000) { rules.strobeConnections = v }
        }
        if let lv = t["long_connection"] {
            let l = r.table(lv, allowed: ["minimum", "medium", "high", "max_average_gap"])
            if let v = r.seconds(l["minimum"], in: 60...2_592_000) { rules.longConnection.minimumSeconds = v }
            if let v = r.seconds(l["medium"], in: 60...2_592_000) { rules.longConnection.mediumSeconds = v }
            if let v = r.seconds(l["high"], in: 60...2_592_000) { rules.longConnection.highSeconds = v }
            if let v = r.seconds(l["max_average_gap"], in: 1...86_400) { rules.longConnection.maxAverageGapSeconds = v }
        }
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

    /// Whether `host` is allowlisted: equal to an entry, or under an entry that starts with a dot.
    /// Called for every HTTP request and flow end, so ASCII names (nearly all) are compared as bytes,
    /// which for ASCII is what String's comparisons decide; any other goes through String.
    func ignoresHost(_ host: String) -> Bool {
        if let entries = asciiIgnoreHosts, let hit = host.utf8.withContiguousStorageIfAvailable({ h -> Bool? in
            guard !h.contains(where: { $0 >= 0x80 }) else { return nil }
            return entries.contains { e in
                guard e.first == 0x2E else { return h.elementsEqual(e) }
                return (h.count >= e.count && h[(h.count - e.count)...].elementsEqual(e))
                    || (h.count &+ 1 == e.count && h.elementsEqual(e[1...]))
            }
        }), let hit {
            return hit
        }
        return ignoreHosts.contains { Self.matches(host, $0) }
    }

    static func ascii(_ hosts: [String]) -> [[UInt8]]? {
        hosts.allSatisfy { $0.utf8.allSatisfy { $0 < 0x80 } } ? hosts.map { Array($0.utf8) } : nil
    }

    static func matches(_ host: String, _ entry: String) -> Bool {
        entry.hasPrefix(".") ? host.hasSuffix(entry) || "." + host == entry : host == entry
    }
}
