import PacketCore

/// Turns flow records, alerts and analyser facts into ECS JSON and hands them to the sinks.
///
/// One emitter per pipeline worker, owned by that worker's thread (no locks here; sinks that are shared
/// between workers lock inside themselves). The JSON buffer is reused for every event, and the constant
/// parts (`ecs`, `observer`) are rendered once at start.
public final class EventEmitter {
    public let observer: ObserverInfo
    public let communityID: CommunityID
    public let homeNetworks: NetworkSet
    /// Flow-end events on or off (config `flows.events`).
    public var flowEventsEnabled: Bool
    public private(set) var sinks: [any EventSink] { didSet { sinkCalls = SinkWriteCalls(sinks) } }
    /// `sinks`, called per event without reference counting.
    var sinkCalls: SinkWriteCalls
    public private(set) var eventsEmitted: UInt64 = 0
    public private(set) var alertsEmitted: UInt64 = 0
    public private(set) var alertsByCategory: [RuleCategory: UInt64] = [:]
    /// Alerts go to every observer too (evidence capture listens here).
    public var alertObservers: [(Alert) -> Void] = []
    /// GeoIP/ASN context written next to `source.ip` and `destination.ip` (nil: none configured).
    public let enricher: (any EventEnricher)?
    /// Protocol facts go to these (threat-intelligence matching listens here); see `ObservedFact`.
    public var factObservers: [any FactObserver] = []
    /// The wall clock alerts take `event.created` from (live and `aggregate`: when the alert was raised, so
    /// `event.created - @timestamp` is its delay); nil in replay, whose output stays a function of the input.
    public var createdClock: (() -> Timestamp?)?

    var writer = JSONWriter(capacity: 8192)
    let constantFields: [UInt8]
    let communityIDs: CommunityIDCache

    public init(observer: ObserverInfo, sinks: [any EventSink], communityID: CommunityID = CommunityID(),
                homeNetworks: NetworkSet = .privateDefaults, flowEventsEnabled: Bool = true,
                enricher: (any EventEnricher)? = nil) {
        self.enricher = enricher
        self.observer = observer
        self.sinks = sinks
        sinkCalls = SinkWriteCalls(sinks)
        self.communityID = communityID
        communityIDs = CommunityIDCache(communityID)
        self.homeNetworks = homeNetworks
        self.flowEventsEnabled = flowEventsEnabled
        var w = JSONWriter(capacity: 512)
        w.beginObject()
        w.beginObject("ecs"); w.field("version", ECS.version); w.endObject()
        w.beginObject("observer")
        w.field("type", "sensor")
        w.field("vendor", ObserverInfo.vendor)
        w.field("product", ObserverInfo.product)
        w.field("version", observer.version)
        w.field("name", observer.name)
        w.field("hostname", observer.hostname)
        w.beginObject("ingress"); w.beginObject("interface"); w.field("name", observer.ingressInterface); w.endObject(); w.endObject()
        w.endObject()
        w.endObject()
        // Keep the inside of the object: `"ecs":{…},"observer":{…}`.
        constantFields = Array(w.bytes.dropFirst().dropLast())
    }

    public func addSink(_ sink: any EventSink) { sinks.append(sink) }

    /// ECS `network.direction` from the home networks.
    public func direction(from source: IPAddress, to destination: IPAddress) -> StaticString {
        NetworkDirection(homeNetworks, from: source, to: destination).name
    }

    /// Writes one event: the common ECS header, `event.*` from the descriptor plus `eventFields`, then `body`.
    public func emit(_ descriptor: EventDescriptor, at timestamp: Timestamp, severity: Int = 0, sourceIP: IPAddress? = nil,
                     eventFields: (inout JSONWriter) -> Void = { _ in }, body: (inout JSONWriter) -> Void) {
        writer.reset()
        writer.beginObject()
        writer.field("@timestamp", timestamp)
        writer.separator()
        writer.appendRaw(constantFields)
        writer.beginObject("event")
        writer.appendMembers(descriptor.eventMembers)
        if severity > 0 { writer.field("severity", severity) }
        // Alerts bring their own stable id; every other event gets one hashed from its own bytes (below).
        let idAt = descriptor.kind == .alert ? -1 : writer.reserveEventID()
        eventFields(&writer)
        writer.endObject()
        body(&writer)
        writer.endObject()
        if idAt >= 0 { writer.fillEventID(at: idAt) }
        deliver(EventMetadata(dataset: descriptor.dataset, kind: descriptor.kind, severity: severity, timestamp: timestamp,
                              sourceIP: sourceIP, communityIDRange: writer.markedRange))
    }

    func deliver(_ metadata: EventMetadata) {
        eventsEmitted &+= 1
        writer.withUnsafeBytes { json in sinkCalls.write(json, metadata: metadata) }
    }

