import ConfigKit
import PacketCore

// JSON feeds (STIX 2.1 bundles, MISP exports) are read by `JSONReader`, which keeps the line and column
// of every value, so a bad object is reported where it is (`file:line:column`) and each indicator
// remembers its line.

/// STIX 2.1 bundles: `indicator` objects whose `pattern` is one or more equality comparisons joined by OR.
///
/// Patterns that need correlation (AND across observations, FOLLOWEDBY, qualifiers) or operators other
/// than `=` cannot be matched one fact at a time; they are skipped and counted, not treated as errors.
enum STIXParser {
    /// The members read below; the reader drops the rest.
    static let keys: Set<String> = ["objects", "type", "id", "name", "revoked", "pattern_type", "pattern", "confidence", "valid_until",
                                    "external_references", "url", "external_id", "description", "created_by_ref"]

    static func parse(_ text: String, path: String, source: String?, into file: inout IndicatorFile, issues: inout [ConfigIssue]) {
        let root: JSONNode
        do throws(ConfigIssue) { root = try JSONReader.parse(text, file: path, keeping: keys) } catch { issues.append(error); return }
        let objects: [JSONNode]
        if let items = root.member("objects")?.items { objects = items }
        else if root.member("type")?.text == "indicator" { objects = [root] }
        else if let items = root.items { objects = items }
        else { issues.append(root.issue("not a STIX bundle (expected an object with \"objects\": [...])", file: path)); return }

        var identities: [String: String] = [:]
        for o in objects where o.member("type")?.text == "identity" {
            if let id = o.member("id")?.text, let name = o.member("name")?.text { identities[id] = name }
        }
        var pending: [(Indicator, String?)] = []
        for o in objects {
            guard o.isMapping else { issues.append(o.issue("expected a STIX object", file: path)); continue }
            guard o.member("type")?.text == "indicator" else { continue }
            if o.member("revoked")?.text == "true" { file.skipped["revoked", default: 0] += 1; continue }
            if let pt = o.member("pattern_type")?.text, pt != "stix" { file.skipped["pattern_type \(pt)", default: 0] += 1; continue }
            guard let pv = o.member("pattern"), let pattern = pv.text else {
                issues.append(o.issue("indicator without a \"pattern\"", file: path)); continue
            }
            let atoms: [STIXPattern.Comparison]
            switch STIXPattern.parse(pattern) {
            case .failure(let e): issues.append(pv.issue("pattern: \(e.description)", file: path)); continue
            case .success(.unsupported(let why)): file.skipped[why, default: 0] += 1; continue
            case .success(.anyOf(let a)): atoms = a
            }
            var confidence: Int?
            if let cv = o.member("confidence") {
                guard let c = cv.text.flatMap({ Int($0) }), (0...100).contains(c) else { issues.append(cv.issue("confidence must be 0–100", file: path)); continue }
                confidence = c
            }
            var expires: Timestamp?
            if let vu = o.member("valid_until") {
                guard let t = vu.text.flatMap(DateParser.timestamp) else { issues.append(vu.issue("valid_until is not a timestamp", file: path)); continue }
                expires = t
            }
            var reference: String?
            if let refs = o.member("external_references")?.items, let first = refs.first {
                reference = first.member("url")?.text ?? first.member("external_id")?.text
            }
            reference = reference ?? o.member("id")?.text
            let description = o.member("description")?.text ?? o.member("name")?.text
            var ok = true
            for a in atoms {
                guard let t = a.indicatorType else { file.skipped["object path \(a.path)", default: 0] += 1; continue }
                let type = t == .ip && a.value.contains("/") ? IndicatorType.cidr : t
                switch Indicator.normalise(a.value, as: type) {
                case .success(let v):
                    let ind = Indicator(type: type, value: v, source: source ?? "", confidence: confidence, expires: expires,
                                        description: description, reference: reference, file: path, line: pv.line)
                    pending.append((ind, o.member("created_by_ref")?.text))
                case .failure(let e):
                    issues.append(pv.issue("pattern: \(e.description)", file: path)); ok = false
                }
                if !ok { break }
            }
        }
        let fallback = path.split(separator: "/").last.map(String.init) ?? path
        for (first, creator) in pending {
            var ind = first
            if ind.source.isEmpty { ind.source = creator.flatMap { identities[$0] } ?? fallback }
            file.indicators.append(ind)
        }
    }
}

