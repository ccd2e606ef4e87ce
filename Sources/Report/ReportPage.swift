import Foundation

/// The page: head (CSP, styles, the one script), then one section per concern. Everything from events
/// goes through `HTMLWriter.text`/`attribute`.
struct ReportPage {
    let model: ReportModel
    let provenance: ReportProvenance
    let generatedAt: Date
    var w = HTMLWriter(capacity: 1 << 20)
    /// Per page, random: only the page's own `<style>` and `<script>` carry it.
    let nonce: String

    init(model: ReportModel, provenance: ReportProvenance, generatedAt: Date) {
        self.model = model
        self.provenance = provenance
        self.generatedAt = generatedAt
        var g = SystemRandomNumberGenerator()
        nonce = (0..<4).map { _ in String(g.next() as UInt64, radix: 36) }.joined()
    }

    var alertsByTime: [ReportModel.Alert] { model.alerts.sorted { ($0.time, $0.index) < ($1.time, $1.index) } }

    mutating func render() -> String {
        w.raw("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n")
        // Nothing may load from anywhere; only this page's nonce'd style and script run. No inline event
        // handlers, no javascript: URLs (they would need 'unsafe-inline'), no forms, no base rewrite.
        w.raw("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'nonce-")
        w.text(nonce)
        w.raw("'; script-src 'nonce-")
        w.text(nonce)
        w.raw("'; img-src 'none'; font-src 'none'; connect-src 'none'; media-src 'none'; object-src 'none'; frame-src 'none'; base-uri 'none'; form-action 'none'\">\n")
        w.raw("<meta name=\"referrer\" content=\"no-referrer\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n")
        w.raw("<title>Sensor case report</title>\n<style")
        w.attribute("nonce", nonce)
        w.raw(">")
        w.raw(Self.css)
        w.raw("</style>\n</head><body>\n<header><h1>Sensor case report</h1><p class=\"sub\">Generated ")
        w.text(EventTime.format(Int64(generatedAt.timeIntervalSince1970 * 1_000_000), fraction: false))
        w.raw(" by sensor ")
        w.text(provenance.reportVersion)
        w.raw(". Times are packet times (UTC).</p>\n<nav><a href=\"#summary\">Summary</a><a href=\"#timeline\">Timeline</a><a href=\"#alerts\">Alerts</a><a href=\"#beaconing\">Beaconing</a><a href=\"#lateral\">Lateral movement</a><a href=\"#dns\">DNS</a><a href=\"#traffic\">Traffic</a></nav></header>\n<main>\n")
        summary()
        timeline()
        cards()
        beaconing()
        lateral()
        dns()
        traffic()
        w.raw("</main>\n<script")
        w.attribute("nonce", nonce)
        w.raw(">")
        w.raw(Self.script)
        w.raw("</script>\n</body></html>\n")
        return w.output
    }

    // MARK: summary

