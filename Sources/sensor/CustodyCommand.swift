import ArgumentParser
import Evidence

/// `sensor custody verify LOG [--evidence-dir DIR]`: checks the chain of custody.
struct Custody: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Chain-of-custody tools for evidence captured on alerts.",
        subcommands: [Verify.self]
    )

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Verify a custody log's hash chain and the SHA-256 of every evidence file it lists.",
            discussion: """
            Each entry's own hash, its link to the entry before, and every evidence file not logged as \
            deleted (present, and with the SHA-256 recorded at close) are checked. The first broken link \
            is reported with its line, sequence number and file. Exit status: 0 intact, 2 broken.
            """
        )

        @Argument(help: "The custody log (custody.jsonl).")
        var log: String

        @Option(name: .long, help: ArgumentHelp("Where the evidence files are (default: the log's directory).", valueName: "dir"))
        var evidenceDir: String?

        func run() throws {
            let report = CustodyVerifier.verify(path: log, evidenceDirectory: evidenceDir)
            if let problem = report.firstProblem {
                printError("\(log): BROKEN: \(problem)")
                throw ExitCode(2)
            }
            print("\(log): OK: \(report.entries.count) entries, chain intact; \(report.filesChecked) evidence files match their SHA-256, \(report.filesDeleted) deleted under retention")
        }
    }
}