/// The subset of the STIX 2.1 patterning language that names single observable values.
enum STIXPattern {
    struct Comparison: Equatable {
        var path: String
        var value: String

        var indicatorType: IndicatorType? {
            let p = String(path.lowercased().filter { $0 != "'" })
            switch p {
            case "ipv4-addr:value", "ipv6-addr:value": return .ip
            case "domain-name:value": return .domain
            case "url:value": return .url
            case "file:hashes.sha-256", "file:hashes.sha256", "x509-certificate:hashes.sha-256", "x509-certificate:hashes.sha256": return .sha256
            case "file:hashes.sha-1", "file:hashes.sha1", "x509-certificate:hashes.sha-1", "x509-certificate:hashes.sha1": return .sha1
            case "file:hashes.md5": return .md5
            default: return nil
            }
        }
    }

    enum Parsed: Equatable {
        /// Matches when any one comparison matches.
        case anyOf([Comparison])
        /// Valid STIX we cannot evaluate one fact at a time (reason for the skip counter).
        case unsupported(String)
    }

    enum Token: Equatable { case lbrack, rbrack, lparen, rparen, word(String), string(String), op(String) }

    static func tokenize(_ s: String) -> Result<[Token], NormaliseError> {
        var out: [Token] = []
        let u = Array(s.utf8)
        var i = 0
        func readQuoted() -> String? {
            // At a quote: returns the unescaped content and leaves i after the closing quote.
            var v: [UInt8] = []
            i += 1
            while i < u.count {
                if u[i] == 92, i + 1 < u.count { v.append(u[i + 1]); i += 2; continue }
                if u[i] == 39 { i += 1; return String(decoding: v, as: UTF8.self) }
                v.append(u[i]); i += 1
            }
            return nil
        }
        while i < u.count {
            let c = u[i]
            switch c {
            case 32, 9, 10, 13: i += 1
            case 91: out.append(.lbrack); i += 1
            case 93: out.append(.rbrack); i += 1
            case 40: out.append(.lparen); i += 1
            case 41: out.append(.rparen); i += 1
            case 39:
                guard let v = readQuoted() else { return .failure(.init("unterminated string")) }
                out.append(.string(v))
            case 61, 33, 60, 62:
                var op = [c]; i += 1
                if i < u.count, u[i] == 61 { op.append(61); i += 1 }
                out.append(.op(String(decoding: op, as: UTF8.self)))
            default:
                var w: [UInt8] = []
                while i < u.count {
                    let d = u[i]
                    if d == 32 || d == 9 || d == 10 || d == 13 || d == 91 || d == 93 || d == 40 || d == 41 || d == 61 || d == 33 || d == 60 || d == 62 { break }
                    if d == 39 {
                        // A quoted path component: file:hashes.'SHA-256'.
                        guard w.last == 46 else { break }
                        guard let q = readQuoted() else { return .failure(.init("unterminated quoted path component")) }
                        w.append(39); w.append(contentsOf: Array(q.utf8)); w.append(39)
                        continue
                    }
                    w.append(d); i += 1
                }
                out.append(.word(String(decoding: w, as: UTF8.self)))
            }
        }
        return .success(out)
    }

