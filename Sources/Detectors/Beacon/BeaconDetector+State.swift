import PacketCore

/// The detector's state for a `sensor aggregate` checkpoint: pairs with their samples and
/// suppression times, source activity, destination audiences and the evaluation clock. Rules are not
/// part of it (the restoring process has its own); counters are per process.
extension BeaconDetector {
    public func saveState(_ w: inout StateWriter) {
        w.dictionary(connPairs) { w, k, p in
            Self.write(&w, k)
            Self.write(&w, p)
        }
        w.dictionary(hostPairs) { w, k, p in
            w.ip(k.source)
            w.string(k.host)
            Self.write(&w, p)
        }
        w.dictionary(sources) { w, a, s in
            w.ip(a)
            w.i64(s.first)
            w.i64(s.last)
            w.bool(s.isInternal)
        }
        w.dictionary(byAddress) { w, a, au in
            w.ip(a)
            Self.write(&w, au)
        }
        w.dictionary(byHost) { w, h, au in
            w.string(h)
            Self.write(&w, au)
        }
        w.i64(lastEvaluation)
    }

    /// Replaces the state with a saved one (on a fresh detector); throws, leaving the detector as it
    /// was, when the bytes are not a state this build and these rules could have written.
    public func restoreState(_ r: inout StateReader) throws(StateDecodeError) {
        let maxPairs = rules.maxPairs, maxSamples = rules.maxSamples
        let conn: [ConnKey: Pair] = try r.dictionary(max: maxPairs, minBytes: 40) { r throws(StateDecodeError) in
            (try Self.readConnKey(&r), try Self.readPair(&r, maxSamples: maxSamples))
        }
        let host: [HostKey: Pair] = try r.dictionary(max: maxPairs, minBytes: 40) { r throws(StateDecodeError) in
            (HostKey(source: try r.ip(), host: try r.string()), try Self.readPair(&r, maxSamples: maxSamples))
        }
        let src: [IPAddress: Activity] = try r.dictionary(max: maxPairs, minBytes: 34) { r throws(StateDecodeError) in
            (try r.ip(), Activity(first: try r.packetTime(), last: try r.packetTime(), isInternal: try r.bool()))
        }
        let addr: [IPAddress: Audience] = try r.dictionary(max: maxPairs, minBytes: 21) { r throws(StateDecodeError) in
            (try r.ip(), try Self.readAudience(&r))
        }
        let named: [String: Audience] = try r.dictionary(max: maxPairs, minBytes: 8) { r throws(StateDecodeError) in
            (try r.string(), try Self.readAudience(&r))
        }
        let evaluated = try r.packetTime(orSentinel: .min)
        connPairs = conn
        hostPairs = host
        sources = src
        internalSources = src.values.reduce(0) { $1.isInternal ? $0 + 1 : $0 }
        byAddress = addr
        byHost = named
        lastEvaluation = evaluated
    }

    static func write(_ w: inout StateWriter, _ k: ConnKey) {
        w.ip(k.source)
        w.ip(k.destination)
        w.u16(k.port)
        w.u8(k.transport)
    }

    static func readConnKey(_ r: inout StateReader) throws(StateDecodeError) -> ConnKey {
        ConnKey(source: try r.ip(), destination: try r.ip(), port: try r.u16(), transport: try r.u8())
    }

    static func write(_ w: inout StateWriter, _ p: Pair) {
        w.count(p.starts.count)
        for (s, z) in zip(p.starts, p.sizes) { w.i64(s); w.i64(z) }
        w.int(p.connections)
        w.i64(p.lastSeen)
        w.bool(p.dirty)
        w.optional(p.lastAlert) { $0.i64($1) }
        w.u8(p.appProtocol)
        w.u8(p.transport)
        w.u16(p.port)
        w.ip(p.destination)
        w.array(p.destinations) { write(&$0, $1) }
        w.optional(p.label) { $0.string($1) }
        w.i64(p.periodStart)
        w.int(p.periodStarts)
        w.optional(p.strobeAlert) { $0.i64($1) }
        w.i64(p.longest)
        w.i64(p.longestStart)
        w.optional(p.longAlert) { $0.i64($1) }
        w.dictionary(p.running) { w, m, length in
            w.i64(m.start)
            w.u16(m.port)
            w.i64(length)
        }
        w.dictionary(p.requestSizes) { w, m, size in
            w.i64(m.start)
            w.u16(m.port)
            w.i64(size)
        }
    }

    static func readPair(_ r: inout StateReader, maxSamples: Int) throws(StateDecodeError) -> Pair {
        let n = try r.count(max: maxSamples, minBytes: 16)
        var starts: [Int64] = [], sizes: [Int64] = []
        starts.reserveCapacity(n)
        sizes.reserveCapacity(n)
        for _ in 0..<n {
            starts.append(try r.packetTime())
            let size = try r.i64()
            guard size >= 0 else { throw .invalid("beacon sample size") }
            sizes.append(size)
        }
        let connections = try r.int()
        let lastSeen = try r.packetTime()
        let dirty = try r.bool()
        let lastAlert = try r.optional { r throws(StateDecodeError) in try r.packetTime() }
        let appProtocol = try r.u8(), transport = try r.u8(), port = try r.u16()
        var p = Pair(destination: try r.ip())
        p.starts = starts
        p.sizes = sizes
        p.connections = connections
        p.lastSeen = lastSeen
        p.dirty = dirty
        p.lastAlert = lastAlert
        p.appProtocol = appProtocol
        p.transport = transport
        p.port = port
        p.destinations = try r.array(max: 8, minBytes: 37) { r throws(StateDecodeError) in try readConnKey(&r) }
        p.label = try r.optional { r throws(StateDecodeError) in try r.string() }
        p.periodStart = try r.packetTime(orSentinel: .min)
        p.periodStarts = try r.int()
        p.strobeAlert = try r.optional { r throws(StateDecodeError) in try r.packetTime() }
        p.longest = try r.i64()
        guard p.longest >= 0 else { throw .invalid("beacon connection length") }
        p.longestStart = try r.packetTime()
        p.longAlert = try r.optional { r throws(StateDecodeError) in try r.packetTime() }
        p.running = try r.dictionary(max: runningCap, minBytes: 18) { r throws(StateDecodeError) in
            let m = FlowMark(start: try r.packetTime(), port: try r.u16())
            let length = try r.i64()
            guard length >= 0 else { throw .invalid("beacon running length") }
            return (m, length)
        }
        p.requestSizes = try r.dictionary(max: runningCap, minBytes: 18) { r throws(StateDecodeError) in
            let m = FlowMark(start: try r.packetTime(), port: try r.u16())
            let size = try r.i64()
            guard size >= 0 else { throw .invalid("beacon request size") }
            return (m, size)
        }
        return p
    }

    static func write(_ w: inout StateWriter, _ a: Audience) {
        w.array(a.members) { $0.u32($1) }
        w.i64(a.lastSeen)
    }

    static func readAudience(_ r: inout StateReader) throws(StateDecodeError) -> Audience {
        Audience(members: try r.array(max: audienceCap, minBytes: 4) { r throws(StateDecodeError) in try r.u32() }, lastSeen: try r.packetTime())
    }
}
