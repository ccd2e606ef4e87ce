import ConfigKit
import Foundation
import ThreatIntel

/// Finds and checks the rules directory (`Rules/` in the repository; `/etc/sensor/rules` when installed).
public enum RulesDirectory {
    public static let installedLocations = ["/etc/sensor/rules", "/usr/local/share/sensor/rules"]

    /// The explicit directory if given, else `./Rules` if present, else the first installed location present.
    public static func resolve(_ explicit: String?) -> String? {
        if let explicit { return explicit }
        let fm = FileManager.default
        var isDir: ObjCBool = false
        if fm.fileExists(atPath: "Rules", isDirectory: &isDir), isDir.boolValue { return "Rules" }
        for l in installedLocations where fm.fileExists(atPath: l, isDirectory: &isDir) && isDir.boolValue { return l }
        return nil
    }

    /// Why a rules directory given with `--rules` or `rules.directory` cannot be used (nil: it can, or
    /// none was given). `FILE:LINE:COLUMN`-free: the caller names where it came from.
    public static func explicitProblem(_ explicit: String?) -> String? {
        guard let explicit else { return nil }
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: explicit, isDirectory: &isDir) else {
            return "rules directory \(explicit): no such directory"
        }
        guard isDir.boolValue else { return "rules directory \(explicit): not a directory" }
        guard access(explicit, R_OK | X_OK) == 0 else { return "rules directory \(explicit): \(String(cString: strerror(errno)))" }
        return nil
    }

    /// Every rules document of every registered family, each file read once, with the indicator files
    /// under `indicators/`: what `check-rules` reports and what a reload must pass.
    public static func load(_ dir: String, configuration: SensorConfiguration = SensorConfiguration(),
                            generation: Int = 0) throws(ConfigIssues) -> RulesSet {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
            throw ConfigIssues([ConfigIssue(file: dir, line: 0, column: 0, message: "not a directory")])
        }
        var issues: [ConfigIssue] = []
        var set: RulesSet?
        do { set = try RulesSet.load(directory: dir, kinds: SensorFamilies.allDocuments(configuration), generation: generation) } catch {
            issues = error.issues
        }
        // Any other YAML file in the directory is no rules document, but a syntax error in it is still
        // reported: it is most likely a document misnamed or meant for another version.
        let known = Set(SensorFamilies.allDocuments(configuration).map { $0.fileName })
        for f in yamlFiles(in: dir) where !known.contains(String(f.dropFirst(dir.count + 1))) {
            do { _ = try YAMLDocument.load(path: f) } catch { issues.append(error) }
        }
        issues += IntelConfiguration.checkIndicatorFiles(in: dir + "/indicators")
        guard let set, issues.isEmpty else { throw ConfigIssues(issues) }
        return set
    }

    /// Every YAML file under `dir` (indicator files aside), sorted.
    public static func yamlFiles(in dir: String) -> [String] {
        guard let e = FileManager.default.enumerator(atPath: dir) else { return [] }
        var out: [String] = []
        while let f = e.nextObject() as? String {
            if !f.hasPrefix("indicators/") && (f.hasSuffix(".yaml") || f.hasSuffix(".yml")) { out.append("\(dir)/\(f)") }
        }
        return out.sorted()
    }

    /// `check-rules`: every problem in the directory, empty when it is valid.
    public static func check(_ dir: String) -> [ConfigIssue] {
        do { _ = try load(dir); return [] } catch { return error.issues }
    }
}
