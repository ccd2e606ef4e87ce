import Analyzers
import ConfigKit
import Events
import HostStage
import Logging

/// One analyser family (C2, lateral movement, DNS, threat intelligence, evidence): what it reads from
/// the rules directory, what it prepares once per process, the analysers it adds to each worker's
/// pipeline, and the detectors it runs in the host-level stage.
///
/// The composition root (`SensorResources`, `WorkerAssembly`) iterates over `SensorFamilies.all`; a
/// family (or a detector of one) is added by its own files and one line there.
public protocol SensorFamily: Sendable {
    /// What the family prepares once per process and shares, read-only, with every worker.
    associatedtype Shared = Void

    init(configuration: SensorConfiguration)
    /// For logs and errors.
    var name: String { get }
    /// Whether the configuration switches the family on (an off family reads no rules file).
    var isEnabled: Bool { get }
    /// The rules documents it reads.
    var documents: [any RulesDocument.Type] { get }
    /// Where its analysers sit in a worker's pipeline.
    var place: PipelinePlace { get }
    /// Per-process set-up once every rules document was read; throws what stops the sensor from starting.
    func prepare(_ rules: RulesSet, logger: Logger) throws -> Shared
    /// The analysers of one worker's pipeline.
    func makeAnalyzers(_ worker: inout WorkerContext, _ shared: Shared) throws -> [any PacketAnalyzer]
    /// The host detectors this family runs with `rules` (empty when they are off).
    func hostDetectors(_ rules: RulesSet, _ shared: Shared) -> [HostDetectorFactory]
    /// A live host-stage aggregator's emitter (its detectors' alerts), e.g. for evidence capture.
    func observeHostStage(_ emitter: EventEmitter, _ shared: Shared)
}

extension SensorFamily where Shared == Void {
    public func prepare(_ rules: RulesSet, logger: Logger) throws {}
}

extension SensorFamily {
    public func hostDetectors(_ rules: RulesSet, _ shared: Shared) -> [HostDetectorFactory] { [] }
    public func observeHostStage(_ emitter: EventEmitter, _ shared: Shared) {}
}

/// Where a family's analysers sit in a worker's pipeline, in this order: after the shared TCP
/// reassembly, the analysers whose per-flow facts label a flow's end; then the host-fact tap (which
/// sends each flow's end with those labels to the host stage, so a flow's last facts precede its end);
/// then the analysers that consume what the others found (DNS, intelligence matching, and evidence,
/// which closes last so captures end after every detector concluded).
public enum PipelinePlace: Int, Comparable, Sendable {
    case labelsFlows
    case afterHostFacts
    public static func < (a: PipelinePlace, b: PipelinePlace) -> Bool { a.rawValue < b.rawValue }
}

/// What one worker's analysers are built with.
public struct WorkerContext {
    public let index: Int
    public let configuration: SensorConfiguration
    public let emitter: EventEmitter
    /// The one TCP reassembly of the worker: stream consumers register on it.
    public let reassembler: StreamReassembler
    /// The worker's side of the host-level stage: analysers hand their facts to it.
    public let hostFacts: HostFactPublisher
    public let logger: Logger
    /// Set by the family whose analysers hold the per-flow labels (C2).
    public var labeler: FlowLabeler = .none
}

/// A family with what it prepared, type-erased for the composition root.
struct PreparedFamily: @unchecked Sendable {
    let name: String
    let place: PipelinePlace
    let makeAnalyzers: (inout WorkerContext) throws -> [any PacketAnalyzer]
    let hostDetectors: (RulesSet) -> [HostDetectorFactory]
    let observeHostStage: (EventEmitter) -> Void

    init<F: SensorFamily>(_ family: F, rules: RulesSet, logger: Logger) throws {
        let shared = try family.prepare(rules, logger: logger)
        name = family.name
        place = family.place
        makeAnalyzers = { try family.makeAnalyzers(&$0, shared) }
        hostDetectors = { family.hostDetectors($0, shared) }
        observeHostStage = { family.observeHostStage($0, shared) }
    }
}

/// The registered families, in pipeline and detector order.
public enum SensorFamilies {
    public static let all: [any SensorFamily.Type] = [
        C2Family.self,
        LateralMovementFamily.self,
        DNSFamily.self,
        IntelFamily.self,
        EvidenceFamily.self,
    ]

    /// Every rules document any family reads (`check-rules` and reloads check them all).
    public static func allDocuments(_ c: SensorConfiguration) -> [any RulesDocument.Type] {
        all.flatMap { $0.init(configuration: c).documents }
    }
}
