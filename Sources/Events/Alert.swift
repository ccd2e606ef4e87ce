import PacketCore

/// `rule.category` values: one per detector family.
public enum RuleCategory: String, Sendable, CaseIterable {
    case lateralMovement = "lateral_movement"
    case dnsTunneling = "dns_tunneling"
    case nonstandardPortC2 = "nonstandard_port_c2"
    case beaconing = "beaconing"
    case threatIntel = "threat_intel"

    /// `rule.version`: the revision of this family's detection logic, raised when what it alerts on changes.
    public var ruleVersion: String {
        switch self {
        case .lateralMovement, .dnsTunneling, .nonstandardPortC2, .beaconing, .threatIntel: return "2"
        }
    }
}

/// One end of a flow as an alert names it.
public struct Endpoint: Sendable, Equatable {
    public var ip: IPAddress
    public var port: UInt16?
    public init(ip: IPAddress, port: UInt16? = nil) { self.ip = ip; self.port = port }
}

/// Alert severity: `event.severity` 1…4 and the syslog severity it maps to.
public enum Severity: Int, Sendable, Comparable, CaseIterable {
    case low = 1, medium = 2, high = 3, critical = 4

    public static func < (a: Severity, b: Severity) -> Bool { a.rawValue < b.rawValue }

    public init?(name: String) {
        switch name.lowercased() {
        case "low": self = .low
        case "medium": self = .medium
        case "high": self = .high
        case "critical": self = .critical
        default: return nil
        }
    }

    public var name: String {
        switch self {
        case .low: return "low"
        case .medium: return "medium"
        case .high: return "high"
        case .critical: return "critical"
        }
    }
}

/// The one alert shape every detector produces (`event.kind: alert`, `event.dataset: spanwatch.alert`).
///
/// Detectors decide; this type only carries their decision and its evidence. Alerts are rare, so it is
/// an ordinary value with strings and arrays. `details` lands under the vendor namespace in an object named
/// after the rule category (e.g. `spanwatch.dns_tunneling.*`), documented per detector in docs/SCHEMA.md.
/// `ruleID` is `<category>.<rule>` in snake case (`dns_tunneling.channel`), one style for every detector.
public struct Alert: Sendable {
    public var timestamp: Timestamp
    public var category: RuleCategory
    public var ruleID: String
    public var ruleName: String
    /// `rule.description`: what the rule looks for, one or two sentences.
    public var ruleDescription: String
    public var techniques: [Technique]
    /// Tactics beyond those of `techniques` (each technique brings its own).
    public var tactics: [Tactic]
    public var severity: Severity
    /// 0–100.
    public var riskScore: Double
    public var message: String
    public var source: Endpoint?
    public var destination: Endpoint?
    /// IP protocol of the flow the alert is about, if any.
    public var ipProtocol: UInt8?
    public var communityID: String?
    public var relatedIPs: [IPAddress]
    public var relatedUsers: [String]
    public var relatedHosts: [String]
    public var details: [(String, JSONValue)]
    /// Extra members of the ECS `threat` object beside the MITRE ones (threat intelligence writes
    /// `threat.indicator` and `threat.enrichments` here).
    public var threatFields: [(String, JSONValue)] = []

    public init(timestamp: Timestamp, category: RuleCategory, ruleID: String, ruleName: String, ruleDescription: String,
                techniques: [Technique], tactics: [Tactic] = [], severity: Severity, riskScore: Double, message: String,
                source: Endpoint? = nil, destination: Endpoint? = nil, ipProtocol: UInt8? = nil, communityID: String? = nil,
                relatedIPs: [IPAddress] = [], relatedUsers: [String] = [], relatedHosts: [String] = [],
                details: [(String, JSONValue)] = []) {
        self.timestamp = timestamp
        self.category = category
        self.ruleID = ruleID
        self.ruleName = ruleName
        self.ruleDescription = ruleDescription
        self.techniques = techniques
        self.tactics = tactics
        self.severity = severity
        self.riskScore = riskScore
        self.message = message
        self.source = source
        self.destination = destination
        self.ipProtocol = ipProtocol
        self.communityID = communityID
        self.relatedIPs = relatedIPs
        self.relatedUsers = relatedUsers
        self.relatedHosts = relatedHosts
        self.details = details
    }

    /// A stable id (`event.id`): the same alert from the same traffic gets the same id in replay and live,
    /// so evidence files and custody entries can name it.
    public var id: String {
        var text = Array("\(ruleID)|\(timestamp.nanoseconds)|\(source.map { "\($0.ip)" } ?? "")|\(destination.map { "\($0.ip)" } ?? "")|\(relatedIPs.map(\.description).joined(separator: ","))".utf8)
        let d = text.withUnsafeMutableBytes { SHA1.hash(UnsafeRawBufferPointer($0)) }
        var out: [UInt8] = []
        let hex: [UInt8] = Array("0123456789abcdef".utf8)
        withUnsafeBytes(of: d) { b in
            for i in 0..<10 { out.append(hex[Int(b[i] >> 4)]); out.append(hex[Int(b[i] & 15)]) }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
