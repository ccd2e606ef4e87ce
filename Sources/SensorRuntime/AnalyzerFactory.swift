import Analyzers
import Detectors
import Evidence
import Events
import Logging
import ThreatIntel

/// Builds the analysers and detectors a pipeline runs, from the configuration and the rules directory.
///
/// Each analyser family adds itself here (a line or two each), so `replay`, `run` and `hunt` get the same
/// set. Application analysers that need TCP byte streams register as `StreamConsumer`s on the one shared
/// `StreamReassembler`, which runs only when at least one consumer exists.
public enum AnalyzerFactory {
    /// `evidenceStore`: one store shared by every worker's evidence manager (made here when nil).
    /// `hostShards`: live workers' rings to the host-level aggregators; nil runs those detectors inline
    /// on this pipeline's thread and emitter (replay), through the same fact records.
    public static func makeAnalyzers(configuration: SensorConfiguration, emitter: EventEmitter, logger: Logger,
                                     evidenceStore: EvidenceStore? = nil, hostShards: HostShardLink? = nil) throws -> [any PacketAnalyzer] {
        var analyzers: [any PacketAnalyzer] = []
        let reassembler = StreamReassembler(flowCapacity: configuration.flows.capacity, configuration: configuration.reassembly,
                                            parserBudget: ParserMemoryBudget(limit: configuration.parserMemoryLimit))
        reassembler.fileHashing = configuration.makeFileHashing(emitter: emitter)
        let hostFacts = try HostStageWiring.publisher(configuration: configuration, emitter: emitter, logger: logger, link: hostShards)
        // Stream consumers register here: reassembler.add(...)
        // The host-level stage's worker side sits where the lateral-movement detector sat (after the C2
        // analysers, before DNS); it carries the Kerberos datagram analyser when lateral movement is on.
        if configuration.c2Enabled {
            analyzers += try C2Analyzers.make(configuration: configuration, emitter: emitter, reassembler: reassembler, hostFacts: hostFacts)
        }
        let kerberos = configuration.lateralMovementEnabled ? LateralMovementWiring.add(reassembler: reassembler, hostFacts: hostFacts) : nil
        let tap = HostFactTap(kerberos: kerberos, publisher: hostFacts)
        if tap.isNeeded { analyzers.append(tap) }
        analyzers += try DNSSetup.makeAnalyzers(configuration: configuration, emitter: emitter, reassembler: reassembler, logger: logger,
                                                hostFacts: hostFacts)

        if !reassembler.consumers.isEmpty { analyzers.insert(reassembler, at: 0) }
        if let intel = try makeThreatIntel(configuration, emitter: emitter, logger: logger) { analyzers.append(intel) }
        // Evidence capture (off without an authorisation reference). Last, so it closes after detectors conclude.
        if let e = try EvidenceSetup.makeManager(configuration: configuration, emitter: emitter, logger: logger, store: evidenceStore) { analyzers.append(e) }
        return analyzers
    }
}
