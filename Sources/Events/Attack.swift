/// A MITRE ATT&CK tactic (`threat.tactic.*`), the closed set the sensor's detections fall under.
public enum Tactic: String, Sendable, CaseIterable {
    case credentialAccess = "TA0006"
    case privilegeEscalation = "TA0004"
    case discovery = "TA0007"
    case lateralMovement = "TA0008"
    case execution = "TA0002"
    case defenseEvasion = "TA0005"
    case commandAndControl = "TA0011"
    case exfiltration = "TA0010"

    public var id: String { rawValue }

    public var name: String {
        switch self {
        case .credentialAccess: return "Credential Access"
        case .privilegeEscalation: return "Privilege Escalation"
        case .discovery: return "Discovery"
        case .lateralMovement: return "Lateral Movement"
        case .execution: return "Execution"
        case .defenseEvasion: return "Defense Evasion"
        case .commandAndControl: return "Command and Control"
        case .exfiltration: return "Exfiltration"
        }
    }

    public var reference: String { "https://attack.mitre.org/tactics/\(rawValue)/" }
}

/// A MITRE ATT&CK technique or sub-technique.
///
/// ECS keeps the two apart: a sub-technique (`T1071.004`) goes to `threat.technique.subtechnique.*` and its
/// parent (`T1071`) to `threat.technique.*`, so an analyst filtering on `T1071` finds every DNS, web and
/// mail C2 alert. `id` is the full id; `parent` is derived from it. Every technique the sensor reports is a
/// constant below, with the tactic it stands for in the sensor's detections.
public struct Technique: Sendable, Equatable, Hashable {
    /// `T1071` or `T1071.004`.
    public var id: String
    /// ATT&CK's name of this technique or sub-technique (`DNS` for `T1071.004`).
    public var name: String
    /// For a sub-technique, ATT&CK's name of the parent technique.
    public var parentName: String?
    public var tactic: Tactic

    public init(id: String, name: String, parentName: String? = nil, tactic: Tactic) {
        self.id = id
        self.name = name
        self.parentName = parentName
        self.tactic = tactic
    }

    public var isSubtechnique: Bool { id.contains(".") }

    /// The technique itself, or a sub-technique's parent.
    public var parent: (id: String, name: String) {
        guard let dot = id.firstIndex(of: ".") else { return (id, name) }
        return (String(id[..<dot]), parentName ?? name)
    }

    /// The ATT&CK page (`https://attack.mitre.org/techniques/T1071/004/`).
    public var reference: String { "https://attack.mitre.org/techniques/\(String(id.map { $0 == "." ? "/" : $0 }))/" }

    static func sub(_ id: String, _ name: String, of parent: String, _ tactic: Tactic) -> Technique {
        Technique(id: id, name: name, parentName: parent, tactic: tactic)
    }

    // MARK: The catalogue (ATT&CK v14 names)

