import Capture
import ConfigKit
import Enrichment
import Foundation
import Logging
import Outputs
import ThreatIntel

/// `sensor check-config` beyond the YAML itself, as `suricata -T` does: everything the configuration
/// names is opened or compiled the way a start would (BPF filter, GeoIP databases, indicator files, the
/// rules directory and every rules file in it, the evidence directory and recipients, TLS material,
/// output and spool directories), and every problem is reported at once, each at the line
/// of the setting that names it. Nothing is created or changed.
public enum ConfigCheck {
    public static func issues(_ c: SensorConfiguration, file: String) -> [ConfigIssue] {
        let root = try? YAMLDocument.load(path: file)
        var out: [ConfigIssue] = []
        /// An issue at the setting's line (the file's first line when the setting came from elsewhere).
        func report(_ path: [String], _ message: String) {
            var v = root
            for key in path {
                if let i = Int(key) { v = v?.items.flatMap { i < $0.count ? $0[i] : nil } } else { v = v?.entries?.first { $0.key == key }?.value }
            }
            let label = path.filter { Int($0) == nil }.joined(separator: ".")
            out.append(ConfigIssue(file: file, line: v?.line ?? 0, column: v?.column ?? 0, message: "\(label): \(message)"))
        }

        if let bpf = c.bpf, !bpf.isEmpty, let problem = BPFFilter.problem(bpf, snapLength: Int32(c.snapLength)) {
            report(["capture", "bpf"], "does not compile: \(problem)")
        }
        if let dir = c.rulesDirectory {
            if let problem = RulesDirectory.explicitProblem(dir) {
                report(["rules", "directory"], problem)
            } else {
                // The rules files report at their own lines.
                out += RulesDirectory.check(dir)
            }
        } else if let dir = RulesDirectory.resolve(nil) {
            out += RulesDirectory.check(dir)
        }
        // Each database alone, as the start opens it (and checks its type), so each reports at its own line.
        let databases: [(String, String?, String?)] = [("geoip_city", c.enrichment.cityDatabase, nil), ("geoip_asn", nil, c.enrichment.asnDatabase)]
        for (key, city, asn) in databases where city != nil || asn != nil {
            var e = EnrichmentConfiguration()
            e.cityDatabase = city
            e.asnDatabase = asn
            do { _ = try GeoDatabases(configuration: e, logger: Logger(label: "sensor.check")) } catch { report(["enrichment", key], error.description) }
        }
        if !c.intel.indicators.isEmpty {
            do { _ = try IndicatorFeed.loadAll(c.intel.indicators) } catch { out += error.issues }
        }
        if let dir = c.evidence.directory {
            if let problem = directoryProblem(dir, private: true) { report(["evidence", "directory"], problem) }
        }
        for p in c.evidence.validate() { report(["evidence"], p) }
        for (i, spec) in c.outputs.enumerated() {
            for problem in outputProblems(spec.target) { report(["outputs", "\(i)"], "\(spec.target): \(problem)") }
        }
        return out
    }

    /// What `open(2)` says of a file that must be read, or nil.
    static func unreadable(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return "\(path): \(String(cString: strerror(errno)))" }
        close(fd)
        return nil
    }

    /// Why a directory the sensor writes into would fail at start: a present one must be a directory
    /// (private when it holds evidence or a spool); a missing one needs a parent the sensor can create it in.
    static func directoryProblem(_ dir: String, private: Bool) -> String? {
        var st = stat()
        if lstat(dir, &st) == 0 {
            if `private` {
                do { try PrivateDirectory.check(dir) } catch { return error.description }
                return nil
            }
            return st.st_mode & S_IFMT == S_IFDIR ? nil : "\(dir): is not a directory"
        }
        var parent = (dir as NSString).deletingLastPathComponent
        while !parent.isEmpty && parent != "/" && access(parent, F_OK) != 0 { parent = (parent as NSString).deletingLastPathComponent }
        if parent.isEmpty { parent = "." }
        return access(parent, W_OK | X_OK) == 0 ? nil : "\(dir) does not exist and cannot be created in \(parent): \(String(cString: strerror(errno)))"
    }

    static func outputProblems(_ t: OutputTarget) -> [String] {
        switch t {
        case .stdout: return []
        case .file(let f): return [directoryProblem((f.path as NSString).deletingLastPathComponent.isEmpty ? "." : (f.path as NSString).deletingLastPathComponent, private: false)].compactMap { $0 }
        case .zeek(let d): return [directoryProblem(d, private: false)].compactMap { $0 }
        case .syslog(let s): return [s.caFile, s.certificateFile, s.keyFile].compactMap { $0 }.compactMap(unreadable)
        case .kafka(let k):
            // TLS/SASL files librdkafka would open at the first connection.
            let files = k.properties.filter { $0.name.hasSuffix(".location") || $0.name == "ssl.keystore.location" }.map(\.value)
            return files.compactMap(unreadable) + [directoryProblem(k.spoolDirectory, private: true)].compactMap { $0 }
        }
    }
}
