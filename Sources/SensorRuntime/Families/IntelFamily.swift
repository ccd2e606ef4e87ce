import Analyzers
import ConfigKit
import Events
import HostStage
import Logging
import ThreatIntel

/// Threat intelligence (`intel:`): one indicator feed per process (loaded once, watched for changes,
/// shared by every worker's matcher), and on each worker a matcher that hears every analyser's facts.
struct IntelFamily: SensorFamily {
    let configuration: SensorConfiguration
    init(configuration: SensorConfiguration) { self.configuration = configuration }

    var name: String { "intel" }
    var isEnabled: Bool { true }
    var documents: [any RulesDocument.Type] { [] }
    var place: PipelinePlace { .afterHostFacts }

    /// nil when no indicator file is in effect.
    func prepare(_ rules: RulesSet, logger: Logger) throws -> IndicatorFeed? {
        try configuration.intel.makeFeed(rulesDirectory: rules.directory, logger: logger, fileHashes: configuration.hashedFileIndicatorTypes)
    }

    func makeAnalyzers(_ worker: inout WorkerContext, _ feed: IndicatorFeed?) throws -> [any PacketAnalyzer] {
        guard let feed else { return [] }
        let m = ThreatIntelMatcher(feed: feed, emitter: worker.emitter, settings: configuration.intel.settings)
        worker.emitter.factObservers.append(m)
        return [m]
    }
}
