import Events

/// A host-level detector's health for `spanwatch.stats.host_stage.<name>`: the state it holds beside its
/// bound, what it evicted to stay within it, what it was fed and what it raised. Every figure adds up over
/// shards (each shard's detector holds its own state within its own bound), so one sum tells the sensor's.
public struct DetectorStatistics: Sendable {
    public let name: StaticString
    /// State held now and its bounds (gauges), then counters since start.
    public private(set) var state: [(name: StaticString, value: UInt64)]
    public private(set) var counters: [(name: StaticString, value: UInt64)]

    public init(_ name: StaticString, state: [(name: StaticString, value: UInt64)], counters: [(name: StaticString, value: UInt64)]) {
        self.name = name
        self.state = state
        self.counters = counters
    }

    /// The value of `field` (tests, metrics).
    public subscript(_ field: String) -> UInt64? {
        (state + counters).first { $0.name.description == field }?.value
    }

    /// Adds another shard's figures of the same detector (the same fields in the same order).
    public mutating func add(_ other: DetectorStatistics) {
        guard other.state.count == state.count, other.counters.count == counters.count else { return }
        for i in state.indices { state[i].value &+= other.state[i].value }
        for i in counters.indices { counters[i].value &+= other.counters[i].value }
    }

    /// The same detector's figures after a later instance took over from this one (`sensor aggregate`
    /// starts a partition's detectors afresh for each producer stream): counters add up, the state is
    /// the later one's.
    public mutating func extend(with later: DetectorStatistics) {
        guard later.state.count == state.count, later.counters.count == counters.count else { return }
        state = later.state
        for i in counters.indices { counters[i].value &+= later.counters[i].value }
    }

    public func write(into w: inout JSONWriter) {
        w.beginObject(name)
        for f in state { w.field(f.name, f.value) }
        for f in counters { w.field(f.name, f.value) }
        w.endObject()
    }
}

extension BeaconDetector {
    public var statistics: DetectorStatistics {
        let c = counters
        return DetectorStatistics("beaconing", state: [
            ("pairs", UInt64(connPairs.count)), ("host_pairs", UInt64(hostPairs.count)), ("sources", UInt64(sources.count)),
            ("max_pairs", UInt64(rules.maxPairs)),
        ], counters: [
            ("connections", c.connections), ("http_requests", c.httpRequests), ("udp_requests", c.udpRequests),
            ("evaluations", c.evaluations), ("alerts", c.alerts), ("strobe_alerts", c.strobeAlerts),
            ("long_connection_alerts", c.longConnectionAlerts), ("covered_host_alerts", c.coveredHostAlerts),
            ("prevalence_discounted", c.prevalenceDiscounted),
            ("pairs_evicted", c.pairEvictions), ("audiences_evicted", c.audienceEvictions), ("samples_dropped", c.sampleDrops),
        ])
    }
}

extension DNSTunnelDetector {
    public var statistics: DetectorStatistics {
        let c = counters
        return DetectorStatistics("dns_tunneling", state: [
            ("pairs", UInt64(activePairs)), ("max_pairs", UInt64(rules.maxPairs)),
        ], counters: [
            ("queries", c.queries), ("allowlisted", c.allowlisted), ("without_domain", c.withoutDomain),
            ("resolver_aggregated", c.resolverAggregated), ("search_suffix_stripped", c.searchSuffixStripped),
            ("search_suffixes_learned", c.searchSuffixesLearned), ("search_suffixes_dropped", c.searchSuffixesDropped),
            ("pairs_created", c.pairsCreated), ("pairs_evicted", c.pairsEvicted), ("pairs_expired", c.pairsExpired),
            ("alerts", c.alerts), ("suppressed", c.suppressed),
        ])
    }
}

extension LateralMovementDetector {
    public var statistics: DetectorStatistics {
        let c = counters
        return DetectorStatistics("lateral_movement", state: [
            ("pairs", UInt64(pairs.count)), ("max_pairs", UInt64(rules.maxPairs)),
            ("hosts", UInt64(hosts.count)), ("max_hosts", UInt64(rules.maxHosts)),
            ("edges", UInt64(edges.count)), ("max_edges", UInt64(rules.maxEdges)),
        ], counters: [
            ("facts", c.facts), ("facts_ignored", c.factsIgnored), ("alerts", c.alerts), ("suppressed", c.suppressed),
            ("pairs_evicted", c.pairsEvicted), ("hosts_evicted", c.hostsEvicted), ("edges_evicted", c.edgesEvicted),
        ])
    }
}

extension NonStandardPortDetector {
    public var statistics: DetectorStatistics {
        let c = counters
        return DetectorStatistics("nonstandard_port_c2", state: [
            ("pairs", UInt64(pairs.count)), ("max_pairs", UInt64(rules.maxPairs)),
            ("services", UInt64(baseline.entries.count)), ("max_services", UInt64(rules.maxServices)),
        ], counters: [
            ("judged", c.judged), ("baselined", c.baselined), ("loopback", c.loopback), ("alerts", c.alerts), ("suppressed", c.suppressed),
            ("pairs_evicted", c.pairEvictions), ("services_evicted", c.serviceEvictions),
        ])
    }
}
