import Foundation
import PacketCore
import ThreatIntel

/// What the harness needs from outside the input, made once per process: the rules directory, a small
/// Public Suffix List and an indicator set, and a private temporary directory (removed at exit) for
/// anything that must be a file. Nothing is written anywhere else, and nothing touches the network.
enum FuzzEnvironment {
    /// `$SENSOR_FUZZ_RULES` if set, else an empty directory: every detector then runs on its built-in
    /// defaults, and a pipeline is built without parsing five YAML files per input (a fifth of the time
    /// of a stream target). The rules readers have their own target (`rules`).
    static let rulesDirectory: String = ProcessInfo.processInfo.environment["SENSOR_FUZZ_RULES"] ?? {
        let dir = temporaryDirectory + "/rules"
        mkdir(dir, 0o700)
        return dir
    }()

    static let temporaryDirectory: String = {
        var template = Array((NSTemporaryDirectory() + "/sensor-fuzz.XXXXXX").utf8CString)
        guard let p = mkdtemp(&template) else { fatalError("fuzz harness: mkdtemp failed") }
        let dir = String(cString: p)
        atexit { _ = try? FileManager.default.removeItem(atPath: FuzzEnvironment.temporaryDirectory) }
        return dir
    }()

    /// A few rules of each kind (plain, wildcard, exception, private section) is enough to reach every
    /// branch of the matcher; the real list only makes start-up slower.
    static let publicSuffixListPath: String = {
        let text = """
        // ===BEGIN ICANN DOMAINS===
        com
        net
        org
        uk
        co.uk
        *.ck
        !www.ck
        xn--p1ai
        // ===END ICANN DOMAINS===
        // ===BEGIN PRIVATE DOMAINS===
        blogspot.com
        github.io
        // ===END PRIVATE DOMAINS===

        """
        let path = temporaryDirectory + "/psl.dat"
        FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
        return path
    }()

    /// The fuzz hosts' addresses and some names, so matches (and their alerts) happen.
    static let indicators: IndicatorSet = {
        let text = """
        10.0.0.2
        fd00::2
        198.51.100.0/24
        evil.example.com
        example.net

        """
        do {
            return IndicatorSet(try IndicatorLoader.parse(text, path: "fuzz.txt").indicators)
        } catch {
            fatalError("fuzz harness: indicator list rejected: \(error)")
        }
    }()

    /// A file path holding `bytes` (for readers that take paths: libpcap). One file per process,
    /// rewritten for each input.
    static func file(with bytes: UnsafeRawBufferPointer, name: String = "input") -> String {
        let path = temporaryDirectory + "/" + name
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        precondition(fd >= 0, "fuzz harness: cannot write \(path)")
        var done = 0
        while done < bytes.count {
            let n = write(fd, bytes.baseAddress! + done, bytes.count - done)
            precondition(n > 0, "fuzz harness: write failed")
            done += n
        }
        close(fd)
        return path
    }
}
