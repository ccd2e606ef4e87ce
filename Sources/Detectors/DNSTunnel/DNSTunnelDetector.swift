#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Analyzers
import Events
import PacketCore

/// Counters of the tunnelling detector.
public struct DNSTunnelCounters: Sendable, Equatable {
    public var queries: UInt64 = 0
    public var allowlisted: UInt64 = 0
    public var withoutDomain: UInt64 = 0
    public var pairsCreated: UInt64 = 0
    public var pairsEvicted: UInt64 = 0
    public var pairsExpired: UInt64 = 0
    public var alerts: UInt64 = 0
    public var suppressed: UInt64 = 0
    public init() {}
}

/// Finds DNS tunnels (iodine, dnscat2, dns2tcp, custom TXT/NULL channels) and data smuggled out in names.
///
/// Per (client, registered domain) it keeps a sliding packet-clock window of buckets with the features
/// tunnels cannot avoid: many unique subdomains, long names and labels, high character entropy in the
/// subdomain, record types ordinary clients rarely ask for (TXT, NULL, CNAME, MX, …), query rate,
/// bytes carried in names and answers, and NXDOMAIN share. Each feature earns points between two
/// thresholds from `Rules/dns-tunneling.yaml`; a pair whose total reaches the alert score (with enough
/// queries) raises a `dns_tunneling` alert (MITRE T1071.004, plus T1048.003 when the bytes carried
/// upstream reach the exfiltration threshold). A second rule catches a single query whose subdomain
/// alone is a long, high-entropy blob (one-shot exfiltration). Pairs are bounded (least recently active
/// evicted and counted), alerts are rate-limited per pair, and the allowlist skips domains that
/// legitimately look like this (reputation lookups, CDNs, DNS-SD, reverse zones).
public final class DNSTunnelDetector: DNSMessageObserver {
    public let name = "dns-tunneling"
    public private(set) var rules: DNSTunnelRules
    let emitter: EventEmitter
    public private(set) var counters = DNSTunnelCounters()

    struct PairKey: Hashable {
        var client: IPAddress
        var domain: UInt64
    }

    /// One bucket of a pair's window.
    struct Bucket {
        var number: Int64 = .min
        /// Linear-counting bitmap of subdomain hashes (unique subdomains without storing them).
        var seen: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        var queries: UInt32 = 0
        var responses: UInt32 = 0
        var nxdomain: UInt32 = 0
        var unusual: UInt32 = 0
        var subdomainLengthSum: UInt32 = 0
        var maxSubdomainLength: UInt16 = 0
        var maxLabel: UInt16 = 0
        var entropySum: Float = 0
        var nameBytes: UInt32 = 0
        var answerBytes: UInt32 = 0
    }

    struct Pair {
        var key: PairKey
        var domain: String
        var server: IPAddress
        var serverPort: UInt16
        var ipProtocol: UInt8
        var lastSeen: Timestamp
        /// Last alert per rule (channel, single name): each rule speaks once per rate-limit interval.
        var lastAlert: (Timestamp?, Timestamp?) = (nil, nil)
        /// The last alert already named exfiltration; crossing the threshold later escalates once.
        var alertedExfiltration = false
        var suppressed: UInt64 = 0
        var samples: [String] = []
        var prev: Int32 = -1
        var next: Int32 = -1
        var used = true
    }

    /// Window totals of one pair.
    public struct Features: Sendable, Equatable {
        public var queries = 0
        public var responses = 0
        public var uniqueSubdomains = 0
        public var meanSubdomainLength = 0.0
        public var maxSubdomainLength = 0
        public var maxLabelLength = 0
        public var meanEntropy = 0.0
        public var unusualShare = 0.0
        public var queriesPerMinute = 0.0
        public var nameBytes = 0
        public var answerBytes = 0
        public var nxdomainShare = 0.0
    }

    var pairs: [Pair] = []
    var buckets: [Bucket] = []
    var index: [PairKey: Int32] = [:]
    var freeList: [Int32] = []
    var lruHead: Int32 = -1
    var lruTail: Int32 = -1
    let bucketWidth: Int64
    var idleTimeout: Timestamp.Duration
    var allow: [[UInt8]]

