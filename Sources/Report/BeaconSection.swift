import Foundation

/// Beaconing: for each beacon alert, the connection starts of its pair (from the flow events, since the
/// alert carries only the first and last start) as an inter-arrival scatter over time and a histogram.
extension ReportPage {
    mutating func beaconing() {
        w.raw("<section id=\"beaconing\"><h2>Beaconing</h2>\n")
        let alerts = alertsByTime.filter { $0.category == "beaconing" }
        if alerts.isEmpty { w.raw("<p class=\"note\">No beaconing alerts.</p>") }
        for a in alerts { beacon(a) }
        w.raw("</section>\n")
    }

    /// The scored connections: starts of the alert's pair within its first and last start.
    func beaconStarts(_ e: EventObject) -> [Int64]? {
        guard let src = e.string("source.ip") else { return nil }
        let key: String
        if e.string("spanwatch.beaconing.pair.type") == "source_host" {
            guard let host = e.string("spanwatch.beaconing.server_name") ?? e.strings("related.hosts").first else { return nil }
            key = ReportModel.hostKey(src, host)
        } else {
            guard let dst = e.string("destination.ip"), let port = e.int("spanwatch.beaconing.port") ?? e.int("destination.port") else { return nil }
            key = ReportModel.connKey(src, dst, port, e.string("spanwatch.beaconing.transport") ?? e.string("network.transport") ?? "tcp")
        }
        guard let all = model.starts[key] ?? model.httpFlowStarts[key] else { return nil }
        let lo = e.time("spanwatch.beaconing.first_start") ?? .min, hi = e.time("spanwatch.beaconing.last_start") ?? .max
        return all.filter { $0 >= lo && $0 <= hi }.sorted()
    }

    mutating func beacon(_ a: ReportModel.Alert) {
        let e = a.event
        w.raw("<article class=\"beacon\""); w.attribute("data-alert", a.anchor); w.raw("><h3><a")
        w.attribute("href", "#" + a.anchor); w.raw(">"); w.text("#\(a.index + 1)"); w.raw("</a> ")
        w.text(e.string("spanwatch.beaconing.pair.text") ?? e.string("message") ?? "")
        w.raw("</h3>\n<p class=\"meta\">")
        // Strobe and long-connection findings carry no score.
        var meta = e.double("spanwatch.beaconing.score").map { "score \(Format.decimal($0, 3))" } ?? (e.string("rule.name") ?? "")
        if let m = e.double("spanwatch.beaconing.interval_median") { meta += " · median interval \(Format.seconds(m))" }
        if let m = e.double("spanwatch.beaconing.interval_mad") { meta += " (MAD \(Format.seconds(m)))" }
        if let c = e.int("spanwatch.beaconing.connections") { meta += " · \(c) connections" }
        if let s = e.double("spanwatch.beaconing.size_median") { meta += " · median size \(Format.bytes(Int64(s)))" }
        w.text(meta)
        w.raw("</p>\n")
        if let parts = e.object("spanwatch.beaconing.score_parts") {
            w.raw("<table class=\"parts\"><thead><tr>")
            let keys = parts.fields.keys.sorted()
            for k in keys { w.element("<th>", k.replacingOccurrences(of: "_", with: " "), "</th>") }
            w.raw("</tr></thead><tbody><tr>")
            for k in keys { w.element("<td class=\"num\">", parts.double(k).map { Format.decimal($0, 3) } ?? "-", "</td>") }
            w.raw("</tr></tbody></table>\n")
        }
        guard let starts = beaconStarts(e), !starts.isEmpty else {
            w.raw("<p class=\"note\">The events hold no flow events for this pair (flow events off, or exported without them): no per-connection times to plot.</p></article>\n")
            return
        }
        let intervals = zip(starts.dropFirst(), starts).map { Double($0 - $1) / 1e6 }
        w.raw("<div class=\"pair\">")
        scatter(starts, intervals)
        histogram(intervals)
        w.raw("</div></article>\n")
    }

