import Synchronization

/// One kind of file in the rules directory (`c2.yaml`, `lateral-movement.yaml`, …): its name, what
/// applies when it is absent, and its parser.
///
/// Start-up, `check-rules` and SIGHUP all read rules through `load(directory:)`, so a file is checked
/// the same way wherever it is read, and every problem is reported with its line.
public protocol RulesDocument: Sendable {
    static var fileName: String { get }
    /// The rules when the file is absent.
    init()
    /// Every problem of the document at once (`file:line:column: message`).
    static func parse(_ root: ConfigValue) throws(ConfigIssues) -> Self
}

extension RulesDocument {
    /// The document in `directory`, or the defaults when the file does not exist (ENOENT only: a file
    /// that exists but cannot be read or parsed is an error).
    public static func load(directory: String) throws(ConfigIssues) -> Self {
        try loadNoting(directory: directory).0
    }

    /// `optional`: a missing file gives the defaults; otherwise it is an error.
    public static func load(path: String, optional: Bool = false) throws(ConfigIssues) -> Self {
        RulesFileReads.count.add(1, ordering: .relaxed)
        let root: ConfigValue?
        do { root = try YAMLDocument.load(path: path, optional: optional) } catch { throw ConfigIssues([error]) }
        guard let root else { return Self() }
        return try parse(root)
    }

    /// For tests and tools that hold the text rather than a file.
    public static func parse(text: String, file: String = fileName) throws(ConfigIssues) -> Self {
        let root: ConfigValue?
        do { root = try YAMLDocument.parse(text, file: file) } catch { throw ConfigIssues([error]) }
        guard let root else { return Self() }
        return try parse(root)
    }
}

/// How many rules files this process has opened: a rules file is read once per start and once per
/// reload whatever the worker count, and tests hold the sensor to that.
public enum RulesFileReads {
    static let count = Atomic<Int>(0)
    public static var total: Int { count.load(ordering: .relaxed) }
}

/// Every rules document the sensor reads, loaded from one directory at one moment: what start-up
/// hands to the analysers and detectors, and what a reload swaps in whole.
public struct RulesSet: @unchecked Sendable {
    /// The directory read (nil: no rules directory, every document at its defaults).
    public let directory: String?
    /// Increases with every accepted reload (0 at start).
    public var generation: Int
    var documents: [ObjectIdentifier: any RulesDocument]
    /// The documents whose file was absent (their defaults apply).
    public let absent: Set<String>

    /// Each of `kinds` read once from `directory` (absent files give their defaults); every problem
    /// of every document at once.
    public static func load(directory: String?, kinds: [any RulesDocument.Type], generation: Int = 0) throws(ConfigIssues) -> RulesSet {
        var documents: [ObjectIdentifier: any RulesDocument] = [:]
        var absent: Set<String> = []
        var issues: [ConfigIssue] = []
        for kind in kinds where documents[ObjectIdentifier(kind)] == nil {
            guard let directory else {
                documents[ObjectIdentifier(kind)] = kind.init()
                absent.insert(kind.fileName)
                continue
            }
            do {
                let (document, present) = try Self.read(kind, directory: directory)
                documents[ObjectIdentifier(kind)] = document
                if !present { absent.insert(kind.fileName) }
            } catch { issues += error.issues }
        }
        if !issues.isEmpty { throw ConfigIssues(issues) }
        return RulesSet(directory: directory, generation: generation, documents: documents, absent: absent)
    }

    static func read<D: RulesDocument>(_ kind: D.Type, directory: String) throws(ConfigIssues) -> (any RulesDocument, Bool) {
        let (document, present) = try kind.loadNoting(directory: directory)
        return (document, present)
    }

    /// The document of `kind` (its defaults when it was not among the kinds loaded).
    public subscript<D: RulesDocument>(_ kind: D.Type) -> D {
        documents[ObjectIdentifier(kind)] as? D ?? D()
    }

    /// Whether the file of `kind` was read (not absent, and among the kinds loaded).
    public func isPresent<D: RulesDocument>(_ kind: D.Type) -> Bool {
        documents[ObjectIdentifier(kind)] != nil && !absent.contains(kind.fileName)
    }

    /// Every document at its defaults (no rules directory).
    public static let defaults = RulesSet(directory: nil, generation: 0, documents: [:], absent: [])
}

extension RulesDocument {
    /// The document and whether its file exists.
    static func loadNoting(directory: String) throws(ConfigIssues) -> (Self, Bool) {
        RulesFileReads.count.add(1, ordering: .relaxed)
        let path = directory.hasSuffix("/") ? directory + fileName : directory + "/" + fileName
        let root: ConfigValue?
        do {
            guard let text = try YAMLDocument.readTextFile(path, optional: true) else { return (Self(), false) }
            root = try YAMLDocument.parse(text, file: path)
        } catch { throw ConfigIssues([error]) }
        guard let root else { return (Self(), true) }
        return (try parse(root), true)
    }
}