    static func parse(_ pattern: String) -> Result<Parsed, NormaliseError> {
        let tokens: [Token]
        switch tokenize(pattern) {
        case .failure(let e): return .failure(e)
        case .success(let t): tokens = t
        }
        var comparisons: [Comparison] = []
        var unsupported: String?
        var bracket = 0, paren = 0
        var i = 0
        var expectOperand = true
        while i < tokens.count {
            switch tokens[i] {
            case .lbrack:
                guard bracket == 0, expectOperand else { return .failure(.init("unexpected '['")) }
                bracket += 1; i += 1
            case .rbrack:
                guard bracket == 1, !expectOperand else { return .failure(.init("unexpected ']'")) }
                bracket -= 1; i += 1
            case .lparen:
                guard expectOperand else { return .failure(.init("unexpected '('")) }
                paren += 1; i += 1
            case .rparen:
                guard paren > 0, !expectOperand else { return .failure(.init("unexpected ')'")) }
                paren -= 1; i += 1
            case .word(let w) where !expectOperand:
                switch w.uppercased() {
                case "OR": expectOperand = true
                case "AND": expectOperand = true; unsupported = unsupported ?? "AND pattern"
                case "FOLLOWEDBY": expectOperand = true; unsupported = unsupported ?? "FOLLOWEDBY pattern"
                case "WITHIN", "REPEATS", "START", "STOP":
                    // Qualifiers: nothing after them changes what we could match.
                    return .success(.unsupported("qualified pattern"))
                default: return .failure(.init("expected OR/AND, found '\(w)'"))
                }
                i += 1
            case .word(let path):
                guard bracket == 1 else { return .failure(.init("comparison '\(path)' outside [ ]")) }
                guard path.contains(":") else { return .failure(.init("'\(path)' is not an object path (type:property)")) }
                var j = i + 1
                var negated = false
                if j < tokens.count, case .word(let w) = tokens[j], w.uppercased() == "NOT" { negated = true; j += 1 }
                guard j + 1 < tokens.count else { return .failure(.init("incomplete comparison after '\(path)'")) }
                let opText: String
                switch tokens[j] {
                case .op(let o): opText = o
                case .word(let w): opText = w.uppercased()
                default: return .failure(.init("expected an operator after '\(path)'"))
                }
                if opText == "IN" {
                    // `path IN ('a', 'b')`: each value is an alternative.
                    guard tokens[j + 1] == .lparen else { return .failure(.init("IN needs a parenthesised list")) }
                    var k = j + 2
                    var values: [String] = []
                    while k < tokens.count, tokens[k] != .rparen {
                        switch tokens[k] {
                        case .string(let v): values.append(v)
                        case .word(","): break
                        case .word(let w) where w.allSatisfy({ $0 == "," }): break
                        default: return .failure(.init("IN list must hold quoted strings"))
                        }
                        k += 1
                    }
                    guard k < tokens.count, !values.isEmpty else { return .failure(.init("unterminated IN list")) }
                    if negated { unsupported = unsupported ?? "NOT comparison" }
                    comparisons += values.map { Comparison(path: path, value: $0) }
                    i = k + 1
                } else {
                    let v: String
                    switch tokens[j + 1] {
                    case .string(let q): v = q
                    // Numbers and booleans (ports, sizes) are values too.
                    case .word(let w) where Double(w) != nil || w == "true" || w == "false": v = w
                    default: return .failure(.init("comparison value for '\(path)' must be a quoted string, number or boolean"))
                    }
                    if opText != "=" || negated { unsupported = unsupported ?? "operator \(negated ? "NOT " : "")\(opText)" }
                    else { comparisons.append(Comparison(path: path, value: v)) }
                    i = j + 2
                }
                expectOperand = false
            case .string(let s): return .failure(.init("unexpected string '\(s)'"))
            case .op(let o): return .failure(.init("unexpected operator '\(o)'"))
            }
        }
        guard bracket == 0, paren == 0, !expectOperand, !tokens.isEmpty else { return .failure(.init("unbalanced or empty pattern")) }
        if let u = unsupported { return .success(.unsupported(u)) }
        return .success(.anyOf(comparisons))
    }
}

/// MISP JSON exports: attributes marked for detection (`to_ids`), in the event and in its objects.
enum MISPParser {
    /// The members read below; the reader drops the rest (UUIDs, timestamps, tags, sightings).
    static let keys: Set<String> = ["Event", "response", "Attribute", "Object", "Orgc", "Org", "name", "info", "uuid", "id",
                                    "threat_level_id", "type", "value", "deleted", "to_ids", "comment"]