    mutating func summary() {
        w.raw("<section id=\"summary\"><h2>Summary</h2>\n")
        let totals = model.statsTotals
        let span = model.statsSpan ?? model.firstTime.flatMap { f in model.lastTime.map { (f, $0) } }
        w.raw("<table class=\"kv\"><tbody>")
        row("Time span", span.map { "\(EventTime.format($0.0)) → \(EventTime.format($0.1)) (\(Format.seconds(Double($0.1 &- $0.0) / 1e6)))" } ?? "no timed events")
        row("Packets", totals["packets"].map { Format.count($0) + " (" + Format.bytes(totals["bytes"] ?? 0) + ")" } ?? "no spanwatch.stats event")
        row("Flows", (totals["flows.created"].map { Format.count($0) + " created" } ?? "no spanwatch.stats event") + ", \(Format.count(model.flows)) flow events")
        row("Alerts", "\(model.alerts.count)" + (model.alerts.isEmpty ? "" : " (" + categoryCounts() + ")"))
        row("DNS transactions", Format.count(model.dnsTransactions))
        row("Sensor version", model.versions.isEmpty ? "unknown" : model.versions.sorted().joined(separator: ", "))
        row("Sensors", model.sensors.isEmpty ? "unknown" : model.sensors.sorted().joined(separator: ", "))
        let rules = Set(model.alerts.map { $0.ruleID }).sorted()
        row("Rules that fired", rules.isEmpty ? "none" : rules.joined(separator: ", "))
        if let d = provenance.rulesDirectory { row("Rules directory", d) }
        row("Events", model.datasets.sorted { $0.key < $1.key }.map { "\($0.key) \(Format.count($0.value))" }.joined(separator: ", "))
        w.raw("</tbody></table>\n")

        if !provenance.captures.isEmpty { fileTable("Capture files", provenance.captures) }
        if !provenance.eventFiles.isEmpty { fileTable("Event files", provenance.eventFiles) }
        if !provenance.rulesFiles.isEmpty { fileTable("Rules files in force", provenance.rulesFiles) }

        w.raw("<h3>Capture loss and decode anomalies</h3>\n")
        let anomalies = totals.filter { k, v in v != 0 && Self.anomalyWords.contains { k.hasSuffix($0) || k.contains($0 + ".") || k.contains("." + $0) } }
            .sorted { $0.key < $1.key }
        var notes: [(String, String)] = anomalies.map { ($0.key, Format.count($0.value)) }
        if model.unparsedLines > 0 { notes.append(("report: lines that are not JSON objects", Format.count(model.unparsedLines))) }
        if model.tablesFull > 0 { notes.append(("report: values beyond the report's table bounds (counted, not listed)", Format.count(model.tablesFull))) }
        for (k, v) in model.evidenceRefusals.sorted(by: { $0.key < $1.key }) { notes.append(("evidence refused: \(k)", Format.count(v))) }
        if model.stats.isEmpty {
            w.raw("<p class=\"note\">The events hold no <code>spanwatch.stats</code> event: capture loss and decode counters are unknown.</p>\n")
        } else if notes.isEmpty {
            w.raw("<p class=\"ok\">None: no packet lost, truncated or malformed, no reassembly gap, no bound reached.</p>\n")
        }
        if !notes.isEmpty {
            w.raw("<table class=\"kv anomalies\"><tbody>")
            for (k, v) in notes { row(k, v) }
            w.raw("</tbody></table>\n")
        }
        w.raw("</section>\n")
    }

    /// Counter names (last path component or a segment) that mean something was lost or refused.
    static let anomalyWords = ["kernel_dropped", "interface_dropped", "dropped", "not_ip", "truncated", "malformed",
                               "unsupported_link_type", "timestamps_out_of_range", "evicted", "gaps", "acked_holes",
                               "budget_stops", "pending_dropped", "held_flow_limit", "held_segment_limit",
                               "held_worker_limit", "refused", "failed", "failures", "dropped_alerts", "lost"]

    func categoryCounts() -> String {
        var c: [String: Int] = [:]
        for a in model.alerts { c[a.category, default: 0] += 1 }
        return c.sorted { ($1.value, $0.key) < ($0.value, $1.key) }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
    }

    mutating func row(_ k: String, _ v: String) {
        w.element("<tr><th>", k, "</th>")
        w.element("<td>", v, "</td></tr>")
    }

    mutating func fileTable(_ title: String, _ files: [DigestedFile]) {
        w.element("<h3>", title, "</h3>\n")
        w.raw("<table class=\"files\"><thead><tr><th>File</th><th>Size</th><th>SHA-256</th></tr></thead><tbody>")
        for f in files {
            w.element("<tr><td>", f.path, "</td>")
            w.element("<td class=\"num\">", Format.bytes(f.size), "</td>")
            w.element("<td class=\"hash\">", f.sha256, "</td></tr>")
        }
        w.raw("</tbody></table>\n")
    }

    // MARK: timeline