    /// One point per connection start: x its time, y the interval since the previous start (the first
    /// start sits on the axis, drawn hollow).
    mutating func scatter(_ starts: [Int64], _ intervals: [Double]) {
        let width = 560.0, height = 240.0, left = 56.0, bottom = 36.0, top = 12.0, right = 12.0
        let first = starts.first!, span = Double(max(starts.last! - first, 1))
        let maxY = max(intervals.max() ?? 1, 0.001) * 1.1
        w.raw("<svg class=\"chart scatter\" role=\"img\" aria-label=\"Inter-arrival time of each connection over time\"")
        w.attribute("viewBox", "0 0 \(Int(width)) \(Int(height))")
        w.raw(">")
        axes(width: width, height: height, left: left, bottom: bottom, top: top, right: right,
             xLabel: "connection start (s after \(EventTime.format(first, fraction: false)))", yLabel: "interval (s)",
             xMax: span / 1e6, yMax: maxY)
        let pw = width - left - right, ph = height - top - bottom
        for (i, t) in starts.enumerated() {
            let x = left + Double(t - first) / span * pw
            let v = i == 0 ? 0 : intervals[i - 1]
            let y = top + ph - v / maxY * ph
            w.raw(i == 0 ? "<circle class=\"conn first\"" : "<circle class=\"conn\"")
            w.attribute("cx", x); w.attribute("cy", y)
            w.raw(" r=\"3.5\"><title>")
            w.text(i == 0 ? "\(EventTime.format(t)) (first)" : "\(EventTime.format(t)): \(Format.decimal(v, 3)) s after the previous")
            w.raw("</title></circle>")
        }
        w.raw("</svg>")
    }

    mutating func histogram(_ intervals: [Double]) {
        let width = 380.0, height = 240.0, left = 44.0, bottom = 36.0, top = 12.0, right = 12.0
        let lo = intervals.min() ?? 0, hi = intervals.max() ?? 1
        let bins = max(1, min(30, Int(Double(intervals.count).squareRoot().rounded(.up)) * 2))
        let step = max((hi - lo) / Double(bins), 1e-6)
        var counts = [Int](repeating: 0, count: bins)
        for v in intervals { counts[min(bins - 1, max(0, Int((v - lo) / step)))] += 1 }
        let maxC = Double(max(counts.max() ?? 1, 1))
        w.raw("<svg class=\"chart histogram\" role=\"img\" aria-label=\"Histogram of inter-arrival times\"")
        w.attribute("viewBox", "0 0 \(Int(width)) \(Int(height))")
        w.raw(">")
        axes(width: width, height: height, left: left, bottom: bottom, top: top, right: right,
             xLabel: "interval (s)", yLabel: "connections", xMin: lo, xMax: hi, yMax: maxC)
        let pw = width - left - right, ph = height - top - bottom
        for (i, c) in counts.enumerated() where c > 0 {
            let bh = Double(c) / maxC * ph
            w.raw("<rect class=\"bin\"")
            w.attribute("x", left + Double(i) / Double(bins) * pw + 1)
            w.attribute("y", top + ph - bh)
            w.attribute("width", max(pw / Double(bins) - 2, 1))
            w.attribute("height", bh)
            w.raw("><title>")
            w.text("\(Format.decimal(lo + Double(i) * step, 3))–\(Format.decimal(lo + Double(i + 1) * step, 3)) s: \(c)")
            w.raw("</title></rect>")
        }
        w.raw("</svg>")
    }

    mutating func axes(width: Double, height: Double, left: Double, bottom: Double, top: Double, right: Double,
                       xLabel: String, yLabel: String, xMin: Double = 0, xMax: Double, yMax: Double) {
        let x0 = left, y0 = height - bottom, x1 = width - right
        w.raw("<path class=\"axisline\""); w.attribute("d", "M\(Format.coordinate(x0)) \(Format.coordinate(top))V\(Format.coordinate(y0))H\(Format.coordinate(x1))"); w.raw("/>")
        for k in 0...4 {
            let f = Double(k) / 4
            w.raw("<text class=\"axis\" text-anchor=\"end\""); w.attribute("x", x0 - 4); w.attribute("y", y0 - f * (y0 - top) + 4); w.raw(">")
            w.text(Format.decimal(f * yMax, yMax >= 10 ? 0 : 2)); w.raw("</text>")
            w.raw("<text class=\"axis\" text-anchor=\"middle\""); w.attribute("x", x0 + f * (x1 - x0)); w.attribute("y", y0 + 14); w.raw(">")
            w.text(Format.decimal(xMin + f * (xMax - xMin), xMax >= 10 ? 0 : 2)); w.raw("</text>")
        }
        w.raw("<text class=\"axis\" text-anchor=\"middle\""); w.attribute("x", (x0 + x1) / 2); w.attribute("y", height - 4); w.raw(">")
        w.text(xLabel); w.raw("</text>")
        w.raw("<text class=\"axis\" text-anchor=\"middle\""); w.attribute("transform", "translate(11 \(Format.coordinate((top + y0) / 2))) rotate(-90)"); w.raw(">")
        w.text(yLabel); w.raw("</text>")
    }
}
