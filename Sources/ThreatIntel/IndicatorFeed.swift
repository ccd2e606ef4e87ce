import ConfigKit
import Events
import Foundation
import Logging
import Synchronization

/// The live indicator set of a sensor: loaded from files at start, reloaded when a file changes or on
/// SIGHUP, shared by every pipeline worker.
///
/// Loading runs off the packet path (the watcher's own thread, or the caller at start); a reload that
/// finds any problem logs every issue with its file and line and keeps the previous set, so a bad
/// edit never leaves the sensor blind. Workers notice a new set by comparing `generation` (one atomic
/// load per packet-clock second) and then take the new reference; nothing else they hold changes, so
/// per-flow and rate-limit state survive the reload.
public final class IndicatorFeed: @unchecked Sendable {
    public let paths: [String]
    let logger: Logger
    /// The file digests the sensor computes (`files.hashes`; empty with `files.enabled: false`): hash
    /// indicators of other kinds are warned about at load.
    let fileHashes: Set<IndicatorType>
    let state: Mutex<(set: IndicatorSet, signature: [FileSignature], lastIssues: [ConfigIssue])>
    /// Bumped on every successful reload.
    public let generation = Atomic<UInt64>(0)
    let reloadRequested = Atomic<Bool>(false)
    let stopping = Atomic<Bool>(false)
    private var watcher: Thread?
    private var signalSource: DispatchSourceSignal?

    /// Loads every file now; any problem is an error (a sensor must not start with a broken feed).
    public init(paths: [String], logger: Logger, fileHashes: Set<IndicatorType> = [.md5, .sha1, .sha256]) throws(ConfigIssues) {
        self.paths = paths
        self.logger = logger
        self.fileHashes = fileHashes
        let files = Self.expand(paths)
        let set = try Self.loadAll(files)
        state = Mutex((set, Self.signature(files), []))
        logger.info("threat intelligence loaded", metadata: Self.summary(set, files: files.count))
        Self.warnUnmatchable(set, fileHashes: fileHashes, logger: logger)
    }

    /// An in-memory feed (tests, and callers that build sets themselves).
    public init(set: IndicatorSet, logger: Logger = Logger(label: "sensor.intel")) {
        self.paths = []
        self.logger = logger
        fileHashes = [.md5, .sha1, .sha256]
        state = Mutex((set, [], []))
    }

    deinit { stop() }

    /// The current set.
    public var current: IndicatorSet { state.withLock { $0.set } }

    /// The issues of the last failed reload (empty after a good one).
    public var lastIssues: [ConfigIssue] { state.withLock { $0.lastIssues } }

    /// Reloads now (synchronously). On any problem the old set stays and the issues are returned.
    @discardableResult
    public func reload() -> [ConfigIssue] {
        let files = Self.expand(paths)
        let sig = Self.signature(files)
        do {
            let set = try Self.loadAll(files)
            state.withLock { $0 = (set, sig, []) }
            generation.add(1, ordering: .releasing)
            logger.notice("threat intelligence reloaded", metadata: Self.summary(set, files: files.count))
            Self.warnUnmatchable(set, fileHashes: fileHashes, logger: logger)
            return []
        } catch {
            // Remember the signature too, so a broken file is reported once, not on every check.
            state.withLock { $0.signature = sig; $0.lastIssues = error.issues }
            for i in error.issues { logger.error("threat intelligence reload failed; keeping the previous set", metadata: ["issue": "\(i.description)"]) }
            return error.issues
        }
    }

    /// Whether any file changed (inode, size or modification time), appeared or disappeared.
    public func filesChanged() -> Bool {
        let sig = Self.signature(Self.expand(paths))
        return state.withLock { $0.signature } != sig
    }

    /// Starts the watcher: checks the files every `interval` seconds (0: never) and reloads on change,
    /// and reloads at once on SIGHUP.
    public func startWatching(interval: Double, handleSIGHUP: Bool = true) {
        guard watcher == nil, !paths.isEmpty else { return }
        if handleSIGHUP {
            HangupSignal.prepare()
            let s = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
            s.setEventHandler { [weak self] in self?.reloadRequested.store(true, ordering: .releasing) }
            s.resume()
            signalSource = s
        }
        let t = Thread { [weak self] in
            var sinceCheck = 0.0
            while true {
                // Sleep without holding the feed, so dropping the last reference ends the thread.
                Thread.sleep(forTimeInterval: 0.2)
                guard let self, !self.stopping.load(ordering: .acquiring) else { return }
                sinceCheck += 0.2
                if self.reloadRequested.exchange(false, ordering: .acquiring) {
                    self.logger.info("SIGHUP: reloading threat intelligence")
                    self.reload()
                    sinceCheck = 0
                } else if interval > 0, sinceCheck >= interval {
                    sinceCheck = 0
                    if self.filesChanged() { self.reload() }
                }
            }
        }
        t.name = "sensor-intel-reload"
        watcher = t
        t.start()
    }

