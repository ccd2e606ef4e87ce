import ConfigKit
import Foundation
import Events
import PacketCore

/// The `evidence:` section of the sensor configuration (and its CLI flags).
///
/// Evidence capture records the content of people's communications, so it is off unless an
/// authorisation reference (the signed IR authorisation, ticket or case number) is configured; with one,
/// an evidence directory and at least one age recipient are required, so nothing is ever kept in clear.
public struct EvidenceConfiguration: Sendable, Equatable {
    public var directory: String?
    /// age X25519 recipients (`age1…`): who can decrypt the evidence.
    public var recipients: [String] = []
    /// age recipients files (`age -R`): a team's list of keys, read at start.
    public var recipientsFiles: [String] = []
    public var authorization: String?
    public var purpose: String?
    public var operatorName: String?
    /// Defaults to `custody.jsonl` in the evidence directory.
    public var custodyLog: String?
    /// How long evidence files are kept (wall-clock time after they close).
    public var retentionSeconds: Double = 90 * 86400
    /// Lookback ring per worker.
    public var lookbackBytes: Int = 64 << 20
    public var lookbackSeconds: Double = 60
    /// After this many bytes of a flow, the lookback ring keeps only the packet's headers (0: off). The
    /// start of every flow (handshakes, hellos, requests) is what evidence mostly needs; bulk transfer is
    /// most of the bytes, and so most of the ring's cost and of the content it holds.
    public var lookbackFlowBytes: Int = 0
    /// Bytes kept per packet, in the ring and in the evidence (96 ≈ headers only).
    public var snapLength: Int = 262_144
    public var timestampResolution: TimestampResolution = .nanoseconds
    /// Global caps; alerts that would exceed them are refused and counted.
    public var maxConcurrentCaptures: Int = 8
    public var maxDiskBytes: Int = 2 << 30

    public init() {}

    /// On only with an authorisation reference.
    public var enabled: Bool { authorization.map { !$0.isEmpty } ?? false }

    public var custodyLogPath: String? { custodyLog ?? directory.map { "\($0)/custody.jsonl" } }

    /// The problems that stop evidence capture from starting when it is enabled.
    public func validate() -> [String] {
        guard enabled else { return [] }
        var problems: [String] = []
        if directory == nil || directory!.isEmpty { problems.append("evidence: an authorization reference is set but no evidence directory (--evidence-dir)") }
        if recipients.isEmpty && recipientsFiles.isEmpty {
            problems.append("evidence: an authorization reference is set but no age recipient (--evidence-recipient age1… or --evidence-recipients-file); evidence is never stored unencrypted")
        }
        for r in recipients {
            do { _ = try AgeRecipient(r) } catch { problems.append("evidence: \(error.description)") }
        }
        for f in recipientsFiles {
            do { _ = try AgeRecipientsFile.read(f) } catch { problems.append("evidence: \(error.description)") }
        }
        return problems
    }

    /// The recipients given inline, then those of each recipients file, duplicates removed.
    public func resolvedRecipients() throws(AgeError) -> [AgeRecipient] {
        var out: [AgeRecipient] = []
        for r in recipients { out.append(try AgeRecipient(r)) }
        for f in recipientsFiles { out += try AgeRecipientsFile.read(f) }
        var seen = Set<String>()
        return out.filter { seen.insert($0.text).inserted }
    }

    public static let sectionKeys: Set<String> = [
        "directory", "recipients", "recipients_file", "authorization", "purpose", "operator", "custody_log", "retention",
        "lookback", "snaplen", "timestamp_resolution", "max_concurrent", "max_disk",
    ]

    /// Reads the `evidence:` section, reporting problems through `r` (one reader for the whole file).
    public static func parse(_ v: ConfigValue, into c: inout EvidenceConfiguration, reader r: inout ConfigReader) {
        let t = r.table(v, allowed: sectionKeys)
        c.directory = r.string(t["directory"]) ?? c.directory
        if let list = r.stringList(t["recipients"]) {
            c.recipients = list
            for (i, s) in list.enumerated() {
                do { _ = try AgeRecipient(s) } catch {
                    r.report((t["recipients"]!.items?[i]) ?? t["recipients"]!, error.description)
                }
            }
        }
        if let files = r.stringList(t["recipients_file"]) { c.recipientsFiles = files }
        c.authorization = r.string(t["authorization"]) ?? c.authorization
        c.purpose = r.string(t["purpose"]) ?? c.purpose
        c.operatorName = r.string(t["operator"]) ?? c.operatorName
        c.custodyLog = r.string(t["custody_log"]) ?? c.custodyLog
        if let s = r.seconds(t["retention"], in: 0...(3650 * 86400)) { c.retentionSeconds = s }
        if let lv = t["lookback"] {
            let lt = r.table(lv, allowed: ["bytes", "seconds", "flow_bytes"])
            if let b = r.byteSize(lt["bytes"], in: (64 << 10)...(4 << 30 - 1)) { c.lookbackBytes = b }
            if let s = r.seconds(lt["seconds"], in: 0...3600) { c.lookbackSeconds = s }
            if let b = r.byteSize(lt["flow_bytes"], in: 0...(1 << 40)) { c.lookbackFlowBytes = b }
        }
        // At least 96: VLAN + IPv6 + TCP headers, so stored frames still decode to their flow.
        if let s = r.int(t["snaplen"], in: 96...262_144) { c.snapLength = s }
        if let tv = t["timestamp_resolution"], let s = r.string(tv) {
            if let res = TimestampResolution(rawValue: s) { c.timestampResolution = res } else { r.report(tv, "must be ns or us") }
        }
        if let m = r.int(t["max_concurrent"], in: 1...1024) { c.maxConcurrentCaptures = m }
        if let d = r.byteSize(t["max_disk"], in: (1 << 20)...Int.max) { c.maxDiskBytes = d }
    }
}

