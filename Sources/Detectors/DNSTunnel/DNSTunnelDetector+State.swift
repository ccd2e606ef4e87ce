import PacketCore

/// The detector's state for a `sensor aggregate` checkpoint: the pairs in least-recently-active
/// order with their window buckets, and the search suffixes learned from traffic. Restoring rebuilds
/// the pair arena and its LRU list from that order (no saved index is trusted). Rules are not part of
/// it, but the window's geometry is: a state with other buckets is refused. Counters are per process.
extension DNSTunnelDetector {
    public func saveState(_ w: inout StateWriter) {
        w.int(rules.buckets)
        w.i64(bucketWidth)
        w.count(index.count)
        var p = lruHead
        while p >= 0 {
            let pair = pairs[Int(p)]
            Self.write(&w, pair)
            for b in Int(p) * rules.buckets..<(Int(p) + 1) * rules.buckets { Self.write(&w, buckets[b]) }
            p = pair.next
        }
        searchSuffixes.save(&w)
    }

    /// Replaces the state with a saved one (on a fresh detector); throws, leaving the detector as it
    /// was, when the bytes are not a state this build and these rules could have written.
    public func restoreState(_ r: inout StateReader) throws(StateDecodeError) {
        guard try r.int() == rules.buckets, try r.i64() == bucketWidth else { throw .invalid("dns tunnelling window geometry") }
        let n = try r.count(max: rules.maxPairs, minBytes: 80)
        var restored: [Pair] = [], restoredBuckets: [Bucket] = []
        restored.reserveCapacity(n)
        restoredBuckets.reserveCapacity(n * rules.buckets)
        for _ in 0..<n {
            restored.append(try Self.readPair(&r, maxSamples: rules.samples))
            for _ in 0..<rules.buckets {
                let b = try Self.readBucket(&r)
                // Bucket numbers are packet times over the width; sums are finite and not negative.
                guard b.number == .min || (b.number >= 0 && b.number <= Timestamp.validRange.upperBound / bucketWidth),
                      b.entropySum.isFinite, b.entropySum >= 0, b.payloadEntropyWeighted.isFinite, b.payloadEntropyWeighted >= 0
                else { throw .invalid("dns tunnelling bucket") }
                restoredBuckets.append(b)
            }
        }
        var suffixes = searchSuffixes
        try suffixes.restore(&r)
        var restoredIndex: [PairKey: Int32] = [:]
        for (i, p) in restored.enumerated() {
            guard restoredIndex.updateValue(Int32(i), forKey: p.key) == nil else { throw .invalid("dns tunnelling pair twice") }
        }
        pairs = restored
        buckets = restoredBuckets
        index = restoredIndex
        freeList = []
        lruHead = -1
        lruTail = -1
        for i in pairs.indices { linkTail(Int32(i)) }
        searchSuffixes = suffixes
    }

    static func write(_ w: inout StateWriter, _ p: Pair) {
        w.ip(p.key.client)
        w.u64(p.key.domain)
        w.u8(p.aggregate == .registeredDomain ? 0 : 1)
        w.string(p.domain)
        w.u64(p.domainHash)
        w.bool(p.domainStable)
        w.optional(p.searchSuffix) { $0.string($1) }
        w.u64(p.searchSuffixHash)
        w.ip(p.server)
        w.u16(p.serverPort)
        w.u8(p.ipProtocol)
        w.time(p.lastSeen)
        w.optional(p.lastAlert.0) { $0.time($1) }
        w.optional(p.lastAlert.1) { $0.time($1) }
        w.bool(p.alertedExfiltration)
        w.u64(p.suppressed)
        w.array(p.samples) { $0.string($1) }
    }

