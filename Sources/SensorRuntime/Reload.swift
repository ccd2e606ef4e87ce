import ConfigKit
import Events
import Logging
import ServiceLifecycle
import Synchronization
import UnixSignals

/// Where the reloader posts accepted rule sets for the host-level aggregators to pick up between two
/// records (no locks on their record path: one atomic load per look).
public final class ReloadMailbox: Sendable {
    let generation = Atomic<Int>(0)
    let latest = Mutex<RulesSet?>(nil)

    public init() {}

    public func post(_ s: RulesSet) {
        latest.withLock { $0 = s }
        generation.store(s.generation, ordering: .releasing)
    }

    /// The newest set if it is newer than `applied` (one atomic load when there is none).
    public func take(newerThan applied: Int) -> RulesSet? {
        guard generation.load(ordering: .acquiring) > applied else { return nil }
        return latest.withLock { $0 }
    }

    public var currentGeneration: Int { generation.load(ordering: .acquiring) }
}

/// Reloads the rules directory on SIGHUP.
///
/// Two-phase: every rules document is loaded and checked first (`SensorResources.reloadRules`, the same
/// reading `check-rules` and start-up use); a set with any problem is rejected with its reasons and
/// nobody sees it. An accepted set is posted whole to the host-level aggregators, which hand it to
/// their detectors between two records: thresholds, weights and allowlists change, per-pair and
/// per-host state stays.
public final class RulesReloadService: Service, @unchecked Sendable {
    let signals: UnixSignalsSequence
    let resources: SensorResources
    let mailbox: ReloadMailbox
    let logger: Logger
    var generation = 0

    /// `signals` is created before the services start, so a SIGHUP sent once the sensor says it is
    /// capturing never hits the default action (terminate).
    public init(signals: UnixSignalsSequence, resources: SensorResources, mailbox: ReloadMailbox, logger: Logger) {
        self.signals = signals
        self.resources = resources
        self.mailbox = mailbox
        self.logger = logger
    }

    public func run() async throws {
        for await _ in signals.cancelOnGracefulShutdown() {
            reload()
        }
    }

    /// Loads and checks the directory and posts it, or rejects it and keeps the rules in use.
    @discardableResult
    public func reload() -> Bool {
        let rules: RulesSet
        do { rules = try resources.reloadRules(generation: generation + 1) } catch {
            logger.error("rules reload rejected; the rules in use stay in force", metadata: [
                "directory": "\(resources.configuration.rulesDirectory ?? RulesDirectory.resolve(nil) ?? "")",
                "problems": "\(error.issues.map(\.description).joined(separator: "; "))",
            ])
            return false
        }
        generation += 1
        mailbox.post(rules)
        logger.notice("rules reloaded", metadata: ["directory": "\(rules.directory ?? "")", "generation": "\(generation)"])
        return true
    }
}
