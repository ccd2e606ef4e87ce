import ArgumentParser
import ConfigKit
import SensorRuntime

/// `sensor check-config FILE`: validates a configuration and lists every problem with its line.
struct CheckConfig: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Validate a YAML configuration file; errors are listed as FILE:LINE:COLUMN: message."
    )

    @Argument(help: "The configuration file.")
    var file: String

    func run() throws {
        do {
            _ = try SensorConfiguration.load(path: file)
            print("\(file): OK")
        } catch {
            for i in error.issues { printError(i.description) }
            throw ExitCode(ExitStatus.configuration)
        }
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
