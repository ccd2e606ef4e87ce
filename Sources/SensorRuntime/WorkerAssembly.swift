import Analyzers
import Events
import HostStage
import Logging

/// Builds one worker's analysers from the process's `SensorResources`: the shared TCP reassembly, then
/// each enabled family's analysers in the order `PipelinePlace` gives, with the host-fact tap between
/// the two places. `replay`, `hunt` and `run` all build their pipelines here, so they run the same set.
public enum WorkerAssembly {
    /// Where the worker's host facts go: to an inline host stage on the worker's own thread (replay:
    /// the detectors emit through the worker's emitter), or to the rings of the live aggregators.
    public enum HostRoute {
        case inline
        case rings(HostShardLink)
        /// Out of the process to Kafka (`--host-facts`): no host stage here.
        case kafka(HostFactsOutput)
    }

    public static func makeAnalyzers(_ resources: SensorResources, index: Int = 0, emitter: EventEmitter,
                                     hostRoute: HostRoute = .inline, logger: Logger) throws -> [any PacketAnalyzer] {
        let c = resources.configuration
        let reassembler = StreamReassembler(flowCapacity: c.flows.capacity, configuration: c.reassembly,
                                            parserBudget: ParserMemoryBudget(limit: c.parserMemoryLimit))
        // File hashing (HTTP bodies, SMB reads and writes) is per worker, shared by its stream parsers.
        reassembler.fileHashing = c.makeFileHashing(emitter: emitter)
        let wanted = resources.hostFacts
        let publisher: HostFactPublisher
        switch hostRoute {
        case .inline:
            publisher = HostFactPublisher(route: .inline(HostDetectorSet(factories: resources.hostDetectors(resources.rules), emitter: emitter)),
                                          wanted: wanted)
        case .rings(let link):
            publisher = HostFactPublisher(route: .rings(link.rings, link.watermark), wanted: wanted, waitsWhenFull: link.waitsWhenFull)
        case .kafka(let output):
            publisher = HostFactPublisher(route: output.route(worker: index), wanted: wanted)
        }
        var worker = WorkerContext(index: index, configuration: c, emitter: emitter, reassembler: reassembler, hostFacts: publisher,
                                   logger: logger)
        var analyzers: [any PacketAnalyzer] = []
        // Live, the tap also tells the aggregators this worker's watermark and when it has finished.
        var needsTap = !wanted.isEmpty
        if case .inline = hostRoute {} else { needsTap = true }
        for place in [PipelinePlace.labelsFlows, .afterHostFacts] {
            if place == .afterHostFacts, needsTap {
                analyzers.append(HostFactTap(publisher: publisher, labeler: worker.labeler, flowCapacity: c.flows.capacity))
            }
            for f in resources.families where f.place == place { analyzers += try f.makeAnalyzers(&worker) }
        }
        if !reassembler.consumers.isEmpty { analyzers.insert(reassembler, at: 0) }
        return analyzers
    }
}