    static func readPair(_ r: inout StateReader, maxSamples: Int) throws(StateDecodeError) -> Pair {
        let key = PairKey(client: try r.ip(), domain: try r.u64())
        let aggregate: Aggregate
        switch try r.u8() {
        case 0: aggregate = .registeredDomain
        case 1: aggregate = .resolver
        default: throw .invalid("dns tunnelling aggregate")
        }
        let domain = try r.string(), domainHash = try r.u64(), stable = try r.bool()
        let suffix = try r.optional { r throws(StateDecodeError) in try r.string() }
        let suffixHash = try r.u64()
        var p = Pair(key: key, aggregate: aggregate, domain: domain, domainHash: domainHash, server: try r.ip(), serverPort: try r.u16(),
                     ipProtocol: try r.u8(), lastSeen: try r.time())
        p.domainStable = stable
        p.searchSuffix = suffix
        p.searchSuffixHash = suffixHash
        p.lastAlert = (try r.optional { r throws(StateDecodeError) in try r.time() }, try r.optional { r throws(StateDecodeError) in try r.time() })
        p.alertedExfiltration = try r.bool()
        p.suppressed = try r.u64()
        p.samples = try r.array(max: maxSamples, minBytes: 4) { r throws(StateDecodeError) in try r.string() }
        return p
    }

    static func write(_ w: inout StateWriter, _ b: Bucket) {
        w.i64(b.number)
        for v in [b.seen.0, b.seen.1, b.seen.2, b.seen.3] { w.u64(v) }
        for v in [b.queries, b.responses, b.nxdomain, b.unusual, b.subdomainLengthSum] { w.u32(v) }
        w.u16(b.maxSubdomainLength)
        w.u16(b.maxLabel)
        w.f32(b.entropySum)
        for v in [b.nameBytes, b.answerBytes, b.wordChars, b.alphanumerics, b.payloadResponses, b.payloadBytes] { w.u32(v) }
        w.f32(b.payloadEntropyWeighted)
        for v in [b.payloadSeen.0, b.payloadSeen.1, b.payloadSeen.2, b.payloadSeen.3] { w.u64(v) }
    }

    static func readBucket(_ r: inout StateReader) throws(StateDecodeError) -> Bucket {
        var b = Bucket()
        b.number = try r.i64()
        b.seen = (try r.u64(), try r.u64(), try r.u64(), try r.u64())
        b.queries = try r.u32()
        b.responses = try r.u32()
        b.nxdomain = try r.u32()
        b.unusual = try r.u32()
        b.subdomainLengthSum = try r.u32()
        b.maxSubdomainLength = try r.u16()
        b.maxLabel = try r.u16()
        b.entropySum = try r.f32()
        b.nameBytes = try r.u32()
        b.answerBytes = try r.u32()
        b.wordChars = try r.u32()
        b.alphanumerics = try r.u32()
        b.payloadResponses = try r.u32()
        b.payloadBytes = try r.u32()
        b.payloadEntropyWeighted = try r.f32()
        b.payloadSeen = (try r.u64(), try r.u64(), try r.u64(), try r.u64())
        return b
    }
}

extension DNSSearchSuffixes {
    /// Learned suffixes, candidates and the recent-name tables (their used slots); the configured
    /// suffixes and settings come from the rules.
    func save(_ w: inout StateWriter) {
        w.array(learned) { $0.u64($1) }
        w.dictionary(candidates) { w, k, n in
            w.u64(k)
            w.int(n)
        }
        for table in [plain, suffixed] {
            let used = table.indices.filter { table[$0].time != .min }
            w.array(used) { w, i in
                w.u16(UInt16(i))
                w.u64(table[i].key)
                w.i64(table[i].time)
                w.u64(table[i].suffix)
            }
        }
        w.u64(learnedDropped)
        w.u64(candidatesCleared)
    }

    mutating func restore(_ r: inout StateReader) throws(StateDecodeError) {
        let l = try r.set(max: Self.maxLearned, minBytes: 8) { r throws(StateDecodeError) in try r.u64() }
        let c: [UInt64: Int] = try r.dictionary(max: Self.maxCandidates, minBytes: 16) { r throws(StateDecodeError) in (try r.u64(), try r.int()) }
        var tables = [Array(repeating: Entry(), count: Self.tableSize), Array(repeating: Entry(), count: Self.tableSize)]
        for t in 0..<2 {
            let n = try r.count(max: Self.tableSize, minBytes: 26)
            for _ in 0..<n {
                let i = Int(try r.u16())
                guard i < Self.tableSize else { throw .invalid("search suffix slot") }
                tables[t][i] = Entry(key: try r.u64(), time: try r.i64(), suffix: try r.u64())
            }
        }
        learned = l
        candidates = c
        plain = tables[0]
        suffixed = tables[1]
        learnedDropped = try r.u64()
        candidatesCleared = try r.u64()
    }
}
