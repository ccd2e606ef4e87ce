import Analyzers
import ConfigKit
import Detectors
import Events
import Logging
#if canImport(Glibc)
import Glibc
#endif

extension SensorConfiguration {
    /// The `dns:` section:
    ///
    /// ```yaml
    /// dns:
    ///   enabled: true              # parse DNS at all (passive DNS and the tunnelling detector)
    ///   events: true               # sensor.dns events, one per transaction
    ///   transaction_timeout: 10s   # a query unanswered this long (packet clock) is reported as such
    ///   max_pending: 16384         # queries awaiting a response, per worker
    ///   tcp: true                  # DNS over TCP
    ///   psl: /usr/share/publicsuffix/public_suffix_list.dat
    /// ```
    static func parseDNS(_ v: ConfigValue, into c: inout SensorConfiguration, _ r: inout ConfigReader) {
        let t = r.table(v, allowed: ["enabled", "events", "transaction_timeout", "max_pending", "tcp", "psl"])
        if let b = r.bool(t["enabled"]) { c.dnsEnabled = b }
        if let b = r.bool(t["events"]) { c.dns.eventsEnabled = b }
        if let s = r.seconds(t["transaction_timeout"], in: 0.001...3600) { c.dns.transactionTimeout = .seconds(s) }
        if let m = r.int(t["max_pending"], in: 64...10_000_000) { c.dns.maxPendingQueries = m }
        if let b = r.bool(t["tcp"]) { c.dns.tcpEnabled = b }
        if let v = t["psl"], let path = r.string(v) {
            if access(path, R_OK) != 0 { r.report(v, "cannot read the Public Suffix List file '\(path)'") }
            c.dns.publicSuffixListPath = path
        }
    }
}

/// Builds the DNS analyser and the tunnelling detector for one pipeline (called from `AnalyzerFactory`).
public enum DNSSetup {
    public struct SetupError: Error, CustomStringConvertible {
        public var description: String
    }

    /// Loads the Public Suffix List: the configured file (an error if unreadable), else Debian's
    /// `publicsuffix` package file; nil (with a warning) when neither exists.
    public static func loadPublicSuffixList(_ c: SensorConfiguration, logger: Logger) throws -> PublicSuffixList? {
        if let path = c.dns.publicSuffixListPath {
            do { return try publicSuffixList(at: path) } catch { throw SetupError(description: "dns.psl: \(error)") }
        }
        do {
            return try publicSuffixList(at: PublicSuffixList.systemPath)
        } catch {
            logger.warning("no Public Suffix List (\(error)); install Debian's publicsuffix package or set dns.psl. DNS events carry no registered_domain and the DNS tunnelling detector is off.")
            return nil
        }
    }

    /// The list file (`public_suffix_list.dat`), read as every input file is: a regular file, bounded.
    static func publicSuffixList(at path: String) throws -> PublicSuffixList {
        let bytes: [UInt8]
        do { bytes = try BoundedFile.read(path) } catch { throw PublicSuffixList.LoadError.unreadable(path, error.description) }
        let list = PublicSuffixList(bytes: bytes)
        if list.ruleCount == 0 { throw PublicSuffixList.LoadError.empty(path) }
        return list
    }

    /// The rules of the tunnelling detector from the rules directory, or the built-in defaults.
    public static func loadTunnelRules(_ c: SensorConfiguration) throws -> DNSTunnelRules {
        do { return try tunnelRules(directory: RulesDirectory.resolve(c.rulesDirectory)) } catch {
            throw SetupError(description: "invalid rules:\n\(error.description)")
        }
    }

    /// The tunnelling rules from a resolved rules directory (start and SIGHUP), or the built-in defaults.
    static func tunnelRules(directory dir: String?) throws(ConfigIssues) -> DNSTunnelRules {
        guard let dir else { return DNSTunnelRules() }
        let path = "\(dir)/\(DNSTunnelRules.fileName)"
        return try DNSTunnelRules.load(path: path, optional: true)
    }

    /// True when a Public Suffix List will load (the configured file, else the system one): the tunnelling
    /// detector needs registered domains.
    static func publicSuffixListAvailable(_ c: SensorConfiguration) -> Bool {
        c.dns.publicSuffixListPath != nil || access(PublicSuffixList.systemPath, R_OK) == 0
    }

    /// The tunnelling detector itself runs in the host-level stage (it aggregates per client across DNS
    /// transactions from changing source ports); the DNS analyser hands it every message through `hostFacts`.
    static func makeAnalyzers(configuration c: SensorConfiguration, emitter: EventEmitter, reassembler: StreamReassembler,
                              logger: Logger, hostFacts: HostFactPublisher) throws -> [any PacketAnalyzer] {
        guard c.dnsEnabled else { return [] }
        let psl = try loadPublicSuffixList(c, logger: logger)
        let dns = DNSAnalyzer(flowCapacity: c.flows.capacity, configuration: c.dns, emitter: emitter, publicSuffixList: psl,
                              budget: reassembler.parserBudget)
        if c.dns.tcpEnabled { reassembler.add(dns) }
        if hostFacts.wantsDNS && psl != nil {
            // Fed by the DNS analyser: not a per-packet analyser of its own.
            dns.addObserver(hostFacts)
        }
        return [dns]
    }
}
