import Foundation

/// Lateral movement: hosts of the lateral-movement alerts as a graph (one node per host), alert edges
/// with their first time, the longest time-ordered chain of alert edges highlighted (A→B then B→C…),
/// and the admin-capable sessions (SMB, DCE-RPC, RDP, WinRM, SSH) seen between those hosts in flows.
extension ReportPage {
    struct LateralEdge {
        var source: String
        var target: String
        var rules: [String] = []
        var first: Int64
        var alerts: [String] = []
    }

    /// Hosts of the lateral-movement alerts: source, destination and every target.
    static func lateralHosts(_ e: EventObject) -> (source: String?, targets: [String]) {
        var targets = e.strings("spanwatch.lateral_movement.targets")
        if let d = e.string("destination.ip"), !targets.contains(d) { targets.append(d) }
        return (e.string("source.ip"), targets)
    }

    mutating func lateral() {
        w.raw("<section id=\"lateral\"><h2>Lateral movement</h2>\n")
        let alerts = alertsByTime.filter { $0.category == "lateral_movement" }
        guard !alerts.isEmpty else { w.raw("<p class=\"note\">No lateral-movement alerts.</p></section>\n"); return }
        var hosts: [String] = [], seen = Set<String>()
        func node(_ h: String) { if seen.insert(h).inserted { hosts.append(h) } }
        var edges: [String: LateralEdge] = [:], order: [String] = []
        for a in alerts {
            let (src, targets) = Self.lateralHosts(a.event)
            if let src { node(src) }
            for t in targets { node(t) }
            guard let src else { continue }
            let short = a.ruleID.hasPrefix("lateral_movement.") ? String(a.ruleID.dropFirst("lateral_movement.".count)) : a.ruleID
            for t in targets where t != src {
                let k = src + "\u{0}" + t
                if edges[k] == nil { edges[k] = LateralEdge(source: src, target: t, first: a.time); order.append(k) }
                if !edges[k]!.rules.contains(short) { edges[k]!.rules.append(short) }
                edges[k]!.alerts.append(a.anchor)
            }
        }
        // A single edge is no chain: only a path of two hops or more is highlighted.
        let path = longestChain(order.map { edges[$0]! })
        let chain = Set(path.count >= 2 ? path : [])
        let n = hosts.count
        let radius = max(130.0, Double(n) * 16)
        let size = radius * 2 + 260
        let c = size / 2
        var pos: [String: (Double, Double)] = [:]
        for (i, h) in hosts.enumerated() {
            let angle = Double(i) / Double(n) * 2 * Double.pi - Double.pi / 2
            pos[h] = (c + radius * cos(angle), c + radius * sin(angle))
        }
        w.raw("<svg class=\"chart graph\" role=\"img\" aria-label=\"Hosts and lateral-movement edges\"")
        w.attribute("viewBox", "0 0 \(Int(size)) \(Int(size))")
        w.raw("><defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"25\" refY=\"5\" markerUnits=\"userSpaceOnUse\" markerWidth=\"11\" markerHeight=\"11\" orient=\"auto\"><path d=\"M0 0L10 5L0 10z\" class=\"arrowhead\"/></marker><marker id=\"arrowhot\" viewBox=\"0 0 10 10\" refX=\"25\" refY=\"5\" markerUnits=\"userSpaceOnUse\" markerWidth=\"13\" markerHeight=\"13\" orient=\"auto\"><path d=\"M0 0L10 5L0 10z\" class=\"arrowhot\"/></marker></defs>")
        // Sessions from flows between alert hosts, drawn under the alert edges.
        for (k, count) in model.adminSessions.sorted(by: { $0.key < $1.key }) {
            let p = k.split(separator: "\u{0}", omittingEmptySubsequences: false).map(String.init)
            guard p.count == 3, let a = pos[p[0]], let b = pos[p[1]], p[0] != p[1] else { continue }
            w.raw("<line class=\"session\""); w.attribute("x1", a.0); w.attribute("y1", a.1); w.attribute("x2", b.0); w.attribute("y2", b.1)
            w.raw("><title>"); w.text("\(p[0]) → \(p[1]) \(p[2]): \(count) flow(s)"); w.raw("</title></line>")
        }
        for k in order {
            let e = edges[k]!
            guard let a = pos[e.source], let b = pos[e.target] else { continue }
            let hot = chain.contains(k)
            w.raw(hot ? "<line class=\"edge chain\" marker-end=\"url(#arrowhot)\"" : "<line class=\"edge\" marker-end=\"url(#arrow)\"")
            w.attribute("data-source", e.source); w.attribute("data-target", e.target)
            w.attribute("x1", a.0); w.attribute("y1", a.1); w.attribute("x2", b.0); w.attribute("y2", b.1)
            w.raw("><title>"); w.text("\(e.source) → \(e.target): \(e.rules.joined(separator: ", ")), first \(EventTime.format(e.first))"); w.raw("</title></line>")
            w.raw("<text class=\"edgelabel\" text-anchor=\"middle\""); w.attribute("x", (a.0 + b.0) / 2); w.attribute("y", (a.1 + b.1) / 2 - 4); w.raw(">")
            w.text("\(e.rules.joined(separator: ", ")) · \(EventTime.format(e.first, fraction: false).dropLast(7))"); w.raw("</text>")
        }
        for h in hosts {
            let p = pos[h]!
            w.raw("<g class=\"node\""); w.attribute("data-host", h); w.raw("><circle"); w.attribute("cx", p.0); w.attribute("cy", p.1)
            w.raw(" r=\"14\"/><text class=\"nodelabel\" text-anchor=\"middle\""); w.attribute("x", p.0)
            w.attribute("y", p.1 + (p.1 >= c ? 30 : -20)); w.raw(">"); w.text(h); w.raw("</text></g>")
        }
        if chain.isEmpty { w.raw("</svg>\n<p class=\"note\">No alert chain: no target of an alert went on to act on another host later.</p>") } else { w.raw("</svg>\n") }
        w.raw("<p class=\"legend\"><span class=\"sw chainsw\"></span>alert chain (each hop starts from the previous target, in time order) <span class=\"sw edgesw\"></span>other alert edges <span class=\"sw sessionsw\"></span>SMB/DCE-RPC/RDP/WinRM/SSH flows between these hosts</p>\n")
        w.raw("<table class=\"sortable\"><thead><tr><th>First</th><th>Source</th><th>Target</th><th>Rules</th><th>Alerts</th></tr></thead><tbody>")
        for k in order {
            let e = edges[k]!
            w.raw(chain.contains(k) ? "<tr class=\"chainrow\">" : "<tr>")
            w.element("<td>", EventTime.format(e.first), "</td>")
            w.element("<td>", e.source, "</td>")
            w.element("<td>", e.target, "</td>")
            w.element("<td>", e.rules.joined(separator: ", "), "</td>")
            w.raw("<td>")
            for anchor in e.alerts.prefix(20) { w.raw("<a"); w.attribute("href", "#" + anchor); w.raw(">"); w.text(anchor.replacingOccurrences(of: "alert-", with: "#")); w.raw("</a> ") }
            w.raw("</td></tr>")
        }
        w.raw("</tbody></table></section>\n")
    }

    /// Keys of the longest path of edges e1, e2, … with e(i+1).source == e(i).target and non-decreasing
    /// first times (edges in time order; O(E²), E is small: distinct host pairs of alerts).
    func longestChain(_ edges: [LateralEdge]) -> [String] {
        guard !edges.isEmpty else { return [] }
        let sorted = edges.enumerated().sorted { ($0.element.first, $0.offset) < ($1.element.first, $1.offset) }.map(\.element)
        let limited = Array(sorted.prefix(2000))
        var best = [Int](repeating: 1, count: limited.count), prev = [Int](repeating: -1, count: limited.count)
        for i in limited.indices {
            for j in 0..<i where limited[j].target == limited[i].source && limited[j].source != limited[i].target && best[j] + 1 > best[i] {
                best[i] = best[j] + 1; prev[i] = j
            }
        }
        var i = best.indices.max { (best[$0], -$0) < (best[$1], -$1) }!
        var out: [String] = []
        while i >= 0 { out.append(limited[i].source + "\u{0}" + limited[i].target); i = prev[i] }
        return out
    }
}
