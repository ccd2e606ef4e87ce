import ArgumentParser
import Evidence

/// `sensor custody verify LOG [--evidence-dir DIR] [--expect-head SEQ:SHA256]…`: checks the chain of custody.
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
            is reported with its line, sequence number and file. The chain alone cannot show that its end \
            was cut off or that it was rewritten from the start: --expect-head checks it against a head the \
            sensor announced (spanwatch.evidence / spanwatch.stats custody.seq and entry_sha256, kept by the SIEM). \
            Exit status: 0 intact, 2 broken.
            """
        )

        @Argument(help: "The custody log (custody.jsonl).")
        var log: String

        @Option(name: .long, help: ArgumentHelp("Where the evidence files are (default: the log's directory).", valueName: "dir"))
        var evidenceDir: String?

        @Option(name: .long, help: ArgumentHelp("An entry the log must still hold, as announced in the event stream (repeatable).", valueName: "seq:sha256"))
        var expectHead: [String] = []

        func validate() throws {
            for h in expectHead where CustodyVerifier.Anchor(h) == nil {
                throw ValidationError("--expect-head \(h): expected SEQ:SHA256 (a sequence number from 1, 64 hex digits)")
            }
        }

        func run() throws {
            let anchors = expectHead.compactMap(CustodyVerifier.Anchor.init)
            let report = CustodyVerifier.verify(path: log, evidenceDirectory: evidenceDir, anchors: anchors)
            if let problem = report.firstProblem {
                printError("\(log): BROKEN: \(problem)")
                throw ExitCode(ExitStatus.verificationFailed)
            }
            let anchored = anchors.isEmpty ? "" : "; \(anchors.count) expected head(s) present"
            print("\(log): OK: \(report.entries.count) entries, chain intact\(anchored); \(report.filesChecked) evidence files match their SHA-256, \(report.filesDeleted) deleted")
        }
    }
}
