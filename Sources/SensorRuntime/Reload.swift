import ConfigKit
import Events
import Logging
import ServiceLifecycle
import Synchronization
import UnixSignals

/// A rules directory read and checked off the packet path, handed to the workers whole.
public struct RulesSnapshot: @unchecked Sendable {
    /// Increases with every accepted reload.
    public var generation: Int
    public var directory: String
    /// Each rules file's parsed document, by path (files that are empty are absent).
    public var documents: [String: ConfigValue]

    public init(generation: Int, directory: String, documents: [String: ConfigValue]) {
        self.generation = generation
        self.directory = directory
        self.documents = documents
    }
}

/// The seam analysers and detectors adopt to take new rules, allowlists and indicator lists on SIGHUP
/// without losing flow state.
///
/// A reload is two-phase. The reloader checks the whole directory first (`RulesDirectory.check`: syntax
/// and every detector's validator); a rule set with any problem is rejected with its reasons and nobody
/// sees it, so all workers keep running the same rules. An accepted snapshot is then posted to every
/// worker, which applies it on its own thread between two packets (no locks on the packet path): each
/// `Reloadable` analyser builds its new tables from the snapshot and swaps them in. Per-flow and
/// per-host state is the analyser's and is kept; only settings change. An analyser that still cannot
/// take the snapshot throws and keeps its old settings (logged), which the pre-check makes rare.
public protocol Reloadable: AnyObject {
    func reload(_ rules: RulesSnapshot) throws(ConfigIssues)
}

/// Where the reloader posts accepted snapshots for the workers to pick up at their next periodic call.
public final class ReloadMailbox: Sendable {
    let generation = Atomic<Int>(0)
    let latest = Mutex<RulesSnapshot?>(nil)

    public init() {}

    public func post(_ s: RulesSnapshot) {
        latest.withLock { $0 = s }
        generation.store(s.generation, ordering: .releasing)
    }

    /// The newest snapshot if it is newer than `applied` (one atomic load when there is none).
    public func take(newerThan applied: Int) -> RulesSnapshot? {
        guard generation.load(ordering: .acquiring) > applied else { return nil }
        return latest.withLock { $0 }
    }

    public var currentGeneration: Int { generation.load(ordering: .acquiring) }
}

/// Reloads the rules directory on SIGHUP.
public final class RulesReloadService: Service, @unchecked Sendable {
    let signals: UnixSignalsSequence
    let directory: String?
    let mailbox: ReloadMailbox
    let logger: Logger
    var generation = 0

    /// `signals` is created before the services start, so a SIGHUP sent once the sensor says it is
    /// capturing never hits the default action (terminate).
    public init(signals: UnixSignalsSequence, directory: String?, mailbox: ReloadMailbox, logger: Logger) {
        self.signals = signals
        self.directory = directory
        self.mailbox = mailbox
        self.logger = logger
    }

    public func run() async throws {
        for await _ in signals.cancelOnGracefulShutdown() {
            reload()
        }
    }

    /// Checks the directory and posts it to the workers, or rejects it and keeps the rules in use.
    @discardableResult
    public func reload() -> Bool {
        guard let dir = RulesDirectory.resolve(directory) else {
            logger.warning("SIGHUP: no rules directory to reload (give --rules or rules.directory)")
            return false
        }
        let issues = RulesDirectory.check(dir)
        guard issues.isEmpty else {
            logger.error("rules reload rejected; the rules in use stay in force", metadata: [
                "directory": "\(dir)", "problems": "\(issues.map(\.description).joined(separator: "; "))",
            ])
            return false
        }
        var docs: [String: ConfigValue] = [:]
        for f in RulesDirectory.yamlFiles(in: dir) {
            if let d = try? YAMLDocument.load(path: f) { docs[f] = d }
        }
        generation += 1
        mailbox.post(RulesSnapshot(generation: generation, directory: dir, documents: docs))
        logger.notice("rules reloaded", metadata: ["directory": "\(dir)", "files": "\(docs.count)", "generation": "\(generation)"])
        return true
    }
}