    mutating func timeline() {
        w.raw("<section id=\"timeline\"><h2>Alert timeline</h2>\n")
        let alerts = alertsByTime
        guard let first = alerts.first?.time, let last = alerts.last?.time else {
            w.raw("<p class=\"note\">No alerts.</p></section>\n"); return
        }
        let lanes = Array(Set(alerts.map { $0.category })).sorted()
        let left = 170.0, width = 1000.0, laneHeight = 34.0, top = 10.0
        let plot = width - left - 20
        let height = top + Double(lanes.count) * laneHeight + 40
        let span = Double(max(last - first, 1))
        w.raw("<svg class=\"chart timeline\" role=\"img\" aria-label=\"Alerts over time by category\"")
        w.attribute("viewBox", "0 0 \(Int(width)) \(Int(height))")
        w.raw(">")
        for (i, lane) in lanes.enumerated() {
            let y = top + Double(i) * laneHeight
            w.raw("<rect class=\"lane\" x=\"0\"")
            w.attribute("y", y); w.attribute("width", width); w.attribute("height", laneHeight - 2)
            w.raw("/><text class=\"lanelabel\" x=\"6\"")
            w.attribute("y", y + laneHeight / 2 + 4)
            w.raw(">"); w.text(lane); w.raw("</text>")
        }
        for a in alerts {
            let lane = lanes.firstIndex(of: a.category) ?? 0
            let x = left + Double(a.time - first) / span * plot
            let y = top + Double(lane) * laneHeight + laneHeight / 2 - 1
            w.raw("<a"); w.attribute("href", "#" + a.anchor); w.raw("><circle class=\"tl sev")
            w.number(a.severity); w.raw("\"")
            w.attribute("cx", x); w.attribute("cy", y)
            w.raw(" r=\"6\"><title>")
            w.text("\(EventTime.format(a.time)) \(a.ruleID): \(a.event.string("message") ?? "")")
            w.raw("</title></circle></a>")
        }
        let axisY = top + Double(lanes.count) * laneHeight + 16
        for k in 0...4 {
            let t = first + Int64(Double(k) / 4 * span)
            let x = left + Double(k) / 4 * plot
            w.raw(k == 0 ? "<text class=\"axis\" text-anchor=\"start\"" : k == 4 ? "<text class=\"axis\" text-anchor=\"end\"" : "<text class=\"axis\" text-anchor=\"middle\"")
            w.attribute("x", x); w.attribute("y", axisY)
            w.raw(">"); w.text(EventTime.format(t, fraction: false).replacingOccurrences(of: " UTC", with: "")); w.raw("</text>")
        }
        w.raw("</svg>\n<p class=\"legend\"><span class=\"sw sev1\"></span>low <span class=\"sw sev2\"></span>medium <span class=\"sw sev3\"></span>high <span class=\"sw sev4\"></span>critical — each dot links to its card.</p></section>\n")
    }

    // MARK: alert cards

    static let commonKeys: Set<String> = ["@timestamp", "ecs", "observer", "event", "message", "rule", "threat", "source",
                                          "destination", "network", "related", "client", "server", "host", "tags", "labels"]

    mutating func cards() {
        w.raw("<section id=\"alerts\"><h2>Alerts</h2>\n")
        if model.alerts.isEmpty { w.raw("<p class=\"note\">No alerts.</p>") }
        for a in alertsByTime { card(a) }
        w.raw("</section>\n")
    }

