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
    /// Queries without a name (the root, or no question).
    public var withoutDomain: UInt64 = 0
    /// Queries judged per (client, resolver): no registered domain under a listed top-level domain.
    public var resolverAggregated: UInt64 = 0
    /// Messages judged without a resolver search suffix; suffixes learned from traffic, pairings for new
    /// ones dropped at the learned bound, and clears of the full candidate table.
    public var searchSuffixStripped: UInt64 = 0
    public var searchSuffixesLearned: UInt64 = 0
    public var searchSuffixesDropped: UInt64 = 0
    public var searchSuffixCandidatesCleared: UInt64 = 0
    public var pairsCreated: UInt64 = 0
    public var pairsEvicted: UInt64 = 0
    public var pairsExpired: UInt64 = 0
    public var alerts: UInt64 = 0
    public var suppressed: UInt64 = 0
    public init() {}
}

/// Finds DNS tunnels (iodine, dnscat2, dns2tcp, custom TXT/NULL channels) and data smuggled out in names.
///
/// A name is first stripped of a resolver search suffix (`DNSSearchSuffixes`, or structurally: a tail
/// under a top-level domain the Public Suffix List does not list, left of which stands a name with a
/// listed one), then aggregated: per (client, registered domain) when it has a registered domain under a
/// listed top-level domain, else per (client, resolver) — which is where a tunnel speaking straight to
/// its server without a domain (dnscat2's direct mode, `<hex>.<hex>`) lands, every query with a
/// different "registered domain". Each aggregate keeps a sliding packet-clock window of buckets with the
/// features tunnels cannot avoid: many unique names, long names and labels, high character entropy,
/// record types ordinary clients rarely ask for (TXT, NULL, CNAME, MX, …), query rate, bytes carried,
/// NXDOMAIN share, and the payload the answers carry back (size and entropy, counted as far as the
/// answers differ from one another). Descriptive names (mostly pronounceable words) lose points. Each
/// feature earns points between two thresholds from `Rules/dns-tunneling.yaml`; an aggregate whose total
/// reaches the alert score (with enough queries and unique names) raises a `dns_tunneling` alert (MITRE
/// T1071.004, plus T1048.003 when the bytes carried upstream reach the exfiltration threshold). A second
/// rule catches a single query whose subdomain alone is a long, high-entropy, non-descriptive blob.
/// Aggregates are bounded (least recently active evicted and counted), alerts are rate-limited per
/// aggregate, and the allowlist skips zones that legitimately look like this (reputation lookups, CDNs,
/// reverse zones), judged on the name without its search suffix: an internal zone on the allowlist
/// never hides an outside name a search suffix was appended to.
public final class DNSTunnelDetector: DNSMessageObserver {
    public let name = "dns-tunneling"
    public private(set) var rules: DNSTunnelRules
    let emitter: EventEmitter
    public private(set) var counters = DNSTunnelCounters()

    struct PairKey: Hashable {
        var client: IPAddress
        var domain: UInt64
    }