    public init(rules: DNSTunnelRules, emitter: EventEmitter) {
        self.rules = rules
        self.emitter = emitter
        bucketWidth = max(1, Timestamp.Duration.seconds(rules.windowSeconds).nanoseconds / Int64(max(1, rules.buckets)))
        idleTimeout = .seconds(max(rules.windowSeconds, rules.rateLimitSeconds))
        allow = rules.allowlist.map { Array($0.utf8) }
        index.reserveCapacity(min(rules.maxPairs, 1 << 16))
    }

    public var activePairs: Int { index.count }

    /// New rules on SIGHUP: thresholds, weights, allowlist and rate limit change and every pair's window
    /// is kept. The window's geometry (`window`, `buckets`) is what the kept buckets mean, so it stays
    /// until restart; returns false when the new rules asked to change it.
    @discardableResult
    public func apply(_ newRules: DNSTunnelRules) -> Bool {
        var r = newRules
        let sameGeometry = r.windowSeconds == rules.windowSeconds && r.buckets == rules.buckets
        r.windowSeconds = rules.windowSeconds
        r.buckets = rules.buckets
        rules = r
        idleTimeout = .seconds(max(r.windowSeconds, r.rateLimitSeconds))
        allow = r.allowlist.map { Array($0.utf8) }
        return sameGeometry
    }

    // MARK: Clock (driven by the DNS analyser, so the detector costs nothing on other packets)

    public func dnsTick(_ now: Timestamp) { tick(now) }

    public func tick(_ now: Timestamp) {
        // Pairs idle for longer than the window and the rate limit hold nothing worth keeping.
        while lruHead >= 0 && now - pairs[Int(lruHead)].lastSeen > idleTimeout {
            counters.pairsExpired &+= 1
            release(lruHead)
        }
    }

    // MARK: Facts

    public func dnsMessage(_ f: DNSMessageFacts) {
        guard rules.enabled else { return }
        if rules.ignoreMulticastDNS && (f.appProtocol == .mdns || f.appProtocol == .llmnr) { return }
        guard f.registeredDomainStart >= 0, !f.lowercaseName.isEmpty else {
            if !f.isResponse { counters.withoutDomain &+= 1 }
            return
        }
        let lower = f.lowercaseName
        if isAllowlisted(lower) {
            if !f.isResponse { counters.allowlisted &+= 1 }
            return
        }
        let reg = f.registeredDomainStart
        let domainHash = fnv(lower, reg, lower.count)
        let key = PairKey(client: f.client, domain: domainHash)
        if !f.isResponse { counters.queries &+= 1 }

        var p: Int32
        if let existing = index[key] {
            p = existing
            touch(p)
        } else {
            // A response for a pair we never saw a query of adds nothing to score.
            if f.isResponse { return }
            p = create(key, domain: UnsafeRawBufferPointer(rebasing: lower[reg...]), facts: f)
        }
        let b = bucket(of: p, at: f.timestamp)
        pairs[Int(p)].lastSeen = max(pairs[Int(p)].lastSeen, f.timestamp)

        if f.isResponse {
            if b >= 0 {
                buckets[b].responses &+= 1
                if f.responseCode == 3 { buckets[b].nxdomain &+= 1 }
                buckets[b].answerBytes &+= UInt32(clamping: f.answerDataBytes)
            }
            return
        }

        // Subdomain: everything left of the registered domain (without the joining dot).
        let subLength = max(0, reg - 1)
        let sub = UnsafeRawBufferPointer(rebasing: f.name[..<subLength])
        let (entropy, maxLabel) = DNSTunnelDetector.entropyAndLongestLabel(sub)
        pairs[Int(p)].server = f.server
        pairs[Int(p)].serverPort = f.serverPort
        if b >= 0 {
            let h = fnv(lower, 0, subLength)
            let bit = Int(h & 255)
            withUnsafeMutableBytes(of: &buckets[b].seen) { raw in
                let words = raw.bindMemory(to: UInt64.self)
                words[bit >> 6] |= 1 << UInt64(bit & 63)
            }
            buckets[b].queries &+= 1
            if DNSRecordType.isUnusualForClients(f.queryType) { buckets[b].unusual &+= 1 }
            buckets[b].subdomainLengthSum &+= UInt32(subLength)
            buckets[b].maxSubdomainLength = max(buckets[b].maxSubdomainLength, UInt16(subLength))
            buckets[b].maxLabel = max(buckets[b].maxLabel, UInt16(maxLabel))
            buckets[b].entropySum += Float(entropy)
            buckets[b].nameBytes &+= UInt32(subLength)
        }

        let features = self.features(p)
        let score = self.score(features)
        let single = rules.singleNameEnabled && subLength >= rules.singleNameMinLength && maxLabel >= rules.singleNameMinLabel
            && entropy >= rules.singleNameMinEntropy
        let channel = features.queries >= rules.minQueries && score >= rules.alertScore
        if (score >= rules.sampleScore || single) && pairs[Int(p)].samples.count < rules.samples {
            let text = String(decoding: f.name, as: UTF8.self)
            if !pairs[Int(p)].samples.contains(text) { pairs[Int(p)].samples.append(text) }
        }
        guard channel || single else { return }
        let rule: Rule = channel ? .channel : .singleName
        // A channel alert may follow a single-name one (it tells more); a single name after a channel
        // alert adds nothing.
        let alerted = pairs[Int(p)].lastAlert
        let last = rule == .channel ? alerted.0 : (alerted.0.map { c in alerted.1.map { max(c, $0) } ?? c } ?? alerted.1)
        let escalation = channel && features.nameBytes >= rules.exfiltrationBytes && !pairs[Int(p)].alertedExfiltration
        if let last, !escalation, f.timestamp - last < .seconds(rules.rateLimitSeconds) {
            pairs[Int(p)].suppressed &+= 1
            counters.suppressed &+= 1
            return
        }
        raise(p, features: features, score: channel ? score : max(score, rules.alertScore), rule: rule, facts: f)
    }

