import ConfigKit
import Events
import Foundation
import Logging
import ServiceLifecycle
@testable import SensorRuntime
import TestSupport
import UnixSignals
import XCTest

/// The composition root builds per-process resources once: every rules file is opened once per start
/// and once per reload, whatever the number of workers.
final class CompositionRootTests: XCTestCase {
    final class Discard: EventSink, @unchecked Sendable {
        let name = "discard"
        func write(_ json: UnsafeRawBufferPointer, metadata: EventMetadata) {}
        func flush() throws {}
        func close() throws {}
        var statistics: SinkStatistics { SinkStatistics() }
    }

    func testRulesFilesAreReadOncePerStartAndPerReloadWhateverTheWorkerCount() async throws {
        var c = SensorConfiguration()
        c.rulesDirectory = TestSupport.repositoryRoot.appendingPathComponent("Rules").path
        let logger = Logger(label: "test")
        // Every family on except evidence (no authorisation): c2.yaml, beaconing.yaml, lateral-movement.yaml,
        // dns-tunneling.yaml.
        let before = RulesFileReads.total
        let resources = try SensorResources(configuration: c, logger: logger)
        XCTAssertEqual(RulesFileReads.total - before, 4)
        XCTAssertFalse(resources.hostDetectors(resources.rules).isEmpty)
        for workers in [1, 4] {
            let start = RulesFileReads.total
            for i in 0..<workers {
                let emitter = resources.makeEmitter(sinks: [Discard()], ingress: "test")
                let analyzers = try WorkerAssembly.makeAnalyzers(resources, index: i, emitter: emitter, logger: logger)
                XCTAssertFalse(analyzers.isEmpty)
            }
            XCTAssertEqual(RulesFileReads.total, start, "\(workers) worker(s) read no rules file")
        }
        // A reload reads every document of every family once (evidence.yaml too: a set is accepted whole).
        let reloader = RulesReloadService(signals: await UnixSignalsSequence(trapping: []), resources: resources,
                                          mailbox: ReloadMailbox(), logger: logger)
        let beforeReload = RulesFileReads.total
        XCTAssertTrue(reloader.reload())
        XCTAssertEqual(RulesFileReads.total - beforeReload, SensorFamilies.allDocuments(c).count)
        XCTAssertEqual(SensorFamilies.allDocuments(c).count, 5)
    }

    /// `check-rules`, start-up and reload read rules the same way: a problem in any document is one
    /// error with its file and line, and start-up reports them all at once.
    func testEveryProblemOfEveryDocumentIsReportedAtOnce() throws {
        let dir = try TestSupport.temporaryDirectory("rules-problems")
        defer { try? FileManager.default.removeItem(at: dir) }
        try "nonstandard_port_c2:\n  threshold: lots\n".write(to: dir.appendingPathComponent("c2.yaml"), atomically: true, encoding: .utf8)
        try "fan_out: [\n".write(to: dir.appendingPathComponent("lateral-movement.yaml"), atomically: true, encoding: .utf8)
        let issues = RulesDirectory.check(dir.path)
        XCTAssertEqual(Set(issues.map { URL(fileURLWithPath: $0.file).lastPathComponent }), ["c2.yaml", "lateral-movement.yaml"], "\(issues)")
        var c = SensorConfiguration()
        c.rulesDirectory = dir.path
        XCTAssertThrowsError(try SensorResources(configuration: c, logger: Logger(label: "test"))) { e in
            XCTAssertTrue("\(e)".contains("c2.yaml:2") && "\(e)".contains("lateral-movement.yaml"), "\(e)")
        }
    }
}
