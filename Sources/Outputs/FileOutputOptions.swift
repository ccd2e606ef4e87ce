import Foundation

/// `file:PATH[?rotate_size=SIZE&rotate_interval=DURATION&rotate_keep=N]`.
///
/// Rotation renames the file to `PATH.YYYYMMDDTHHMMSSZ` (UTC, the time of the rotation) and starts a new
/// one; with `rotate_keep` only the newest N rotated files stay. SIGHUP reopens PATH whatever the
/// options, so logrotate (rename, then `kill -HUP`) works without them (Deploy/logrotate.d/sensor).
public struct FileOutputOptions: Equatable, Sendable, CustomStringConvertible {
    public var path: String
    /// Rotate once the file holds this many bytes (nil: never by size).
    public var rotateBytes: UInt64?
    /// Rotate when the file is this old, in wall-clock seconds (nil: never by time).
    public var rotateSeconds: Double?
    /// Rotated files kept (0: all).
    public var keep: Int = 0

    public init(path: String) { self.path = path }

    init(spec t: String, original text: String) throws(OutputError) {
        var rest = Substring(t.dropFirst(5))
        var query: Substring = ""
        if let q = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: q)...]
            rest = rest[..<q]
        }
        guard !rest.isEmpty else { throw .badSpec(text, reason: "file: needs a path") }
        self.init(path: String(rest))
        for item in query.split(separator: "&") {
            guard let eq = item.firstIndex(of: "=") else { throw .badSpec(text, reason: "query item '\(item)' needs a value (name=value)") }
            let k = String(item[..<eq]), v = String(item[item.index(after: eq)...])
            switch k {
            case "rotate_size":
                let n = try OutputURL.bytes(v, name: k, spec: text)
                guard n >= 4096 else { throw .badSpec(text, reason: "rotate_size '\(v)' is below 4KiB") }
                rotateBytes = n
            case "rotate_interval":
                let scale: Double = v.hasSuffix("d") ? 86_400 : v.hasSuffix("h") ? 3600 : v.hasSuffix("m") ? 60 : 1
                let number = v.last.map { "smhd".contains($0) } == true ? v.dropLast() : Substring(v)
                guard let n = Double(number), n.isFinite, n * scale <= 366 * 86_400 else {
                    throw .badSpec(text, reason: "rotate_interval '\(v)' is not a duration (e.g. 1h, 30m, 1d)")
                }
                let s = n * scale
                guard s >= 1 else { throw .badSpec(text, reason: "rotate_interval '\(v)' is below 1s") }
                rotateSeconds = s
            case "rotate_keep":
                guard let n = Int(v), (0...100_000).contains(n) else { throw .badSpec(text, reason: "rotate_keep '\(v)' is not a count") }
                keep = n
            default:
                throw .badSpec(text, reason: "file: unknown option '\(k)' (rotate_size, rotate_interval, rotate_keep, datasets)")
            }
        }
    }

    public var description: String {
        var items: [String] = []
        if let b = rotateBytes { items.append("rotate_size=\(b)") }
        if let s = rotateSeconds { items.append("rotate_interval=\(Int(s))s") }
        if keep > 0 { items.append("rotate_keep=\(keep)") }
        return "file:\(path)" + (items.isEmpty ? "" : "?" + items.joined(separator: "&"))
    }
}