    mutating func card(_ a: ReportModel.Alert) {
        let e = a.event
        w.raw("<article class=\"card sev"); w.number(a.severity); w.raw("\"")
        w.attribute("id", a.anchor)
        w.attribute("data-rule", a.ruleID)
        w.raw("><h3>")
        w.text("#\(a.index + 1) · \(e.string("rule.name") ?? a.ruleID)")
        w.raw("</h3>\n<p class=\"meta\">")
        let sev = ["", "low", "medium", "high", "critical"][a.severity]
        var meta = "\(EventTime.format(a.time)) · severity \(sev) · \(a.ruleID) · \(a.category)"
        if let r = e.double("event.risk_score") { meta += " · risk \(Format.decimal(r))" }
        w.text(meta)
        w.raw("</p>\n")
        w.element("<p class=\"msg\">", e.string("message") ?? "", "</p>\n")
        w.raw("<table class=\"kv\"><tbody>")
        let ids = e.strings("threat.technique.id"), names = e.strings("threat.technique.name")
        if !ids.isEmpty {
            let t = ids.enumerated().map { i, id in i < names.count ? "\(id) \(names[i])" : id }.joined(separator: "; ")
            let tactics = e.strings("threat.tactic.name").joined(separator: ", ")
            row("ATT&CK", tactics.isEmpty ? t : "\(t) (\(tactics))")
        }
        for role in ["source", "destination", "client", "server"] { if let h = host(e, role) { row(role, h) } }
        let community = communityIDs(e.fields)
        if !community.isEmpty { row("Community ID", community.joined(separator: " ")) }
        if let id = e.string("event.id") {
            row("Event id", id)
            for f in model.evidenceByAlert[id] ?? [] {
                var s = f.string("file.name") ?? f.string("file.path") ?? "evidence file"
                if let h = f.string("file.hash.sha256") { s += " · SHA-256 \(h)" }
                if let seq = f.int("spanwatch.evidence.custody.seq") { s += " · custody entry \(seq)" }
                if let h = f.string("spanwatch.evidence.custody.entry_sha256") { s += " (entry hash \(h))" }
                row("Evidence", s)
            }
        }
        let hosts = e.strings("related.hosts")
        if !hosts.isEmpty { row("Related hosts", hosts.joined(separator: ", ")) }
        let users = e.strings("related.user")
        if !users.isEmpty { row("Users", users.joined(separator: ", ")) }
        w.raw("</tbody></table>\n")
        // The detector's own namespace: score parts and everything it measured.
        for key in e.fields.keys.sorted() where !Self.commonKeys.contains(key) {
            guard let v = e.fields[key] else { continue }
            var leaves: [(String, String)] = []
            Self.flatten(v, key, into: &leaves)
            guard !leaves.isEmpty else { continue }
            w.raw("<details open><summary>"); w.text(key); w.raw("</summary><table class=\"kv details\"><tbody>")
            for (k, v) in leaves.prefix(200) { row(k, v) }
            if leaves.count > 200 { row("…", "\(leaves.count - 200) more fields") }
            w.raw("</tbody></table></details>\n")
        }
        w.raw("</article>\n")
    }

    func host(_ e: EventObject, _ role: String) -> String? {
        guard let ip = e.string("\(role).ip") else { return nil }
        var s = ip
        if let p = e.int("\(role).port") { s += " port \(p)" }
        if let d = e.string("\(role).domain") { s += " (\(d))" }
        let geo = [e.string("\(role).geo.city_name"), e.string("\(role).geo.country_name") ?? e.string("\(role).geo.country_iso_code")].compactMap { $0 }
        if !geo.isEmpty { s += " · " + geo.joined(separator: ", ") }
        if let n = e.int("\(role).as.number") { s += " · AS\(n)" + (e.string("\(role).as.organization.name").map { " \($0)" } ?? "") }
        return s
    }

    /// Every `community_id` value anywhere in the alert (its flow's and those of the flows it covers).
    func communityIDs(_ v: Any) -> [String] {
        var out: [String] = []
        func walk(_ v: Any, _ key: String) {
            if let o = v as? [String: Any] { for (k, x) in o { walk(x, k) } }
            else if let a = v as? [Any] { for x in a { walk(x, key) } }
            else if let s = v as? String, key.hasPrefix("community_id") { out.append(s) }
        }
        walk(v, "")
        var seen = Set<String>()
        return out.sorted().filter { seen.insert($0).inserted }
    }

    static func flatten(_ v: Any, _ path: String, into out: inout [(String, String)]) {
        guard out.count < 1000 else { return }
        switch v {
        case let o as [String: Any]:
            for k in o.keys.sorted() { flatten(o[k]!, path + "." + k, into: &out) }
        case let a as [Any]:
            if a.allSatisfy({ !($0 is [String: Any]) && !($0 is [Any]) }) {
                out.append((path, a.map { scalar($0) }.joined(separator: ", ")))
            } else {
                for (i, x) in a.enumerated() { flatten(x, "\(path)[\(i)]", into: &out) }
            }
        default: out.append((path, scalar(v)))
        }
    }

    static func scalar(_ v: Any) -> String {
        switch v {
        case let s as String: return s
        case let b where EventObject.isBoolean(b): return (b as? NSNumber)?.boolValue == true ? "true" : "false"
        case let n where EventObject.number(n) != nil:
            let d = EventObject.number(n)!
            return d == d.rounded() && abs(d) < 1e15 ? String(Int64(d)) : Format.decimal(d, 3)
        case is NSNull: return "null"
        default: return "\(v)"
        }
    }
}
