/// HTML for a page whose every dynamic string came off the wire.
///
/// `HTMLWriter` is the only way markup is produced: `raw` takes compile-time literals only, and every
/// runtime string goes through `text` or `attribute`, which both escape with `HTML.escape`. So a crafted DNS
/// name or User-Agent can never close a tag, open an attribute or start a script, wherever it is shown.
public enum HTML {
    /// Escapes for element text and for double- or single-quoted attribute values alike. C0 controls
    /// (other than tab and newline) and lone surrogates cannot occur in a Swift `String`'s scalars as
    /// markup, but controls are replaced so the page's text stays printable.
    public static func escape(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count + 8)
        for u in s.unicodeScalars {
            switch u {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            case "\t", "\n": out.unicodeScalars.append(u)
            default:
                if u.value < 0x20 || u.value == 0x7F || (0x80...0x9F).contains(u.value) {
                    out.unicodeScalars.append("\u{FFFD}")
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out
    }
}

struct HTMLWriter {
    private(set) var output = ""

    init(capacity: Int = 1 << 16) { output.reserveCapacity(capacity) }

    /// Markup written in this source file's literals: never data.
    mutating func raw(_ s: StaticString) { output += s.description }
    /// Data as element text.
    mutating func text(_ s: String) { output += HTML.escape(s) }
    /// ` name="value"` with the value escaped.
    mutating func attribute(_ name: StaticString, _ value: String) { attribute(name, safe: HTML.escape(value)) }
    /// ` name="number"`: numbers are formatted here, never data.
    mutating func attribute(_ name: StaticString, _ value: Double) { attribute(name, safe: Format.coordinate(value)) }
    mutating func attribute(_ name: StaticString, _ value: Int) { attribute(name, safe: String(value)) }
    /// The one place an attribute is written; `text` is already safe inside double quotes.
    private mutating func attribute(_ name: StaticString, safe text: String) {
        output += " "
        output += name.description
        output += "=\""
        output += text
        output += "\""
    }
    mutating func number(_ v: Int) { output += String(v) }
    mutating func number(_ v: Int64) { output += String(v) }
    mutating func number(_ v: UInt64) { output += String(v) }

    /// `<tag attrs>text</tag>` for the common cell and heading case.
    mutating func element(_ open: StaticString, _ content: String, _ close: StaticString) {
        raw(open); text(content); raw(close)
    }
}