    // MARK: Flows

    /// Emits the `spanwatch.flow` event for a finished (or actively timed-out) flow.
    /// `extra` writes top-level ECS members, `vendor` members of the `spanwatch` object beside `spanwatch.flow`.
    public func emitFlow(_ r: FlowRecord, reason: FlowEndReason, extra: (inout JSONWriter) -> Void = { _ in },
                         vendor: (inout JSONWriter) -> Void = { _ in }) {
        guard flowEventsEnabled else { return }
        let d = reason == .activeTimeout ? EventDescriptor.flowUpdate : EventDescriptor.flowEnd
        let orig = r.originator, resp = r.responder
        emit(d, at: r.lastSeen, sourceIP: orig, eventFields: { w in
            w.field("start", r.segmentStart)
            w.field("end", r.lastSeen)
            w.field("duration", r.duration.nanoseconds)
            w.field("reason", reason.name)
        }, body: { w in
            writeNetwork(r, into: &w)
            let ports = r.key.hasPorts && r.key.ipProtocol != IPProtocol.icmp && r.key.ipProtocol != IPProtocol.icmpv6
            w.beginObject("source")
            w.field("ip", orig)
            enricher?.enrich(orig, into: &w)
            if ports { w.field("port", Int(r.originatorPort)) }
            w.field("bytes", r.originatorBytes)
            w.field("packets", r.originatorPackets)
            w.endObject()
            w.beginObject("destination")
            w.field("ip", resp)
            enricher?.enrich(resp, into: &w)
            if ports { w.field("port", Int(r.responderPort)) }
            w.field("bytes", r.responderBytes)
            w.field("packets", r.responderPackets)
            w.endObject()
            w.beginObject("spanwatch"); w.beginObject("flow")
            if r.key.ipProtocol == IPProtocol.tcp {
                w.field("tcp_state", r.tcpState.name)
                w.field("orig_flags", rawString: { r.originatorFlags.appendNames(to: &$0) })
                w.field("resp_flags", rawString: { r.responderFlags.appendNames(to: &$0) })
            }
            if r.key.ipProtocol == IPProtocol.icmp || r.key.ipProtocol == IPProtocol.icmpv6 {
                w.field("icmp_type", Int(r.icmpType))
                if r.key.isOneWay { w.field("icmp_code", Int(r.key.bPort)) }
            }
            w.field("orig_payload_bytes", r.originatorPayloadBytes)
            w.field("resp_payload_bytes", r.responderPayloadBytes)
            w.field("established", r.isEstablished)
            w.endObject()
            vendor(&w)
            w.endObject()
            w.beginObject("related"); w.beginArray("ip"); w.element(orig); if resp != orig { w.element(resp) }; w.endArray(); w.endObject()
            extra(&w)
        })
    }

    /// `"community_id":"1:…"` of a flow, its position marked for sinks.
    public func writeCommunityID(_ key: FlowKey, into w: inout JSONWriter) {
        w.markCommunityID { communityIDs.append(key, to: &$0) }
    }

    /// `network.*` for a flow, with the Community ID position marked for sinks.
    public func writeNetwork(_ r: FlowRecord, into w: inout JSONWriter) {
        w.beginObject("network")
        writeCommunityID(r.key, into: &w)
        if let t = IPProtocol.name(r.key.ipProtocol) { w.field("transport", t) }
        if r.appProtocol != 0, let app = AppProtocol(rawValue: r.appProtocol) { w.field("protocol", app.name) }
        w.field("iana_number", decimalString: UInt64(r.key.ipProtocol))
        w.field("type", r.key.isIPv6 ? "ipv6" : "ipv4")
        w.field("direction", direction(from: r.originator, to: r.responder))
        w.field("bytes", r.bytesA &+ r.bytesB)
        w.field("packets", r.packetsA &+ r.packetsB)
        if r.vlan != 0 { w.beginObject("vlan"); w.field("id", decimalString: UInt64(r.vlan)); w.endObject() }
        w.endObject()
    }

    // MARK: Alerts