    /// What a pair aggregates.
    enum Aggregate { case registeredDomain, resolver }

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
        /// Letters in word-like runs, and letters plus digits, of the subdomains.
        var wordChars: UInt32 = 0
        var alphanumerics: UInt32 = 0
        /// Responses whose answers carried payload, its characters, entropy × characters, and a
        /// linear-counting bitmap of the payloads' hashes.
        var payloadResponses: UInt32 = 0
        var payloadBytes: UInt32 = 0
        var payloadEntropyWeighted: Float = 0
        var payloadSeen: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
    }

    struct Pair {
        var key: PairKey
        var aggregate: Aggregate
        /// The registered domain (per resolver: the first query's, while every query shares it).
        var domain: String
        var domainHash: UInt64
        var domainStable = true
        /// The last search suffix stripped from this pair's names.
        var searchSuffix: String?
        var searchSuffixHash: UInt64 = 0
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
        /// Share of the subdomains' letters and digits in word-like runs (`DNSNameShape`).
        public var wordShare = 0.0
        /// Responses with answer payload, their mean payload characters and entropy (bits/char), and the
        /// estimated number of distinct payloads.
        public var payloadResponses = 0
        public var meanAnswerPayload = 0.0
        public var answerEntropy = 0.0
        public var uniqueAnswers = 0
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
    let publicSuffixList: PublicSuffixList?
    var searchSuffixes: DNSSearchSuffixes

    /// Without a Public Suffix List (tests that feed facts) the message's own split is trusted, every
    /// top-level domain counts as listed, and no search suffix is stripped.
    public init(rules: DNSTunnelRules, emitter: EventEmitter, publicSuffixList: PublicSuffixList? = nil) {
        self.rules = rules
        self.emitter = emitter
        self.publicSuffixList = publicSuffixList
        searchSuffixes = DNSSearchSuffixes(rules: rules)
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
        searchSuffixes.apply(r)
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

    /// How a message's name is judged: its first `end` bytes (a search suffix cut off), the registered
    /// domain's start within them, and whether that domain stands under a listed top-level domain.
    struct Judged {
        var end: Int
        var registered: Int
        var listed: Bool
        /// Whether the whole name's top-level domain is listed.
        var wholeListed: Bool
        /// Where the stripped search suffix starts (-1: none).
        var suffixStart = -1
    }

    func judge(_ f: DNSMessageFacts) -> Judged {
        let lower = f.lowercaseName
        let n = lower.count
        guard let psl = publicSuffixList else {
            return Judged(end: n, registered: f.registeredDomainStart, listed: f.registeredDomainStart >= 0, wholeListed: f.registeredDomainStart >= 0)
        }
        // A head judged on its own: a registered domain under a listed top-level domain.
        func headRegistered(_ end: Int) -> Int? {
            let head = UnsafeRawBufferPointer(rebasing: lower[..<end])
            guard psl.listsTopLevel(of: head), let r = psl.split(head)?.registered else { return nil }
            return r
        }
        let listed = psl.listsTopLevel(of: lower)
        let (cuts, count) = DNSSearchSuffixes.cuts(lower)
        if count > 0 && !searchSuffixes.isEmpty {
            // The longest known suffix first (`ns.svc.cluster.local` before `cluster.local`).
            for k in stride(from: count, through: 1, by: -1) {
                let end = DNSSearchSuffixes.cut(cuts, k)
                guard searchSuffixes.contains(DNSSearchSuffixes.hash(lower, end + 1, n), client: f.client), let r = headRegistered(end) else { continue }
                return Judged(end: end, registered: r, listed: true, wholeListed: listed, suffixStart: end + 1)
            }
        }
        if !listed {
            // Structurally: an unlisted tail (`corp.local`) after a name that stands on its own.
            for k in stride(from: 1, through: count, by: 1) {
                let end = DNSSearchSuffixes.cut(cuts, k)
                if let r = headRegistered(end) { return Judged(end: end, registered: r, listed: true, wholeListed: false, suffixStart: end + 1) }
            }
        }
        return Judged(end: n, registered: f.registeredDomainStart, listed: listed, wholeListed: listed)
    }

    public func dnsMessage(_ f: DNSMessageFacts) {
        guard rules.enabled else { return }
        if rules.ignoreMulticastDNS && (f.appProtocol == .mdns || f.appProtocol == .llmnr) { return }
        let lower = f.lowercaseName
        guard !lower.isEmpty else {
            if !f.isResponse { counters.withoutDomain &+= 1 }
            return
        }
        if !f.isResponse, let psl = publicSuffixList {
            let learned = searchSuffixes.observe(lower, client: f.client, at: f.timestamp) { end in
                let head = UnsafeRawBufferPointer(rebasing: lower[..<end])
                return psl.listsTopLevel(of: head) && psl.split(head)?.registered != nil
            }
            if learned { counters.searchSuffixesLearned &+= 1 }
            counters.searchSuffixesDropped = searchSuffixes.learnedDropped
            counters.searchSuffixCandidatesCleared = searchSuffixes.candidatesCleared
        }
        let judged = judge(f)
        // The allowlist judges the name without its search suffix: an internal zone it lists never hides
        // an outside name that merely had the suffix appended.
        if isAllowlisted(UnsafeRawBufferPointer(rebasing: lower[..<judged.end])) {
            if !f.isResponse { counters.allowlisted &+= 1 }
            return
        }
        if !f.isResponse {
            counters.queries &+= 1
            if judged.suffixStart >= 0 { counters.searchSuffixStripped &+= 1 }
        }
        let primary = target(judged, f)
        // A stripped name also counts where it stood before stripping: whoever can make the sensor
        // strip a tail (a learned suffix, an unlisted tail in direct mode) must not scatter a channel
        // over one-query "registered domains" (`<data>.com.evil.com`).
        let secondary = judged.suffixStart >= 0
            ? target(Judged(end: lower.count, registered: f.registeredDomainStart, listed: judged.wholeListed, wholeListed: judged.wholeListed), f) : nil
        if !f.isResponse && (primary.aggregate == .resolver || secondary?.aggregate == .resolver) { counters.resolverAggregated &+= 1 }
        guard let first = feed(primary, f) else {
            if let secondary { _ = feed(secondary, f) }
            return
        }
        decide(first, f)
        // The place before stripping speaks only for names scattered by stripping: a stripped domain seen
        // once in its window. Names that gather under their stripped domain are judged there (and not
        // a second time under the suffix's zone).
        if let secondary, let second = feed(secondary, f), first.features.queries <= 1 { decide(second, f) }
    }

    /// Where a judged name is aggregated.
    struct Target {
        var aggregate: Aggregate
        var key: PairKey
        /// Registered domain start (0 when there is none) and the end of the judged name.
        var registered: Int
        var end: Int
        var domainHash: UInt64
        var suffixStart: Int
    }

    func target(_ j: Judged, _ f: DNSMessageFacts) -> Target {
        let aggregate: Aggregate = j.registered >= 0 && j.listed ? .registeredDomain : .resolver
        // The implicit registered domain of an unlisted name (all of it when there is none).
        let reg = max(0, j.registered)
        let domainHash = fnv(f.lowercaseName, reg, j.end)
        let key = aggregate == .registeredDomain
            ? PairKey(client: f.client, domain: domainHash)
            : PairKey(client: f.client, domain: DNSSearchSuffixes.key(f.server, 0x7265_736F_6C76_6572))
        return Target(aggregate: aggregate, key: key, registered: reg, end: j.end, domainHash: domainHash, suffixStart: j.suffixStart)
    }

    /// A query's standing in one aggregate after it was counted.
    struct Verdict {
        var pair: Int32
        var features: Features
        var score: Double
        var single: Bool
        var channel: Bool
    }

    /// Counts a message in one aggregate; for a query, returns its verdict there.
    func feed(_ t: Target, _ f: DNSMessageFacts) -> Verdict? {
        let lower = f.lowercaseName
        var p: Int32
        if let existing = index[t.key] {
            p = existing
            touch(p)
        } else {
            // A response for a pair we never saw a query of adds nothing to score.
            if f.isResponse { return nil }
            p = create(t.key, aggregate: t.aggregate, domain: UnsafeRawBufferPointer(rebasing: lower[t.registered..<t.end]), domainHash: t.domainHash, facts: f)
        }
        let b = bucket(of: p, at: f.timestamp)
        pairs[Int(p)].lastSeen = max(pairs[Int(p)].lastSeen, f.timestamp)

        if f.isResponse {
            if b >= 0 {
                buckets[b].responses &+= 1
                if f.responseCode == 3 { buckets[b].nxdomain &+= 1 }
                buckets[b].answerBytes &+= UInt32(clamping: f.answerDataBytes)
                let payload = f.answerPayload
                if payload.bytes > 0 {
                    buckets[b].payloadResponses &+= 1
                    buckets[b].payloadBytes &+= UInt32(clamping: payload.bytes)
                    buckets[b].payloadEntropyWeighted += max(0, min(8, payload.entropy)) * Float(min(payload.bytes, 65535))
                    DNSTunnelDetector.setBit(&buckets[b].payloadSeen, payload.hash)
                }
            }
            return nil
        }

        if pairs[Int(p)].domainHash != t.domainHash { pairs[Int(p)].domainStable = false }
        if t.suffixStart >= 0 && t.end < lower.count {
            let h = fnv(lower, t.suffixStart, lower.count)
            if pairs[Int(p)].searchSuffixHash != h {
                pairs[Int(p)].searchSuffixHash = h
                pairs[Int(p)].searchSuffix = String(decoding: UnsafeRawBufferPointer(rebasing: lower[t.suffixStart...]), as: UTF8.self)
            }
        }
        // Scored part: left of the registered domain (without the joining dot); per resolver, the whole
        // name (a direct-mode tunnel's data fills every label).
        let subLength = t.aggregate == .registeredDomain ? max(0, t.registered - 1) : t.end
        let sub = UnsafeRawBufferPointer(rebasing: f.name[..<subLength])
        let (entropy, maxLabel) = DNSTunnelDetector.entropyAndLongestLabel(sub)
        let (wordChars, alphanumerics) = DNSNameShape.wordCharacters(sub)
        let wordShare = alphanumerics > 0 ? Double(wordChars) / Double(alphanumerics) : 0
        pairs[Int(p)].server = f.server
        pairs[Int(p)].serverPort = f.serverPort
        if b >= 0 {
            DNSTunnelDetector.setBit(&buckets[b].seen, fnv(lower, 0, subLength))
            buckets[b].queries &+= 1
            if DNSRecordType.isUnusualForClients(f.queryType) { buckets[b].unusual &+= 1 }
            buckets[b].subdomainLengthSum &+= UInt32(subLength)
            buckets[b].maxSubdomainLength = max(buckets[b].maxSubdomainLength, UInt16(subLength))
            buckets[b].maxLabel = max(buckets[b].maxLabel, UInt16(maxLabel))
            buckets[b].entropySum += Float(entropy)
            buckets[b].nameBytes &+= UInt32(subLength)
            buckets[b].wordChars &+= UInt32(wordChars)
            buckets[b].alphanumerics &+= UInt32(alphanumerics)
        }

        let features = self.features(p)
        let score = self.score(features)
        let single = rules.singleNameEnabled && subLength >= rules.singleNameMinLength && maxLabel >= rules.singleNameMinLabel
            && entropy >= rules.singleNameMinEntropy && wordShare < rules.singleNameMaxWordShare
        let channel = features.queries >= rules.minQueries && features.uniqueSubdomains >= rules.minUniqueSubdomains && score >= rules.alertScore
        return Verdict(pair: p, features: features, score: score, single: single, channel: channel)
    }

    /// Keeps samples and raises (or rate-limits) an alert for a verdict.
    func decide(_ v: Verdict, _ f: DNSMessageFacts) {
        let p = v.pair
        if (v.score >= rules.sampleScore || v.single) && pairs[Int(p)].samples.count < rules.samples {
            let text = String(decoding: f.name, as: UTF8.self)
            if !pairs[Int(p)].samples.contains(text) { pairs[Int(p)].samples.append(text) }
        }
        guard v.channel || v.single else { return }
        let rule: Rule = v.channel ? .channel : .singleName
        // A channel alert may follow a single-name one (it tells more); a single name after a channel
        // alert adds nothing.
        let alerted = pairs[Int(p)].lastAlert
        let last = rule == .channel ? alerted.0 : (alerted.0.map { c in alerted.1.map { max(c, $0) } ?? c } ?? alerted.1)
        let escalation = v.channel && v.features.nameBytes >= rules.exfiltrationBytes && !pairs[Int(p)].alertedExfiltration
        if let last, !escalation, f.timestamp - last < .seconds(rules.rateLimitSeconds) {
            pairs[Int(p)].suppressed &+= 1
            counters.suppressed &+= 1
            return
        }
        raise(p, features: v.features, score: v.channel ? v.score : max(v.score, rules.alertScore), rule: rule, facts: f)
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

    /// Marks a hash in a 256-bit linear-counting bitmap.
    static func setBit(_ bits: inout (UInt64, UInt64, UInt64, UInt64), _ h: UInt64) {
        let bit = Int(h & 255)
        withUnsafeMutableBytes(of: &bits) { raw in
            let words = raw.bindMemory(to: UInt64.self)
            words[bit >> 6] |= 1 << UInt64(bit & 63)
        }
    }

    /// Distinct values marked in a bitmap, estimated (linear counting), at most `cap`.
    static func distinct(_ bits: (UInt64, UInt64, UInt64, UInt64), cap: Int) -> Int {
        let zeros = 256 - bits.0.nonzeroBitCount - bits.1.nonzeroBitCount - bits.2.nonzeroBitCount - bits.3.nonzeroBitCount
        let estimate = zeros == 0 ? 256 * log(256.0) : -256 * log(Double(zeros) / 256)
        return min(cap, Int(estimate.rounded()))
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
        var payloadSeen: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        var payloadBytes = 0
        var payloadEntropy = 0.0
        var wordChars = 0, alphanumerics = 0
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
            wordChars += Int(b.wordChars)
            alphanumerics += Int(b.alphanumerics)
            f.payloadResponses += Int(b.payloadResponses)
            payloadBytes += Int(b.payloadBytes)
            payloadEntropy += Double(b.payloadEntropyWeighted)
            payloadSeen.0 |= b.payloadSeen.0; payloadSeen.1 |= b.payloadSeen.1; payloadSeen.2 |= b.payloadSeen.2; payloadSeen.3 |= b.payloadSeen.3
        }
        guard f.queries > 0 else { return f }
        f.uniqueSubdomains = DNSTunnelDetector.distinct(seen, cap: f.queries)
        f.wordShare = alphanumerics > 0 ? Double(wordChars) / Double(alphanumerics) : 0
        if f.payloadResponses > 0 && payloadBytes > 0 {
            f.meanAnswerPayload = Double(payloadBytes) / Double(f.payloadResponses)
            f.answerEntropy = payloadEntropy / Double(payloadBytes)
            f.uniqueAnswers = DNSTunnelDetector.distinct(payloadSeen, cap: f.payloadResponses)
        }
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
        // Answer payload counts as far as the answers differ: one DKIM key fetched again and again is
        // not a channel; a tunnel's answers never repeat.
        if f.payloadResponses > 0 {
            let novelty = min(1, Double(f.uniqueAnswers) / Double(f.payloadResponses))
            s += novelty * (rules.answerPayload.points(f.meanAnswerPayload) + rules.answerEntropy.points(f.answerEntropy))
        }
        s -= rules.descriptiveNames.points(f.wordShare)
        return max(0, min(100, s))
    }

    // MARK: Pairs (bounded, least recently active evicted)

    func create(_ key: PairKey, aggregate: Aggregate, domain: UnsafeRawBufferPointer, domainHash: UInt64, facts f: DNSMessageFacts) -> Int32 {
        if index.count >= rules.maxPairs, lruHead >= 0 {
            counters.pairsEvicted &+= 1
            release(lruHead)
        }
        counters.pairsCreated &+= 1
        let pair = Pair(key: key, aggregate: aggregate, domain: String(decoding: domain, as: UTF8.self), domainHash: domainHash,
                        server: f.server, serverPort: f.serverPort,
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
        pairs[Int(p)].searchSuffix = nil
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
        let perServer = pair.aggregate == .resolver
        // Per resolver, a domain is named only while every query shared one (a direct-mode tunnel's
        // "registered domains" are all different).
        let domain: String? = perServer && !pair.domainStable ? nil : pair.domain
        let ruleKey = rule == .singleName ? "single_name" : perServer ? "server_channel" : "channel"
        let ruleName: String
        let description: String
        switch (rule, perServer) {
        case (.singleName, _):
            ruleName = "DNS tunnel: encoded data in a query name"
            description = "One query name carries a long, high-entropy, non-descriptive subdomain, the shape of data encoded into DNS (Rules/dns-tunneling.yaml)."
        case (.channel, false):
            ruleName = "DNS tunnel: encoded traffic to one domain"
            description = "A client's queries under one registered domain, over a sliding window, score high on subdomain length, entropy, uniqueness, unusual record types, rate and the payload of the answers (Rules/dns-tunneling.yaml)."
        case (.channel, true):
            ruleName = "DNS tunnel: encoded traffic to one server without a registered domain"
            description = "A client's queries to one server whose names have no registered domain under a listed top-level domain (a tunnel in direct mode), over a sliding window, score high on name length, entropy, uniqueness, unusual record types, rate and the payload of the answers (Rules/dns-tunneling.yaml)."
        }
        func r2(_ x: Double) -> Double { (x * 100).rounded() / 100 }
        var details: [(String, JSONValue)] = []
        if let domain { details.append(("domain", .string(domain))) }
        details += [
            ("aggregate", .string(perServer ? "client_server" : "registered_domain")),
            ("client", .ip(pair.key.client)),
            ("server", .ip(pair.server)),
            ("rule", .string(ruleKey)),
            ("score", .double(r2(score))),
            ("window_seconds", .double(rules.windowSeconds)),
            ("queries", .int(Int64(f.queries))),
            ("responses", .int(Int64(f.responses))),
            ("unique_subdomains", .int(Int64(f.uniqueSubdomains))),
            ("mean_subdomain_length", .double(r2(f.meanSubdomainLength))),
            ("max_subdomain_length", .int(Int64(f.maxSubdomainLength))),
            ("max_label_length", .int(Int64(f.maxLabelLength))),
            ("mean_entropy", .double(r2(f.meanEntropy))),
            ("word_share", .double(r2(f.wordShare))),
            ("unusual_type_share", .double(r2(f.unusualShare))),
            ("queries_per_minute", .double(r2(f.queriesPerMinute))),
            ("name_bytes", .int(Int64(f.nameBytes))),
            ("answer_bytes", .int(Int64(f.answerBytes))),
            ("answer_payload_responses", .int(Int64(f.payloadResponses))),
            ("mean_answer_payload", .double(r2(f.meanAnswerPayload))),
            ("answer_payload_entropy", .double(r2(f.answerEntropy))),
            ("unique_answer_payloads", .int(Int64(f.uniqueAnswers))),
            ("nxdomain_share", .double(r2(f.nxdomainShare))),
            ("exfiltration", .bool(exfil)),
            ("suppressed_alerts", .int(Int64(pair.suppressed))),
            ("sample_queries", .array(pair.samples.map { .string($0) })),
        ]
        if let suffix = pair.searchSuffix { details.append(("search_suffix", .string(suffix))) }
        let target = domain ?? "names without a registered domain"
        let alert = Alert(
            timestamp: facts.timestamp, category: .dnsTunneling, ruleID: "dns_tunneling." + ruleKey, ruleName: ruleName, ruleDescription: description,
            techniques: techniques, severity: severity, riskScore: r2(score),
            message: "Possible DNS tunnel from \(pair.key.client) through \(pair.server) to \(target): \(f.queries) queries, \(f.uniqueSubdomains) unique subdomains, mean entropy \(r2(f.meanEntropy)) bits/char, \(f.nameBytes) bytes in names, \(f.payloadResponses > 0 ? Int(f.meanAnswerPayload.rounded()) : 0) bytes of payload per answer",
            source: Endpoint(ip: pair.key.client), destination: Endpoint(ip: pair.server, port: pair.serverPort),
            ipProtocol: pair.ipProtocol, relatedIPs: [pair.key.client, pair.server], relatedHosts: domain.map { [$0] } ?? [],
            details: details)
        emitter.emit(alert)
    }
}
