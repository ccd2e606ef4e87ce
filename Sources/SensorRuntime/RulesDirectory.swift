import ConfigKit
import Evidence
import Detectors
import Foundation

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

    /// Every YAML file under `dir`, sorted.
    public static func yamlFiles(in dir: String) -> [String] {
        guard let e = FileManager.default.enumerator(atPath: dir) else { return [] }
        var out: [String] = []
        while let f = e.nextObject() as? String {
            if f.hasSuffix(".yaml") || f.hasSuffix(".yml") { out.append("\(dir)/\(f)") }
        }
        return out.sorted()
    }

    /// Parses every rules file and runs each detector's validator over the ones it owns.
    public static func check(_ dir: String) -> [ConfigIssue] {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
            return [ConfigIssue(file: dir, line: 0, column: 0, message: "not a directory")]
        }
        var issues: [ConfigIssue] = []
        for f in yamlFiles(in: dir) {
            do {
                let root = try YAMLDocument.load(path: f)
                if let root, f.hasSuffix("/\(DNSTunnelRules.fileName)") { issues += DNSTunnelRules.check(root) }
            } catch { issues.append(error); continue }
            if f.hasSuffix("/" + LateralMovementRules.fileName) { issues += LateralMovementRules.check(path: f) }
        }
        issues += C2Analyzers.checkRules(dir)
        issues += IntelConfiguration.checkIndicatorFiles(in: dir + "/indicators")
        let evidenceRules = "\(dir)/\(EvidenceRules.fileName)"
        if FileManager.default.fileExists(atPath: evidenceRules) {
            do { _ = try EvidenceRules.load(path: evidenceRules) } catch { issues.append(contentsOf: error.issues) }
        }
        return issues
    }
}