    /// Emits a `spanwatch.alert` event and tells the alert observers (evidence capture).
    public func emit(_ alert: Alert) {
        alertsEmitted &+= 1
        alertsByCategory[alert.category, default: 0] &+= 1
        let id = alert.id
        emit(.alert, at: alert.timestamp, severity: alert.severity.rawValue, sourceIP: alert.source?.ip, eventFields: { w in
            w.field("id", id)
            w.field("risk_score", alert.riskScore)
            if let created = createdClock?() { w.field("created", created) }
        }, body: { w in
            w.field("message", alert.message)
            let threat = ThreatMapping(techniques: alert.techniques, extraTactics: alert.tactics)
            w.beginObject("rule")
            w.field("category", alert.category.rawValue)
            w.field("id", alert.ruleID)
            w.field("name", alert.ruleName)
            if !alert.ruleDescription.isEmpty { w.field("description", alert.ruleDescription) }
            w.field("version", alert.category.ruleVersion)
            if let t = alert.techniques.first { w.field("reference", t.reference) }
            w.field("ruleset", ObserverInfo.product)
            w.endObject()
            w.beginObject("threat")
            w.field("framework", "MITRE ATT&CK")
            w.beginObject("technique")
            w.beginArray("id"); for t in threat.techniques { w.element(t.id) }; w.endArray()
            w.beginArray("name"); for t in threat.techniques { w.element(t.name) }; w.endArray()
            w.beginArray("reference"); for t in threat.techniques { w.element(t.reference) }; w.endArray()
            if !threat.subtechniques.isEmpty {
                w.beginObject("subtechnique")
                w.beginArray("id"); for t in threat.subtechniques { w.element(t.id) }; w.endArray()
                w.beginArray("name"); for t in threat.subtechniques { w.element(t.name) }; w.endArray()
                w.beginArray("reference"); for t in threat.subtechniques { w.element(t.reference) }; w.endArray()
                w.endObject()
            }
            w.endObject()
            if !threat.tactics.isEmpty {
                w.beginObject("tactic")
                w.beginArray("id"); for t in threat.tactics { w.element(t.id) }; w.endArray()
                w.beginArray("name"); for t in threat.tactics { w.element(t.name) }; w.endArray()
                w.beginArray("reference"); for t in threat.tactics { w.element(t.reference) }; w.endArray()
                w.endObject()
            }
            for (k, v) in alert.threatFields { w.field(dynamicKey: k, v) }
            w.endObject()
            if let s = alert.source {
                w.beginObject("source"); w.field("ip", s.ip); enricher?.enrich(s.ip, into: &w); if let p = s.port { w.field("port", Int(p)) }; w.endObject()
            }
            if let d = alert.destination {
                w.beginObject("destination"); w.field("ip", d.ip); enricher?.enrich(d.ip, into: &w); if let p = d.port { w.field("port", Int(p)) }; w.endObject()
            }
            if alert.communityID != nil || alert.ipProtocol != nil || (alert.source != nil && alert.destination != nil) {
                w.beginObject("network")
                if let c = alert.communityID { w.markCommunityID { $0.append(string: c) } }
                if let p = alert.ipProtocol, let t = IPProtocol.name(p) { w.field("transport", t) }
                if let s = alert.source, let d = alert.destination { w.field("direction", direction(from: s.ip, to: d.ip)) }
                w.endObject()
            }
            w.beginObject("related")
            var ips = alert.relatedIPs
            for e in [alert.source?.ip, alert.destination?.ip].compactMap({ $0 }) where !ips.contains(e) { ips.append(e) }
            w.beginArray("ip"); for ip in ips { w.element(ip) }; w.endArray()
            if !alert.relatedUsers.isEmpty { w.beginArray("user"); for u in alert.relatedUsers { w.element(u) }; w.endArray() }
            if !alert.relatedHosts.isEmpty { w.beginArray("hosts"); for h in alert.relatedHosts { w.element(h) }; w.endArray() }
            w.endObject()
            if !alert.details.isEmpty {
                w.beginObject("spanwatch")
                w.field(dynamicKey: alert.category.rawValue, .object(alert.details))
                w.endObject()
            }
        })
        for o in alertObservers { o(alert) }
    }

    // MARK: Lifecycle

    /// Flushes every sink (one that fails does not keep the others from flushing); throws the first error.
    public func flush() throws {
        var first: Error?
        for s in sinks {
            do { try s.flush() } catch { first = first ?? error }
        }
        if let first { throw first }
    }

    /// `flushDelivery` on every sink (before the final statistics); throws the first error.
    public func flushDelivery() throws {
        var first: Error?
        for s in sinks {
            do { try s.flushDelivery() } catch { first = first ?? error }
        }
        if let first { throw first }
    }
}

extension JSONWriter {
    /// Appends pre-rendered JSON members (no separator handling inside).
    mutating func appendRaw(_ raw: [UInt8]) { raw.withUnsafeBytes { append(bytes: $0) } }

    /// Appends pre-rendered members as the next ones of the open object (at least one).
    mutating func appendMembers(_ raw: [UInt8]) { separator(); appendRaw(raw) }

    /// The byte range of the last `community_id` value written with `markCommunityID`.
    var markedRange: Range<Int>? { marked.1 > marked.0 ? marked.0..<marked.1 : nil }
}