    public func stop() {
        stopping.store(true, ordering: .releasing)
        signalSource?.cancel()
        signalSource = nil
    }

    // MARK: Files

    /// File names loaded from a directory (not recursive: `examples/` and README stay out).
    public static let extensions = [".txt", ".list", ".csv", ".json"]

    /// Paths with directories replaced by the indicator files directly inside them, sorted.
    public static func expand(_ paths: [String]) -> [String] {
        var out: [String] = []
        let fm = FileManager.default
        for p in paths {
            var isDir: ObjCBool = false
            if fm.fileExists(atPath: p, isDirectory: &isDir), isDir.boolValue {
                let names = (try? fm.contentsOfDirectory(atPath: p)) ?? []
                for n in names.sorted() where extensions.contains(where: { n.lowercased().hasSuffix($0) }) && !n.hasPrefix(".") {
                    var sub: ObjCBool = false
                    let full = p.hasSuffix("/") ? p + n : p + "/" + n
                    if fm.fileExists(atPath: full, isDirectory: &sub), !sub.boolValue { out.append(full) }
                }
            } else {
                out.append(p)
            }
        }
        return out
    }

    /// Loads files into one set; every issue of every file is collected before failing.
    public static func loadAll(_ files: [String]) throws(ConfigIssues) -> IndicatorSet {
        var all: [Indicator] = []
        var issues: [ConfigIssue] = []
        for f in files {
            do { all += try IndicatorLoader.load(path: f).indicators } catch { issues += error.issues }
        }
        if !issues.isEmpty { throw ConfigIssues(issues) }
        return IndicatorSet(all)
    }

    struct FileSignature: Equatable {
        var path: String
        var inode: UInt64
        var size: Int64
        var mtimeSeconds: Int
        var mtimeNanos: Int
    }

    static func signature(_ files: [String]) -> [FileSignature] {
        files.map { f in
            var st = stat()
            guard stat(f, &st) == 0 else { return FileSignature(path: f, inode: 0, size: -1, mtimeSeconds: 0, mtimeNanos: 0) }
            return FileSignature(path: f, inode: UInt64(st.st_ino), size: Int64(st.st_size),
                                 mtimeSeconds: Int(st.st_mtim.tv_sec), mtimeNanos: Int(st.st_mtim.tv_nsec))
        }
    }

    /// Hash indicators this sensor cannot match as their feed means them, one line per kind with its
    /// count: with file hashing off (`files.enabled: false`, `fileHashes` empty) or a digest left out of
    /// `files.hashes`, nothing produces that `ObservedFact.fileHash`, so an md5 indicator can never match
    /// and sha1/sha256 ones only as TLS server certificate fingerprints. Whoever loads a hash feed is told
    /// so rather than trusting silence.
    public static func unmatchableWarnings(_ set: IndicatorSet, fileHashes: Set<IndicatorType>) -> [String] {
        [IndicatorType.md5, .sha1, .sha256].compactMap { t in
            guard !fileHashes.contains(t), let n = set.countsByType[t], n > 0 else { return nil }
            let consequence = t == .md5 ? "they cannot match" : "they can match only TLS server certificates (TLS 1.2 and older)"
            let why = fileHashes.isEmpty ? "file hashing is off (files.enabled: false)" : "files are not hashed with \(t.rawValue) (files.hashes)"
            return "\(n) \(t.rawValue) file-hash indicators loaded but \(why): \(consequence)"
        }
    }

    static func warnUnmatchable(_ set: IndicatorSet, fileHashes: Set<IndicatorType>, logger: Logger) {
        for w in unmatchableWarnings(set, fileHashes: fileHashes) { logger.warning("\(w)") }
    }

    static func summary(_ set: IndicatorSet, files: Int) -> Logger.Metadata {
        var m: Logger.Metadata = ["files": "\(files)", "indicators": "\(set.distinctCount)"]
        for (t, n) in set.countsByType.sorted(by: { $0.key.rawValue < $1.key.rawValue }) { m[t.rawValue] = "\(n)" }
        return m
    }
}
