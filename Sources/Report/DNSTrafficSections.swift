import Foundation

/// DNS per registered domain (tunnel candidates first) and per client→resolver pair; traffic tables.
extension ReportPage {
    mutating func dns() {
        w.raw("<section id=\"dns\"><h2>DNS</h2>\n")
        guard !model.domains.isEmpty else {
            w.raw("<p class=\"note\">No DNS transactions in the events (DNS events off, or none in the traffic).</p></section>\n"); return
        }
        // Tunnel alerts first (by score), then by distinct subdomains × entropy: what a tunnel looks like.
        let ranked = model.domains.sorted { a, b in
            let ka = (a.value.tunnelScore ?? -1, Double(a.value.subdomains.count) * a.value.meanEntropy, a.value.queries)
            let kb = (b.value.tunnelScore ?? -1, Double(b.value.subdomains.count) * b.value.meanEntropy, b.value.queries)
            return ka != kb ? ka > kb : a.key < b.key
        }
        let shown = ranked.prefix(100)
        w.raw("<p>Per registered domain: queries, distinct subdomains, bytes of query names (up) and answer data (down), mean Shannon entropy of the subdomains. Domains with a DNS-tunnel alert come first.</p>\n")
        w.raw("<table class=\"sortable dns\"><thead><tr><th>Domain</th><th>Tunnel score</th><th>Queries</th><th>Subdomains</th><th>Up (names)</th><th>Down (answers)</th><th>Entropy</th><th>NXDOMAIN</th><th>Types</th><th>Client → resolver</th></tr></thead><tbody>")
        for (name, d) in shown {
            w.raw(d.tunnelScore != nil ? "<tr class=\"tunnel\">" : "<tr>")
            w.element("<td class=\"name\">", name, "</td>")
            w.element("<td class=\"num\">", d.tunnelScore.map { Format.decimal($0, 1) } ?? "", "</td>")
            w.element("<td class=\"num\">", Format.count(d.queries), "</td>")
            w.element("<td class=\"num\">", (d.subdomainsOverflow ? "≥ " : "") + Format.count(Int64(d.subdomains.count)), "</td>")
            w.element("<td class=\"num\">", Format.bytes(d.nameBytes), "</td>")
            w.element("<td class=\"num\">", Format.bytes(d.answerBytes), "</td>")
            w.element("<td class=\"num\">", Format.decimal(d.meanEntropy, 2), "</td>")
            w.element("<td class=\"num\">", Format.count(d.nxdomain), "</td>")
            w.element("<td>", d.types.sorted { ($1.value, $0.key) < ($0.value, $1.key) }.prefix(4).map { "\($0.key) \($0.value)" }.joined(separator: ", "), "</td>")
            w.element("<td>", d.pairs.sorted { ($1.value, $0.key) < ($0.value, $1.key) }.prefix(3).map { "\($0.key) (\($0.value))" }.joined(separator: "; "), "</td></tr>")
        }
        w.raw("</tbody></table>\n")
        if ranked.count > shown.count { w.element("<p class=\"note\">", "\(ranked.count - shown.count) more domains not listed.", "</p>\n") }
        w.raw("<h3>Client → resolver</h3><table class=\"sortable\"><thead><tr><th>Pair</th><th>Queries</th><th>Domains</th><th>Up</th><th>Down</th></tr></thead><tbody>")
        for (k, p) in model.resolverPairs.sorted(by: { ($1.value.queries, $0.key) < ($0.value.queries, $1.key) }).prefix(30) {
            w.element("<tr><td>", k, "</td>")
            w.element("<td class=\"num\">", Format.count(p.queries), "</td>")
            w.element("<td class=\"num\">", Format.count(Int64(p.domains.count)), "</td>")
            w.element("<td class=\"num\">", Format.bytes(p.nameBytes), "</td>")
            w.element("<td class=\"num\">", Format.bytes(p.answerBytes), "</td></tr>")
        }
        w.raw("</tbody></table></section>\n")
    }

