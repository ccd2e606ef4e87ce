import Analyzers
import Detectors
import Events
import Logging

/// Builds the analysers and detectors a pipeline runs, from the configuration and the rules directory.
///
/// Each analyser family adds itself here (a line or two each), so `replay`, `run` and `hunt` get the same
/// set. Application analysers that need TCP byte streams register as `StreamConsumer`s on the one shared
/// `StreamReassembler`, which runs only when at least one consumer exists.
public enum AnalyzerFactory {
    public static func makeAnalyzers(configuration: SensorConfiguration, emitter: EventEmitter, logger: Logger) throws -> [any PacketAnalyzer] {
        var analyzers: [any PacketAnalyzer] = []
        let reassembler = StreamReassembler(flowCapacity: configuration.flows.capacity)
        // Stream consumers register here: reassembler.add(...)
        analyzers += try C2Analyzers.make(configuration: configuration, emitter: emitter, reassembler: reassembler)
        analyzers += try DNSSetup.makeAnalyzers(configuration: configuration, emitter: emitter, reassembler: reassembler, logger: logger)

        if !reassembler.consumers.isEmpty { analyzers.insert(reassembler, at: 0) }
        return analyzers
    }
}
