import ArgumentParser
import ConfigKit
import SensorRuntime

/// `sensor check-config FILE`: validates a configuration and lists every problem with its line.
struct CheckConfig: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Test a configuration as a start would (like suricata -T); problems are listed as FILE:LINE:COLUMN: message.",
        discussion: """
        Beyond the YAML: compiles capture.bpf (libpcap, on a dead Ethernet handle), opens the GeoIP \
        databases and indicator files, checks the rules directory and every rules file in it, the evidence \
        directory and recipients, TLS files of the outputs, and output and spool directories. Nothing is \
        created or changed. Every problem is listed at once. Exit status: 0 OK; 78 any problem.
        """
    )

    @Argument(help: "The configuration file.")
    var file: String

    func run() throws {
        let c: SensorConfiguration
        do { c = try SensorConfiguration.load(path: file) } catch {
            for i in error.issues { printError(i.description) }
            throw ExitCode(ExitStatus.configuration)
        }
        let issues = ConfigCheck.issues(c, file: file)
        guard issues.isEmpty else {
            for i in issues { printError(i.description) }
            throw ExitCode(ExitStatus.configuration)
        }
        print("\(file): OK")
    }
}

/// `sensor check-rules [DIR]`: validates every rules file.
struct CheckRules: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-rules",
        abstract: "Validate the rules directory (YAML syntax and every detector's rule schema)."
    )

    @Argument(help: "Rules directory (default: ./Rules, then /etc/sensor/rules).")
    var directory: String?

    func run() throws {
        guard let dir = RulesDirectory.resolve(directory) else {
            printError("error: no rules directory found (tried ./Rules, /etc/sensor/rules)")
            throw ExitCode(ExitStatus.failure)
        }
        let issues = RulesDirectory.check(dir)
        if issues.isEmpty {
            print("\(dir): OK")
        } else {
            for i in issues { printError(i.description) }
            throw ExitCode(ExitStatus.configuration)
        }
    }
}