/// One entry of `Rules/evidence.yaml`: which alerts open a capture and what it holds.
public struct EvidenceTrigger: Sendable, Equatable {
    public var name: String
    /// Empty means every category.
    public var categories: Set<String>
    public var minimumSeverity: Severity
    public var scope: ScopeKind
    /// Live capture after the (latest) alert, on the packet clock.
    public var duration: Timestamp.Duration
    /// Lookback included before the alert (at most the ring's own window).
    public var lookback: Timestamp.Duration?
    /// Plaintext pcapng bytes at which the capture closes.
    public var maxBytes: Int

    public init(name: String, categories: Set<String> = [], minimumSeverity: Severity = .low, scope: ScopeKind = .host,
                duration: Timestamp.Duration = .seconds(300), lookback: Timestamp.Duration? = nil, maxBytes: Int = 64 << 20) {
        self.name = name
        self.categories = categories
        self.minimumSeverity = minimumSeverity
        self.scope = scope
        self.duration = duration
        self.lookback = lookback
        self.maxBytes = maxBytes
    }

    public func matches(_ alert: Alert) -> Bool {
        alert.severity >= minimumSeverity && (categories.isEmpty || categories.contains(alert.category.rawValue))
    }
}

/// `Rules/evidence.yaml`: which alerts open a capture. Read with ConfigKit like every rules file.
public struct EvidenceRules: RulesDocument {
    public static let fileName = "evidence.yaml"
    /// In file order: the first trigger that matches an alert decides.
    public var triggers: [EvidenceTrigger] = []

    public init() {}

    public static func parse(_ root: ConfigValue) throws(ConfigIssues) -> EvidenceRules {
        var rules = EvidenceRules()
        rules.triggers = try triggers(root)
        return rules
    }

    static func triggers(_ root: ConfigValue) throws(ConfigIssues) -> [EvidenceTrigger] {
        var r = ConfigReader()
        let top = r.table(root, allowed: ["triggers"])
        var out: [EvidenceTrigger] = []
        let categories = Set(RuleCategory.allCases.map(\.rawValue))
        for item in top["triggers"]?.items ?? [] {
            let t = r.table(item, allowed: ["name", "categories", "min_severity", "scope", "duration", "lookback", "max_bytes"])
            var trig = EvidenceTrigger(name: r.string(t["name"]) ?? "trigger-\(out.count + 1)")
            if let list = r.stringList(t["categories"]) {
                for (i, c) in list.enumerated() where !categories.contains(c) {
                    r.report(t["categories"]!.items?[i] ?? t["categories"]!, "unknown alert category '\(c)' (known: \(categories.sorted().joined(separator: ", ")))")
                }
                trig.categories = Set(list)
            }
            if let sv = t["min_severity"], let s = r.string(sv) {
                if let sev = Severity(name: s) { trig.minimumSeverity = sev } else { r.report(sv, "must be low, medium, high or critical") }
            }
            if let sv = t["scope"], let s = r.string(sv) {
                if let k = ScopeKind(rawValue: s) { trig.scope = k } else { r.report(sv, "must be flow, host_pair or host") }
            }
            if let d = r.seconds(t["duration"], in: 0...86400) { trig.duration = .seconds(d) }
            if let d = r.seconds(t["lookback"], in: 0...3600) { trig.lookback = .seconds(d) }
            if let b = r.byteSize(t["max_bytes"], in: 4096...(64 << 30)) { trig.maxBytes = b }
            out.append(trig)
        }
        if top["triggers"] != nil && top["triggers"]!.items == nil && !top["triggers"]!.isNull {
            r.report(top["triggers"]!, "expected a list of triggers")
        }
        if !r.issues.isEmpty { throw ConfigIssues(r.issues) }
        return out
    }
}

extension ConfigReader {
    /// A byte size: an integer, optionally with a K/M/G/T suffix (powers of 1024; `KiB`, `MB`, … accepted).
    public mutating func byteSize(_ v: ConfigValue?, in range: ClosedRange<Int>) -> Int? {
        guard let v else { return nil }
        guard var s = v.scalarText?.trimmingCharacters(in: .whitespaces).uppercased(), !s.isEmpty else {
            report(v, "expected a size such as 65536, 64K, 64MiB, 2G"); return nil
        }
        for suffix in ["IB", "B"] where s.hasSuffix(suffix) { s.removeLast(suffix.count); break }
        var mult = 1
        switch s.last {
        case "K": mult = 1 << 10
        case "M": mult = 1 << 20
        case "G": mult = 1 << 30
        case "T": mult = 1 << 40
        default: break
        }
        if mult > 1 { s.removeLast() }
        guard let n = Int(s.trimmingCharacters(in: .whitespaces)), n >= 0 else {
            report(v, "expected a size such as 65536, 64K, 64MiB, 2G"); return nil
        }
        let (total, overflow) = n.multipliedReportingOverflow(by: mult)
        guard !overflow, range.contains(total) else { report(v, "must be between \(range.lowerBound) and \(range.upperBound) bytes"); return nil }
        return total
    }
}
