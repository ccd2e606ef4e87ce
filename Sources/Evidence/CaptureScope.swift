import Events
import PacketCore

/// How much traffic an alert's evidence holds (minimisation: only what the investigation needs).
public enum ScopeKind: String, Sendable, CaseIterable {
    /// The one connection: both addresses, both ports, the protocol.
    case flow
    /// Everything between the two hosts.
    case hostPair = "host_pair"
    /// Everything to or from the suspect host.
    case host
}

/// A concrete capture scope, matched against every packet while its capture is open.
///
/// Its `bpf` rendering is what `tcpdump -r SOURCE 'BPF'` would select, written into the pcapng and
/// the custody log so an investigator can reproduce (and a court can read) exactly what was kept.
public struct CaptureScope: Sendable, Hashable, CustomStringConvertible {
    public var kind: ScopeKind
    public var a: IPAddress
    public var b: IPAddress?
    public var aPort: UInt16
    public var bPort: UInt16
    public var ipProtocol: UInt8

    /// The scope for `alert` at `kind`, narrowed to what the alert names: a flow scope needs both
    /// endpoints with ports, a host-pair scope both addresses; otherwise it widens no further than
    /// the host the alert is about (the source, else its first related address).
    public init?(kind: ScopeKind, alert: Alert) {
        let suspect = alert.source?.ip ?? alert.relatedIPs.first ?? alert.destination?.ip
        switch kind {
        case .flow:
            if let s = alert.source, let d = alert.destination, let sp = s.port, let dp = d.port, let p = alert.ipProtocol,
               p == IPProtocol.tcp || p == IPProtocol.udp || p == IPProtocol.sctp {
                self.init(kind: .flow, a: s.ip, b: d.ip, aPort: sp, bPort: dp, ipProtocol: p)
                return
            }
            fallthrough
        case .hostPair:
            if let s = alert.source?.ip, let d = alert.destination?.ip ?? alert.relatedIPs.first(where: { $0 != alert.source?.ip }) {
                self.init(kind: .hostPair, a: s, b: d)
                return
            }
            fallthrough
        case .host:
            guard let h = suspect else { return nil }
            self.init(kind: .host, a: h)
        }
    }

    public init(kind: ScopeKind, a: IPAddress, b: IPAddress? = nil, aPort: UInt16 = 0, bPort: UInt16 = 0, ipProtocol: UInt8 = 0) {
        self.kind = kind
        self.a = a
        self.b = b
        self.aPort = aPort
        self.bPort = bPort
        self.ipProtocol = ipProtocol
    }

    /// Exactly the packets the `bpf` rendering selects (BPF's `host X and host Y` is direction-free and
    /// `port P` matches either port), so the evidence equals what tcpdump would cut from the same input.
    @inline(__always)
    public func matches(_ p: PacketSummary) -> Bool {
        let hasA = p.source == a || p.destination == a
        guard hasA else { return false }
        // A pair or flow scope built without a second address is a host scope (as `bpf` renders it).
        guard kind != .host, let b else { return true }
        guard p.source == b || p.destination == b else { return false }
        if kind == .hostPair { return true }
        return p.ipProtocol == ipProtocol && p.hasPorts
            && (p.sourcePort == aPort || p.destinationPort == aPort)
            && (p.sourcePort == bPort || p.destinationPort == bPort)
    }

    /// The scope as a BPF expression (tcpdump syntax). `ip host`/`ip6 host` rather than `host`: the
    /// evidence holds IP traffic (the packets flows are made of), not the ARP that `host` would add.
    public var bpf: String {
        func h(_ x: IPAddress) -> String { x.isIPv6 ? "ip6 host \(x)" : "ip host \(x)" }
        guard let b, kind != .host else { return h(a) }
        switch kind {
        case .host:
            return h(a)
        case .hostPair:
            return "\(h(a)) and \(h(b))"
        case .flow:
            let proto = IPProtocol.name(ipProtocol).map { "\($0)" } ?? "ip proto \(ipProtocol)"
            if aPort == bPort { return "\(proto) and \(h(a)) and \(h(b)) and port \(aPort)" }
            return "\(proto) and \(h(a)) and \(h(b)) and port \(aPort) and port \(bPort)"
        }
    }

    public var description: String { bpf }

    /// Addresses in the scope (for `related.ip`).
    public var addresses: [IPAddress] { b.map { [a, $0] } ?? [a] }
}
