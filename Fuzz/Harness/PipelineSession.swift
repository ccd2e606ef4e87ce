import Capture
import Events
import Foundation
import Logging
import PacketCore
import SensorRuntime
import ThreatIntel

/// Events go nowhere: the fuzzer cares that producing them never traps, not what they say.
final class DiscardSink: EventSink, @unchecked Sendable {
    let name = "discard"
    var statistics = SinkStatistics()
    func write(_ json: UnsafeRawBufferPointer, metadata: EventMetadata) { statistics.accepted &+= 1 }
    func flush() throws {}
    func close() throws {}
}

/// The real pipeline with every analyser family and detector on, built the way `replay` builds it
/// (`WorkerAssembly`), fresh for each input so a crash reproduces from its input alone.
///
/// What differs from a default replay, and why: the flow table is small (eviction and slot reuse are
/// reached within one input, and per-capacity tables cost nothing to build); the detectors run on
/// their built-in rules (see `FuzzEnvironment.rulesDirectory`); the Public Suffix List is a small one
/// written once to a temporary directory (the DNS tunnelling detector needs one, and the system list
/// takes ~50 ms to load); threat intel matches an in-memory set naming the fuzz hosts and a few
/// domains. Evidence capture stays off: it writes files per alert, which a fuzzer must not do outside
/// a temporary directory at thousands of alerts a second.
final class PipelineSession {
    let pipeline: Pipeline

    init() {
        let c = PipelineSession.configuration
        let emitter = EventEmitter(observer: ObserverInfo(name: "fuzz", hostname: "fuzz", ingressInterface: "fuzz", version: "0"),
                                   sinks: [PipelineSession.sink], communityID: CommunityID(seed: 0),
                                   homeNetworks: NetworkSet(c.homeNetworks), flowEventsEnabled: true, enricher: nil)
        do {
            let analyzers = try WorkerAssembly.makeAnalyzers(PipelineSession.resources, emitter: emitter, logger: PipelineSession.logger)
            pipeline = Pipeline(flows: c.flows, emitter: emitter, analyzers: analyzers)
        } catch {
            fatalError("fuzz harness: the pipeline did not build: \(error)")
        }
    }

    /// One frame through the whole path, as libpcap would hand it over.
    func frame(_ bytes: UnsafeRawBufferPointer, linkType: LinkType = .ethernet, at time: Timestamp, wireLength: Int? = nil) {
        pipeline.process(RawPacket(timestamp: time, capturedLength: bytes.count, wireLength: max(wireLength ?? 0, bytes.count),
                                   linkType: linkType, bytes: bytes))
    }

    func frame(_ bytes: [UInt8], at time: Timestamp) {
        bytes.withUnsafeBytes { frame($0, at: time) }
    }

    /// End of input: every flow reported, every detector concludes (the paths that run once per run).
    func finish() { pipeline.finish() }

    static let sink = DiscardSink()
    /// Built once: rules, Public Suffix List and indicator feed are per process, as in the sensor.
    static let resources: SensorResources = {
        do { return try SensorResources(configuration: configuration, logger: logger) } catch {
            fatalError("fuzz harness: resources did not load: \(error)")
        }
    }()
    static let logger = Logger(label: "fuzz") { _ in SwiftLogNoOpLogHandler() }

    static let configuration: SensorConfiguration = {
        var c = SensorConfiguration()
        c.flows.capacity = 64
        c.rulesDirectory = FuzzEnvironment.rulesDirectory
        c.dns.publicSuffixListPath = FuzzEnvironment.publicSuffixListPath
        c.intel.feed = IndicatorFeed(set: FuzzEnvironment.indicators, logger: logger)
        c.intel.rulesIndicators = false
        return c
    }()
}