    public static let applicationLayerProtocol = Technique(id: "T1071", name: "Application Layer Protocol", tactic: .commandAndControl)
    public static let webProtocols = sub("T1071.001", "Web Protocols", of: "Application Layer Protocol", .commandAndControl)
    public static let fileTransferProtocols = sub("T1071.002", "File Transfer Protocols", of: "Application Layer Protocol", .commandAndControl)
    public static let mailProtocols = sub("T1071.003", "Mail Protocols", of: "Application Layer Protocol", .commandAndControl)
    public static let dnsProtocol = sub("T1071.004", "DNS", of: "Application Layer Protocol", .commandAndControl)
    public static let nonApplicationLayerProtocol = Technique(id: "T1095", name: "Non-Application Layer Protocol", tactic: .commandAndControl)
    public static let encryptedChannel = Technique(id: "T1573", name: "Encrypted Channel", tactic: .commandAndControl)
    public static let nonStandardPort = Technique(id: "T1571", name: "Non-Standard Port", tactic: .commandAndControl)
    public static let ingressToolTransfer = Technique(id: "T1105", name: "Ingress Tool Transfer", tactic: .commandAndControl)
    public static let exfiltrationOverUnencryptedNonC2 = sub("T1048.003", "Exfiltration Over Unencrypted Non-C2 Protocol",
                                                             of: "Exfiltration Over Alternative Protocol", .exfiltration)
    public static let remoteServices = Technique(id: "T1021", name: "Remote Services", tactic: .lateralMovement)
    public static let remoteDesktopProtocol = sub("T1021.001", "Remote Desktop Protocol", of: "Remote Services", .lateralMovement)
    public static let adminShares = sub("T1021.002", "SMB/Windows Admin Shares", of: "Remote Services", .lateralMovement)
    public static let dcom = sub("T1021.003", "Distributed Component Object Model", of: "Remote Services", .lateralMovement)
    public static let ssh = sub("T1021.004", "SSH", of: "Remote Services", .lateralMovement)
    public static let winRM = sub("T1021.006", "Windows Remote Management", of: "Remote Services", .lateralMovement)
    public static let lateralToolTransfer = Technique(id: "T1570", name: "Lateral Tool Transfer", tactic: .lateralMovement)
    public static let serviceExecution = sub("T1569.002", "Service Execution", of: "System Services", .execution)
    public static let atJob = sub("T1053.002", "At", of: "Scheduled Task/Job", .execution)
    public static let scheduledTask = sub("T1053.005", "Scheduled Task", of: "Scheduled Task/Job", .execution)
    public static let wmi = Technique(id: "T1047", name: "Windows Management Instrumentation", tactic: .execution)
    public static let dcSync = sub("T1003.006", "DCSync", of: "OS Credential Dumping", .credentialAccess)
    public static let clearWindowsEventLogs = sub("T1070.001", "Clear Windows Event Logs", of: "Indicator Removal", .defenseEvasion)
    public static let passwordGuessing = sub("T1110.001", "Password Guessing", of: "Brute Force", .credentialAccess)
    public static let passwordSpraying = sub("T1110.003", "Password Spraying", of: "Brute Force", .credentialAccess)
    public static let exploitationOfRemoteServices = Technique(id: "T1210", name: "Exploitation of Remote Services", tactic: .lateralMovement)
    public static let exploitationForPrivilegeEscalation = Technique(id: "T1068", name: "Exploitation for Privilege Escalation",
                                                                     tactic: .privilegeEscalation)
    public static let rogueDomainController = Technique(id: "T1207", name: "Rogue Domain Controller", tactic: .defenseEvasion)
    public static let networkShareDiscovery = Technique(id: "T1135", name: "Network Share Discovery", tactic: .discovery)
}

/// ECS `threat.*` arrays for a set of techniques: parents in `threat.technique.*`, sub-techniques in
/// `threat.technique.subtechnique.*`, each id once, in the order the detector listed them.
public struct ThreatMapping: Sendable, Equatable {
    public var techniques: [(id: String, name: String, reference: String)] = []
    public var subtechniques: [(id: String, name: String, reference: String)] = []
    public var tactics: [Tactic] = []

    public init(techniques list: [Technique], extraTactics: [Tactic] = []) {
        for t in list {
            let p = t.parent
            if !techniques.contains(where: { $0.id == p.id }) {
                techniques.append((p.id, p.name, "https://attack.mitre.org/techniques/\(p.id)/"))
            }
            if t.isSubtechnique, !subtechniques.contains(where: { $0.id == t.id }) {
                subtechniques.append((t.id, t.name, t.reference))
            }
            if !tactics.contains(t.tactic) { tactics.append(t.tactic) }
        }
        for t in extraTactics where !tactics.contains(t) { tactics.append(t) }
    }

    public static func == (a: ThreatMapping, b: ThreatMapping) -> Bool {
        a.techniques.map(\.id) == b.techniques.map(\.id) && a.subtechniques.map(\.id) == b.subtechniques.map(\.id) && a.tactics == b.tactics
    }
}
