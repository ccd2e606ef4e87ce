import Events
import Logging

/// Builds the analysers and detectors a pipeline runs, from the configuration and the rules directory.
///
/// Each analyser family adds itself here (one line each), so `replay`, `run` and `hunt` get the same set.
public enum AnalyzerFactory {
    public static func makeAnalyzers(configuration: SensorConfiguration, emitter: EventEmitter, logger: Logger) throws -> [any PacketAnalyzer] {
        let analyzers: [any PacketAnalyzer] = []
        return analyzers
    }
}
