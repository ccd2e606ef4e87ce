import Analyzers
import ConfigKit
import Detectors
import Events
import PacketCore

/// A detector that aggregates across flows, run by the host-level stage on the facts workers send.
///
/// Single-threaded: one stage (one shard's thread, or the replay thread) owns it. `apply` gets every
/// fact of a kind in `facts`, in packet-time order; `tick` once per packet-clock second; `finish` once
/// at the end of input.
public protocol HostDetector: AnyObject {
    /// Which facts it reads; workers encode only facts some detector reads.
    static var facts: HostFactKinds { get }
    func apply(_ fact: HostFact)
    func tick(_ now: Timestamp)
    func finish(_ now: Timestamp)
    /// New rules on SIGHUP, between two facts: thresholds, weights and allowlists change, per-pair and
    /// per-host state stays. Whether the detector runs at all (`enabled`) is fixed at start, since the
    /// workers' fact selection was. Returns a note for the log when part of the rules waits for a restart.
    func reload(_ rules: RulesSet) -> String?
    /// Its state beside its bounds and its counters, for `spanwatch.stats.host_stage`.
    var statistics: DetectorStatistics { get }
    /// Its state for a `sensor aggregate` checkpoint (`StateWriter`), and back into a fresh detector:
    /// a restored detector fed the rest of the facts decides as one that saw them all.
    func saveState(_ w: inout StateWriter)
    func restoreState(_ r: inout StateReader) throws(StateDecodeError)
}

extension HostDetector {
    public func finish(_ now: Timestamp) {}
}

/// How a family makes one of its host detectors for each shard, and what it reads (known before any
/// detector exists: live workers select facts while the detectors run on other threads).
public struct HostDetectorFactory {
    public let name: String
    public let facts: HostFactKinds
    public let make: (EventEmitter) -> any HostDetector

    public init<D: HostDetector>(name: String, _ make: @escaping (EventEmitter) -> D) {
        self.name = name
        facts = D.facts
        self.make = make
    }
}

// MARK: The four cross-flow detectors

extension NonStandardPortDetector: HostDetector {
    public static var facts: HostFactKinds { HostFactKinds(.flowEnded, .flowElsewhere, .ftpDataAnnounced) }

    public func apply(_ fact: HostFact) {
        switch fact {
        case .flowEnded(let flow, let reason, let labels): flowEnded(flow, reason: reason, labels: labels)
        case .flowElsewhere(let flow): learnPortServer(flow)
        case .ftpDataAnnounced(let channel, let t): ftpDataAnnounced(channel, at: t)
        default: break
        }
    }

    public func reload(_ rules: RulesSet) -> String? {
        var c2 = rules[C2PortRules.self]
        c2.enabled = self.rules.enabled
        apply(c2)
        return nil
    }
}

extension BeaconDetector: HostDetector {
    public static var facts: HostFactKinds { HostFactKinds(.flowEnded, .httpRequest, .udpRequest, .flowElsewhere) }

    public func apply(_ fact: HostFact) {
        switch fact {
        case .flowEnded(let flow, let reason, let labels): flowEnded(flow, reason: reason, labels: labels)
        case .httpRequest(let request): httpRequest(request)
        case .udpRequest(let request): udpRequest(request)
        case .flowElsewhere(let flow): flowElsewhere(flow)
        default: break
        }
    }

    public func reload(_ rules: RulesSet) -> String? {
        var beacon = rules[BeaconRules.self]
        beacon.enabled = self.rules.enabled
        apply(beacon, standardPorts: rules[C2PortRules.self].standardPorts)
        return nil
    }
}

extension LateralMovementDetector: HostDetector {
    public static var facts: HostFactKinds {
        HostFactKinds(.clockStarted, .flowEnded, .tcpFlowStarted, .tcpAccepted, .remoteAccess)
    }

    public func apply(_ fact: HostFact) {
        switch fact {
        case .clockStarted(let t): clockStarted(at: t)
        case .flowEnded(let flow, let reason, _): flowEnded(flow, reason: reason)
        case .tcpFlowStarted(let s, let d, let port, let t): tcpFlowStarted(source: s, destination: d, port: port, at: t)
        case .tcpAccepted(let s, let c, let port, let t): tcpAccepted(server: s, client: c, port: port, at: t)
        case .remoteAccess(let f, let ep, let t): observe(f, on: ep, at: t)
        default: break
        }
    }

    public func reload(_ rules: RulesSet) -> String? {
        var lateral = rules[LateralMovementRules.self]
        lateral.enabled = self.rules.enabled
        apply(lateral)
        return nil
    }
}

extension DNSTunnelDetector: HostDetector {
    public static var facts: HostFactKinds { HostFactKinds(.dnsMessage) }

    public func apply(_ fact: HostFact) {
        if case .dnsMessage(let f) = fact { dnsMessage(f) }
    }

    public func reload(_ rules: RulesSet) -> String? {
        var tunnel = rules[DNSTunnelRules.self]
        tunnel.enabled = self.rules.enabled
        return apply(tunnel) ? nil : "dns_tunneling: a new window or bucket count takes effect at restart; other settings applied"
    }
}