    static func parse(_ text: String, path: String, source: String?, into file: inout IndicatorFile, issues: inout [ConfigIssue]) {
        let root: JSONNode
        do throws(ConfigIssue) { root = try JSONReader.parse(text, file: path, keeping: keys) } catch { issues.append(error); return }
        var events: [JSONNode] = []
        if let e = root.member("Event") { events = [e] }
        else if let r = root.member("response")?.items { events = r.compactMap { $0.member("Event") ?? $0 } }
        else if let items = root.items { events = items.compactMap { $0.member("Event") ?? $0 } }
        else if root.member("Attribute") != nil { events = [root] }
        else { issues.append(root.issue("not a MISP export (expected \"Event\" or \"response\")", file: path)); return }

        for ev in events {
            guard ev.isMapping else { issues.append(ev.issue("expected a MISP event object", file: path)); continue }
            let org = ev.member("Orgc")?.member("name")?.text ?? ev.member("Org")?.member("name")?.text
            let src = source ?? org ?? "misp"
            let info = ev.member("info")?.text
            var reference: String?
            if let id = ev.member("uuid")?.text ?? ev.member("id")?.text { reference = "misp:event/\(id)" }
            var confidence: Int?
            switch ev.member("threat_level_id")?.text {
            case "1": confidence = 85
            case "2": confidence = 50
            case "3": confidence = 15
            default: confidence = nil
            }
            var attributes = ev.member("Attribute")?.items ?? []
            for o in ev.member("Object")?.items ?? [] { attributes += o.member("Attribute")?.items ?? [] }
            for a in attributes {
                guard a.isMapping else { issues.append(a.issue("expected a MISP attribute object", file: path)); continue }
                guard let type = a.member("type")?.text, let vv = a.member("value"), let value = vv.text else {
                    issues.append(a.issue("attribute without \"type\" and \"value\"", file: path)); continue
                }
                if let d = a.member("deleted")?.text, d == "true" || d == "1" { file.skipped["deleted", default: 0] += 1; continue }
                if let t = a.member("to_ids")?.text, t == "false" || t == "0" { file.skipped["to_ids false", default: 0] += 1; continue }
                let targets = mapped(type: type, value: value)
                if targets.isEmpty { file.skipped["attribute type \(type)", default: 0] += 1; continue }
                for (t0, raw) in targets {
                    let t = t0 == .ip && raw.contains("/") ? IndicatorType.cidr : t0
                    switch Indicator.normalise(raw, as: t) {
                    case .success(let v):
                        let comment = a.member("comment")?.text.flatMap { $0.isEmpty ? nil : $0 }
                        file.indicators.append(Indicator(type: t, value: v, source: src, confidence: confidence, expires: nil,
                                                         description: comment ?? info, reference: reference, file: path, line: vv.line))
                    case .failure(let e):
                        issues.append(vv.issue("\(type): \(e.description)", file: path))
                    }
                }
            }
        }
    }

    /// MISP attribute types to indicator types and the part of a composite value (`a|b`) each uses.
    static func mapped(type: String, value: String) -> [(IndicatorType, String)] {
        let parts = value.split(separator: "|", maxSplits: 1).map(String.init)
        let first = parts.first ?? value, second = parts.count > 1 ? parts[1] : ""
        switch type {
        case "ip-src", "ip-dst": return [(.ip, value)]
        case "ip-src|port", "ip-dst|port": return [(.ip, first)]
        case "domain", "hostname": return [(.domain, value)]
        case "hostname|port": return [(.domain, first)]
        case "domain|ip": return [(.domain, first), (.ip, second)]
        case "url": return [(.url, value)]
        case "ja3-fingerprint-md5": return [(.ja3, value)]
        case "ja4-fingerprint", "ja4": return [(.ja4, value)]
        case "md5", "sha1", "sha256": return [(IndicatorType(name: type)!, value)]
        case "filename|md5", "filename|sha1", "filename|sha256":
            return [(IndicatorType(name: String(type.dropFirst("filename|".count)))!, second)]
        case "x509-fingerprint-sha1": return [(.sha1, value)]
        case "x509-fingerprint-sha256": return [(.sha256, value)]
        default: return []
        }
    }
}
