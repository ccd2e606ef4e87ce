import Foundation

/// Helpers for tests that run the real `sensor` binary and the real reference tools (tshark, capinfos, …).
public enum TestSupport {
    /// The repository root (where Package.swift is).
    public static let repositoryRoot: URL = {
        var url = URL(fileURLWithPath: #filePath)
        while url.path != "/" {
            url.deleteLastPathComponent()
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { return url }
        }
        return URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
    }()

    /// `../shared` next to the repository (captures, mmdb files, PSL).
    public static let shared: URL = repositoryRoot.deletingLastPathComponent().appendingPathComponent("shared")

    /// A file under `../shared/data/`.
    public static func data(_ relative: String) -> String { shared.appendingPathComponent("data").appendingPathComponent(relative).path }

    /// Every capture file in a category folder of `../shared/data/pcaps/`, sorted.
    public static func captures(_ category: String) -> [String] {
        let dir = shared.appendingPathComponent("data/pcaps").appendingPathComponent(category)
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        return names.filter { $0.hasSuffix(".pcap") || $0.hasSuffix(".pcapng") }.sorted().map { dir.appendingPathComponent($0).path }
    }

    /// Test data that is not where `../shared` should hold it.
    public struct MissingData: Error, CustomStringConvertible {
        public let description: String
    }

    /// The captures of every category (as `captures`), or an error when a category has none or a file is
    /// missing (`../shared` absent or moved): a test given no input would prove nothing, or wait for
    /// input that never comes (an aggregator for its first producer).
    public static func requiredCaptures(_ categories: [String], files: [String] = []) throws -> [String] {
        var found: [String] = []
        for c in categories {
            let inCategory = captures(c)
            guard !inCategory.isEmpty else { throw MissingData(description: "no capture in \(shared.path)/data/pcaps/\(c)") }
            found += inCategory
        }
        for f in files where !FileManager.default.fileExists(atPath: f) { throw MissingData(description: "missing test data: \(f)") }
        return found + files
    }

    /// Captures in `beacon/` and `c2-nonstd-port/` that hold no channel a detector can honestly report as
    /// beaconing or non-standard-port C2: fewer than the four connection starts a beacon needs
    /// (cryptowall4_c2: 3 POSTs; emotet and malware: excerpts of several hosts and years). The premises
    /// are pinned with tshark in `C2CaptureTests`; the evidence acceptance replay expects no alert there.
    public static let c2CapturesWithoutReportableChannel: Set<String> = [
        "cryptowall4_c2.pcapng", "emotet.pcap", "malware.pcap",
    ]

    /// The built `sensor` executable next to the test bundle.
    public static var sensorBinary: String {
        let candidates = [
            Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent("sensor").path,
            Bundle.main.bundleURL.appendingPathComponent("sensor").path,
            repositoryRoot.appendingPathComponent(".build/debug/sensor").path,
        ]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates.last!
    }

    public struct ProcessResult {
        public var status: Int32
        public var stdout: Data
        public var stderr: String
        public var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
        public var lines: [String] { stdoutText.split(separator: "\n", omittingEmptySubsequences: true).map(String.init) }
    }

    /// Runs a program to completion, collecting its output (both pipes drained concurrently).
    @discardableResult
    public static func run(_ executable: String, _ arguments: [String], stdin: Data? = nil, environment: [String: String]? = nil,
                           currentDirectory: String? = nil) throws -> ProcessResult {
        let p = Process()
        if executable.hasPrefix("/") {
            p.executableURL = URL(fileURLWithPath: executable)
            p.arguments = arguments
        } else {
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments = [executable] + arguments
        }
        if let environment { p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        if let currentDirectory { p.currentDirectoryURL = URL(fileURLWithPath: currentDirectory) }
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        let inPipe = Pipe()
        p.standardInput = stdin == nil ? FileHandle.nullDevice : inPipe
        try p.run()
        if let stdin {
            inPipe.fileHandleForWriting.write(stdin)
            try? inPipe.fileHandleForWriting.close()
        }
        // Both pipes are drained at once so a chatty stderr cannot block the child on a full pipe.
        final class Collected: @unchecked Sendable { var out = Data(); var err = Data() }
        let collected = Collected()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async { collected.out = out.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        group.enter()
        DispatchQueue.global().async { collected.err = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        group.wait()
        p.waitUntilExit()
        return ProcessResult(status: p.terminationStatus, stdout: collected.out, stderr: String(decoding: collected.err, as: UTF8.self))
    }

    /// Runs `sensor` with arguments.
    @discardableResult
    public static func sensor(_ arguments: [String], stdin: Data? = nil, currentDirectory: String? = nil) throws -> ProcessResult {
        try run(sensorBinary, arguments, stdin: stdin, currentDirectory: currentDirectory ?? repositoryRoot.path)
    }

    /// Parses newline-delimited JSON events.
    public static func events(_ result: ProcessResult) throws -> [[String: Any]] {
        try result.lines.map { line in
            guard let obj = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                throw NSError(domain: "TestSupport", code: 1, userInfo: [NSLocalizedDescriptionKey: "not a JSON object: \(line.prefix(200))"])
            }
            return obj
        }
    }

    /// Reads a dotted path (`network.community_id`) from a nested event.
    public static func value(_ event: [String: Any], _ path: String) -> Any? {
        var cur: Any? = event
        for part in path.split(separator: ".") {
            guard let d = cur as? [String: Any] else { return nil }
            cur = d[String(part)]
        }
        return cur
    }

    /// Whether a command exists on PATH.
    /// ATT&CK ids of an alert: `threat.technique.id` then `threat.technique.subtechnique.id` (ECS keeps
    /// sub-techniques apart); nil when the event names no technique.
    public static func techniqueIDs(_ event: [String: Any]) -> [String]? {
        guard let parents = value(event, "threat.technique.id") as? [String] else { return nil }
        return parents + (value(event, "threat.technique.subtechnique.id") as? [String] ?? [])
    }

    public static func hasTool(_ name: String) -> Bool {
        (try? run("/bin/sh", ["-c", "command -v \(name)"]).status) == 0
    }

    /// A fresh private temporary directory.
    public static func temporaryDirectory(_ prefix: String = "sensor-test") throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        return url
    }

    struct RulesEditError: Error, CustomStringConvertible {
        var description: String
    }

    /// A copy of the repository's `Rules/` in `dir` with one line of `file` changed (`old` must be in it),
    /// for a run with `--rules`.
    public static func rulesCopy(in dir: URL, editing file: String, replacing old: String, with new: String) throws -> URL {
        let rules = dir.appendingPathComponent("rules")
        try FileManager.default.copyItem(at: repositoryRoot.appendingPathComponent("Rules"), to: rules)
        let url = rules.appendingPathComponent(file)
        let text = try String(contentsOf: url, encoding: .utf8)
        guard text.contains(old) else { throw RulesEditError(description: "\(file) has no \(old)") }
        try text.replacingOccurrences(of: old, with: new).write(to: url, atomically: true, encoding: .utf8)
        return rules
    }
}

/// Writes classic pcap files for tests that need inputs no public capture has (random or hostile records).
public struct PcapFileWriter {
    public var data = Data()
    /// Headers in big-endian order (a file written on the other kind of machine).
    let bigEndian: Bool

    /// `magic` 0xA1B2_3C4D: nanosecond fractions.
    public init(linkType: UInt32 = 1, snapLength: UInt32 = 262_144, magic: UInt32 = 0xa1b2_c3d4, minorVersion: UInt16 = 4,
                bigEndian: Bool = false) {
        self.bigEndian = bigEndian
        append32(magic)
        append16(2); append16(minorVersion)
        append32(0); append32(0)
        append32(snapLength)
        append32(linkType)
    }

    mutating func append16(_ v: UInt16) { withUnsafeBytes(of: bigEndian ? v.bigEndian : v.littleEndian) { data.append(contentsOf: $0) } }
    mutating func append32(_ v: UInt32) { withUnsafeBytes(of: bigEndian ? v.bigEndian : v.littleEndian) { data.append(contentsOf: $0) } }

    /// One record; `capturedLength`/`wireLength` may lie on purpose.
    public mutating func record(seconds: UInt32, micros: UInt32 = 0, bytes: [UInt8], capturedLength: UInt32? = nil, wireLength: UInt32? = nil) {
        append32(seconds); append32(micros)
        append32(capturedLength ?? UInt32(bytes.count))
        append32(wireLength ?? UInt32(bytes.count))
        data.append(contentsOf: bytes)
    }

    public func write(to path: String) throws { try data.write(to: URL(fileURLWithPath: path)) }
}

/// A deterministic PRNG (SplitMix64) for property tests whose failures must reproduce.
public struct SeededRandom: RandomNumberGenerator {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
