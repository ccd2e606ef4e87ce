import Events

/// Where events go, as written on the command line (`--output SPEC`, repeatable) or in YAML `outputs:`.
///
/// One parser for both, so a spec means the same thing wherever it is written.
public enum OutputSpec: Equatable, Sendable, CustomStringConvertible {
    case stdout
    case file(path: String)

    public init(parsing text: String) throws(OutputError) {
        let t = text.trimmedBlanks
        if t == "stdout" || t == "-" { self = .stdout; return }
        if t.hasPrefix("file:") {
            let path = String(t.dropFirst(5))
            guard !path.isEmpty else { throw .badSpec(text, reason: "file: needs a path") }
            self = .file(path: path)
            return
        }
        throw .badSpec(text, reason: "expected stdout or file:PATH")
    }

    public var description: String {
        switch self {
        case .stdout: return "stdout"
        case .file(let p): return "file:\(p)"
        }
    }

    /// Opens the sink this spec names.
    public func makeSink() throws -> any EventSink {
        switch self {
        case .stdout: return StreamSink.standardOutput()
        case .file(let path): return try StreamSink.file(path: path)
        }
    }
}

extension String {
    /// The string without leading and trailing blanks and tabs.
    var trimmedBlanks: String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return String(s)
    }
}