    func isAllowlisted(_ name: UnsafeRawBufferPointer) -> Bool {
        let n = name.count
        for a in allow where a.count <= n {
            let start = n - a.count
            guard start == 0 || name[start - 1] == 0x2E else { continue }
            var same = true
            for k in 0..<a.count where name[start + k] != a[k] { same = false; break }
            if same { return true }
        }
        return false
    }

    func fnv(_ b: UnsafeRawBufferPointer, _ from: Int, _ to: Int) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        var i = from
        while i < to { h = (h ^ UInt64(b[i])) &* 0x100_0000_01b3; i += 1 }
        return h
    }

    /// Shannon entropy (bits per character) of the subdomain's characters without the dots, and its
    /// longest label.
    static func entropyAndLongestLabel(_ s: UnsafeRawBufferPointer) -> (Double, Int) {
        withUnsafeTemporaryAllocation(of: UInt16.self, capacity: 256) { counts -> (Double, Int) in
            counts.initialize(repeating: 0)
            var n = 0, label = 0, longest = 0
            for c in s {
                if c == 0x2E { label = 0; continue }
                counts[Int(c)] &+= 1
                n += 1
                label += 1
                longest = max(longest, label)
            }
            guard n > 1 else { return (0, longest) }
            var sum = 0.0
            for c in counts where c > 1 { sum += Double(c) * log2(Double(c)) }
            return (log2(Double(n)) - sum / Double(n), longest)
        }
    }

    // MARK: Window

    /// The bucket for time `t` in the pair's ring, advancing (and clearing) as the clock moves; -1 when
    /// `t` is older than the window.
    func bucket(of p: Int32, at t: Timestamp) -> Int {
        let number = t.nanoseconds / bucketWidth
        let base = Int(p) * rules.buckets
        let slot = Int(number % Int64(rules.buckets))
        let b = base + (slot < 0 ? slot + rules.buckets : slot)
        if buckets[b].number == number { return b }
        if buckets[b].number > number { return -1 }
        buckets[b] = Bucket()
        buckets[b].number = number
        return b
    }

    func features(_ p: Int32) -> Features {
        var f = Features()
        let base = Int(p) * rules.buckets
        var newest: Int64 = .min
        for i in 0..<rules.buckets { newest = max(newest, buckets[base + i].number) }
        var seen: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        var lengthSum = 0
        var entropySum = 0.0
        var unusual = 0, nx = 0
        var oldest = newest
        for i in 0..<rules.buckets {
            let b = buckets[base + i]
            guard b.number != .min, b.number > newest &- Int64(rules.buckets) else { continue }
            oldest = min(oldest, b.number)
            seen.0 |= b.seen.0; seen.1 |= b.seen.1; seen.2 |= b.seen.2; seen.3 |= b.seen.3
            f.queries += Int(b.queries)
            f.responses += Int(b.responses)
            nx += Int(b.nxdomain)
            unusual += Int(b.unusual)
            lengthSum += Int(b.subdomainLengthSum)
            f.maxSubdomainLength = max(f.maxSubdomainLength, Int(b.maxSubdomainLength))
            f.maxLabelLength = max(f.maxLabelLength, Int(b.maxLabel))
            entropySum += Double(b.entropySum)
            f.nameBytes += Int(b.nameBytes)
            f.answerBytes += Int(b.answerBytes)
        }
        guard f.queries > 0 else { return f }
        // Linear counting over 256 bits.
        let zeros = 256 - seen.0.nonzeroBitCount - seen.1.nonzeroBitCount - seen.2.nonzeroBitCount - seen.3.nonzeroBitCount
        let estimate = zeros == 0 ? 256 * log(256.0) : -256 * log(Double(zeros) / 256)
        f.uniqueSubdomains = min(f.queries, Int(estimate.rounded()))
        f.meanSubdomainLength = Double(lengthSum) / Double(f.queries)
        f.meanEntropy = entropySum / Double(f.queries)
        f.unusualShare = Double(unusual) / Double(f.queries)
        f.nxdomainShare = f.responses > 0 ? Double(nx) / Double(f.responses) : 0
        // Rate over the part of the window in use (at least a minute, so bursts of a few are not inflated).
        let spanSeconds = max(60, Double(newest - oldest + 1) * Double(bucketWidth) / 1e9)
        f.queriesPerMinute = Double(f.queries) * 60 / spanSeconds
        return f
    }

    public func score(_ f: Features) -> Double {
        var s = rules.uniqueSubdomains.points(Double(f.uniqueSubdomains))
        s += rules.subdomainLength.points(f.meanSubdomainLength)
        s += rules.labelLength.points(Double(f.maxLabelLength))
        s += rules.entropy.points(f.meanEntropy)
        s += rules.unusualTypes.points(f.unusualShare)
        s += rules.queryRate.points(f.queriesPerMinute)
        s += rules.bytes.points(Double(f.nameBytes + f.answerBytes))
        s += rules.nxdomain.points(f.nxdomainShare)
        return min(100, s)
    }

    // MARK: Pairs (bounded, least recently active evicted)

    func create(_ key: PairKey, domain: UnsafeRawBufferPointer, facts f: DNSMessageFacts) -> Int32 {
        if index.count >= rules.maxPairs, lruHead >= 0 {
            counters.pairsEvicted &+= 1
            release(lruHead)
        }
        counters.pairsCreated &+= 1
        let pair = Pair(key: key, domain: String(decoding: domain, as: UTF8.self), server: f.server, serverPort: f.serverPort,
                        ipProtocol: f.ipProtocol, lastSeen: f.timestamp)
        let p: Int32
        if let free = freeList.popLast() {
            p = free
            pairs[Int(p)] = pair
            for i in 0..<rules.buckets { buckets[Int(p) * rules.buckets + i] = Bucket() }
        } else {
            p = Int32(pairs.count)
            pairs.append(pair)
            buckets.append(contentsOf: repeatElement(Bucket(), count: rules.buckets))
        }
        index[key] = p
        linkTail(p)
        return p
    }

    func release(_ p: Int32) {
        unlink(p)
        index[pairs[Int(p)].key] = nil
        pairs[Int(p)].used = false
        pairs[Int(p)].samples = []
        pairs[Int(p)].domain = ""
        freeList.append(p)
    }

    func linkTail(_ p: Int32) {
        pairs[Int(p)].prev = lruTail
        pairs[Int(p)].next = -1
        if lruTail >= 0 { pairs[Int(lruTail)].next = p } else { lruHead = p }
        lruTail = p
    }

    func unlink(_ p: Int32) {
        let prev = pairs[Int(p)].prev, next = pairs[Int(p)].next
        if prev >= 0 { pairs[Int(prev)].next = next } else { lruHead = next }
        if next >= 0 { pairs[Int(next)].prev = prev } else { lruTail = prev }
        pairs[Int(p)].prev = -1
        pairs[Int(p)].next = -1
    }

    func touch(_ p: Int32) {
        guard lruTail != p else { return }
        unlink(p)
        linkTail(p)
    }

    // MARK: Alerts

    enum Rule { case channel, singleName }


    func raise(_ p: Int32, features f: Features, score: Double, rule: Rule, facts: DNSMessageFacts) {
        let pair = pairs[Int(p)]
        if rule == .channel { pairs[Int(p)].lastAlert.0 = facts.timestamp } else { pairs[Int(p)].lastAlert.1 = facts.timestamp }
        pairs[Int(p)].suppressed = 0
        counters.alerts &+= 1
        let exfil = f.nameBytes >= rules.exfiltrationBytes
        if exfil { pairs[Int(p)].alertedExfiltration = true }
        var techniques = [Technique.dnsProtocol]
        if exfil { techniques.append(.exfiltrationOverUnencryptedNonC2) }
        let severity: Severity = score >= 85 || exfil ? .high : .medium
        let ruleID = rule == .channel ? "dns_tunneling.channel" : "dns_tunneling.single_name"
        let ruleName = rule == .channel ? "DNS tunnel: encoded traffic to one domain" : "DNS tunnel: encoded data in a query name"
        let description = rule == .channel
            ? "A client's queries under one registered domain, over a sliding window, score high on subdomain length, entropy, uniqueness, unusual record types and rate (Rules/dns-tunneling.yaml)."
            : "One query name carries a long, high-entropy subdomain, the shape of data encoded into DNS (Rules/dns-tunneling.yaml)."
        func r2(_ x: Double) -> Double { (x * 100).rounded() / 100 }
        let details: [(String, JSONValue)] = [
            ("domain", .string(pair.domain)),
            ("client", .ip(pair.key.client)),
            ("server", .ip(pair.server)),
            ("rule", .string(rule == .channel ? "channel" : "single_name")),
            ("score", .double(r2(score))),
            ("window_seconds", .double(rules.windowSeconds)),
            ("queries", .int(Int64(f.queries))),
            ("responses", .int(Int64(f.responses))),
            ("unique_subdomains", .int(Int64(f.uniqueSubdomains))),
            ("mean_subdomain_length", .double(r2(f.meanSubdomainLength))),
            ("max_subdomain_length", .int(Int64(f.maxSubdomainLength))),
            ("max_label_length", .int(Int64(f.maxLabelLength))),
            ("mean_entropy", .double(r2(f.meanEntropy))),
            ("unusual_type_share", .double(r2(f.unusualShare))),
            ("queries_per_minute", .double(r2(f.queriesPerMinute))),
            ("name_bytes", .int(Int64(f.nameBytes))),
            ("answer_bytes", .int(Int64(f.answerBytes))),
            ("nxdomain_share", .double(r2(f.nxdomainShare))),
            ("exfiltration", .bool(exfil)),
            ("suppressed_alerts", .int(Int64(pair.suppressed))),
            ("sample_queries", .array(pair.samples.map { .string($0) })),
        ]
        let alert = Alert(
            timestamp: facts.timestamp, category: .dnsTunneling, ruleID: ruleID, ruleName: ruleName, ruleDescription: description,
            techniques: techniques, severity: severity, riskScore: r2(score),
            message: "Possible DNS tunnel from \(pair.key.client) through \(pair.server) to \(pair.domain): \(f.queries) queries, \(f.uniqueSubdomains) unique subdomains, mean entropy \(r2(f.meanEntropy)) bits/char, \(f.nameBytes) bytes in names",
            source: Endpoint(ip: pair.key.client), destination: Endpoint(ip: pair.server, port: pair.serverPort),
            ipProtocol: pair.ipProtocol, relatedIPs: [pair.key.client, pair.server], relatedHosts: [pair.domain],
            details: details)
        emitter.emit(alert)
    }
}
