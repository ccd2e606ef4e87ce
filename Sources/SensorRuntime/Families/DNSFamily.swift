import Analyzers
import ConfigKit
import Detectors
import Events
import HostStage
import Logging

/// The DNS family (`dns:`): the DNS analyser on each worker (passive-DNS events, DNS over TCP through
/// the shared reassembly) and the tunnelling detector in the host-level stage, which aggregates per
/// client across transactions from changing source ports. The Public Suffix List is loaded once per
/// process; without one there are no registered domains and the detector is off. Rules: `dns-tunneling.yaml`.
struct DNSFamily: SensorFamily {
    let configuration: SensorConfiguration
    init(configuration: SensorConfiguration) { self.configuration = configuration }

    var name: String { "dns" }
    var isEnabled: Bool { configuration.dnsEnabled }
    var documents: [any RulesDocument.Type] { [DNSTunnelRules.self] }
    var place: PipelinePlace { .afterHostFacts }

    struct SetupError: Error, CustomStringConvertible {
        var description: String
    }

    /// The configured Public Suffix List (an error if unreadable), else Debian's `publicsuffix` package
    /// file; nil (with a warning) when neither exists.
    func prepare(_ rules: RulesSet, logger: Logger) throws -> PublicSuffixList? {
        if let path = configuration.dns.publicSuffixListPath {
            do { return try Self.publicSuffixList(at: path) } catch { throw SetupError(description: "dns.psl: \(error)") }
        }
        do {
            return try Self.publicSuffixList(at: PublicSuffixList.systemPath)
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

    func makeAnalyzers(_ worker: inout WorkerContext, _ psl: PublicSuffixList?) throws -> [any PacketAnalyzer] {
        let c = configuration
        let dns = DNSAnalyzer(flowCapacity: c.flows.capacity, configuration: c.dns, emitter: worker.emitter, publicSuffixList: psl,
                              budget: worker.reassembler.parserBudget)
        if c.dns.tcpEnabled { worker.reassembler.add(dns) }
        if worker.hostFacts.wanted.contains(.dnsMessage) { dns.addObserver(worker.hostFacts) }
        return [dns]
    }

    func hostDetectors(_ rules: RulesSet, _ psl: PublicSuffixList?) -> [HostDetectorFactory] {
        let tunnel = rules[DNSTunnelRules.self]
        guard tunnel.enabled, psl != nil else { return [] }
        return [HostDetectorFactory(name: "dns_tunneling") { DNSTunnelDetector(rules: tunnel, emitter: $0, publicSuffixList: psl) }]
    }
}