    mutating func traffic() {
        w.raw("<section id=\"traffic\"><h2>Traffic</h2>\n")
        guard model.flows > 0 else {
            w.raw("<p class=\"note\">No flow events in the input (flow events off, or exported without them).</p></section>\n"); return
        }
        w.raw("<div class=\"grid\">")
        tallyTable("Top talkers (bytes sent and received)", "Host", model.talkers, limit: 20)
        tallyTable("Protocols by bytes", "Protocol", model.protocols, limit: 20)
        tallyTable("External countries", "Country", model.countries, limit: 20)
        tallyTable("External ASNs", "AS", model.asns, limit: 20)
        w.raw("</div>\n<h3>Known protocols on non-standard ports</h3>\n")
        if model.nonStandardPorts.isEmpty {
            w.raw("<p class=\"ok\">None.</p>\n")
        } else {
            w.raw("<table class=\"sortable\"><thead><tr><th>Protocol</th><th>Port</th><th>Flows</th><th>Bytes</th></tr></thead><tbody>")
            for (k, t) in model.nonStandardPorts.sorted(by: { ($1.value.bytes, $0.key) < ($0.value.bytes, $1.key) }).prefix(50) {
                let p = k.split(separator: "\u{0}", omittingEmptySubsequences: false).map(String.init)
                w.element("<tr><td>", p.first ?? "", "</td>")
                w.element("<td class=\"num\">", p.count > 2 ? "\(p[1])/\(p[2])" : "", "</td>")
                w.element("<td class=\"num\">", Format.count(t.flows), "</td>")
                w.element("<td class=\"num\">", Format.bytes(t.bytes), "</td></tr>")
            }
            w.raw("</tbody></table>\n")
        }
        w.raw("<div class=\"grid\">")
        countTable("HTTP User-Agents", "User-Agent", model.userAgents)
        countTable("HTTP hosts", "Host", model.httpHosts)
        w.raw("</div></section>\n")
    }

    mutating func tallyTable(_ title: String, _ column: String, _ table: [String: ReportModel.Tally], limit: Int) {
        w.raw("<div>"); w.element("<h3>", title, "</h3>")
        guard !table.isEmpty else { w.raw("<p class=\"note\">None.</p></div>"); return }
        let rows = table.sorted { ($1.value.bytes, $0.key) < ($0.value.bytes, $1.key) }.prefix(limit)
        let maxBytes = Double(max(rows.first?.value.bytes ?? 1, 1))
        w.raw("<table class=\"sortable bars\"><thead><tr>"); w.element("<th>", column, "</th>")
        w.raw("<th>Bytes</th><th>Flows</th><th></th></tr></thead><tbody>")
        for (k, t) in rows {
            w.element("<tr><td>", k, "</td>")
            w.raw("<td class=\"num\""); w.attribute("data-v", Int(clamping: t.bytes)); w.raw(">"); w.text(Format.bytes(t.bytes)); w.raw("</td>")
            w.element("<td class=\"num\">", Format.count(t.flows), "</td>")
            w.raw("<td class=\"barcell\"><svg class=\"bar\" viewBox=\"0 0 100 8\" preserveAspectRatio=\"none\"><rect height=\"8\"")
            w.attribute("width", max(Double(t.bytes) / maxBytes * 100, 0.5))
            w.raw("/></svg></td></tr>")
        }
        w.raw("</tbody></table>")
        if table.count > rows.count { w.element("<p class=\"note\">", "\(table.count - rows.count) more not listed.", "</p>") }
        w.raw("</div>")
    }

    mutating func countTable(_ title: String, _ column: String, _ table: [String: Int64]) {
        w.raw("<div>"); w.element("<h3>", title, "</h3>")
        guard !table.isEmpty else { w.raw("<p class=\"note\">None.</p></div>"); return }
        w.raw("<table class=\"sortable\"><thead><tr>"); w.element("<th>", column, "</th>"); w.raw("<th>Flows</th></tr></thead><tbody>")
        for (k, n) in table.sorted(by: { ($1.value, $0.key) < ($0.value, $1.key) }).prefix(20) {
            w.element("<tr><td class=\"name\">", k, "</td>")
            w.element("<td class=\"num\">", Format.count(n), "</td></tr>")
        }
        w.raw("</tbody></table>")
        if table.count > 20 { w.element("<p class=\"note\">", "\(table.count - 20) more not listed.", "</p>") }
        w.raw("</div>")
    }
}
