import PacketCore

/// A protocol fact an analyser extracted (a DNS name, a TLS fingerprint, an HTTP URL), offered to anyone
/// who wants to correlate it: the threat-intelligence matcher today.
///
/// Analysers publish through `EventEmitter.publish` only when someone listens (`hasFactObservers`), so
/// the strings are built only then.
public enum ObservedFact: Sendable {
    /// A DNS question (`name` lower-case, no trailing dot).
    case dnsQuery(name: String)
    /// A DNS answer: a name it resolved (CNAME targets too) and, for A/AAAA, the address.
    case dnsAnswer(name: String, address: IPAddress?)
    /// A TLS ClientHello.
    case tlsClientHello(serverName: String?, ja3: String?, ja4: String?)
    /// A TLS server certificate's SHA-256 / SHA-1 fingerprint (hex, lower case).
    case tlsCertificate(sha256: String?, sha1: String?)
    /// An HTTP request: host header and full URL (`http://host/path?query`).
    case httpRequest(host: String?, url: String)
    /// A transferred file's hash (hex, lower case) with its algorithm (`md5`, `sha1`, `sha256`).
    case fileHash(algorithm: String, value: String)
}

/// Whoever correlates facts with flows.
public protocol FactObserver: AnyObject {
    /// `flow` is the flow the fact was seen on, when there is one; `time` is packet time.
    func observe(_ fact: ObservedFact, flow: FlowRecord?, at time: Timestamp)
}

extension EventEmitter {
    /// True when publishing facts has a listener (analysers skip building them otherwise).
    public var hasFactObservers: Bool { !factObservers.isEmpty }

    /// Hands a fact to every fact observer.
    public func publish(_ fact: ObservedFact, flow: FlowRecord?, at time: Timestamp) {
        for o in factObservers { o.observe(fact, flow: flow, at: time) }
    }
}
