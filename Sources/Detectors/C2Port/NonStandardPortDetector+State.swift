import Analyzers
import PacketCore

/// The detector's state for a `sensor aggregate` checkpoint: pairs (repetition, suppression), the
/// service baseline, announced FTP data channels and the port-popularity sketches (non-zero ones).
/// Rules are not part of it; counters are per process.
extension NonStandardPortDetector {
    public func saveState(_ w: inout StateWriter) {
        w.dictionary(pairs) { w, k, p in
            w.ip(k.source)
            w.ip(k.destination)
            w.u16(k.port)
            w.u8(k.transport)
            w.u8(k.rule.rawValue)
            w.int(p.connections)
            w.u64(p.bytes)
            w.u64(p.packets)
            w.u64(p.sent)
            w.u64(p.received)
            w.time(p.first)
            w.time(p.last)
            w.optional(p.lastAlert) { $0.time($1) }
        }
        baseline.save(&w)
        let ftp = ftpData.saved
        w.array(ftp.ring) { w, e in
            w.ip(e.host)
            w.u16(e.port)
            w.time(e.until)
        }
        w.int(ftp.next)
        let sketches = popularity.sketches
        w.count(sketches.count)
        for s in sketches {
            w.u16(s.port)
            w.u64(s.servers)
        }
    }

    /// Replaces the state with a saved one (on a fresh detector); throws, leaving the detector as it
    /// was, when the bytes are not a state this build and these rules could have written.
    public func restoreState(_ r: inout StateReader) throws(StateDecodeError) {
        let restored: [PairKey: Pair] = try r.dictionary(max: rules.maxPairs, minBytes: 90) { r throws(StateDecodeError) in
            let source = try r.ip(), destination = try r.ip(), port = try r.u16(), transport = try r.u8()
            guard let rule = PairRule(rawValue: try r.u8()) else { throw .invalid("c2 pair rule") }
            let connections = try r.int()
            let bytes = try r.u64(), packets = try r.u64(), sent = try r.u64(), received = try r.u64()
            var p = Pair(first: try r.time(), last: try r.time())
            p.connections = connections
            p.bytes = bytes
            p.packets = packets
            p.sent = sent
            p.received = received
            p.lastAlert = try r.optional { r throws(StateDecodeError) in try r.time() }
            return (PairKey(source: source, destination: destination, port: port, transport: transport, rule: rule), p)
        }
        let services = try ServiceBaseline(restoring: &r, maxServices: rules.maxServices)
        let ring = try r.array(max: FTPDataChannels.capacity, minBytes: 27) { r throws(StateDecodeError) in
            FTPDataChannels.Expected(host: try r.ip(), port: try r.u16(), until: try r.time())
        }
        guard let ftp = FTPDataChannels(ring: ring, next: try r.int()) else { throw .invalid("ftp data table") }
        let used = try r.count(max: 65536, minBytes: 10)
        var sketches: [(port: UInt16, servers: UInt64)] = []
        sketches.reserveCapacity(used)
        for _ in 0..<used { sketches.append((try r.u16(), try r.u64())) }
        pairs = restored
        baseline = services
        ftpData = ftp
        popularity.restore(sketches)
    }
}
