import PacketCore
import ThreatIntel

/// Indicator files: plain lists, CSV, STIX 2.1 bundles and MISP exports (the format follows from the
/// name and, for JSON, the content, as for a real file), then building the lookup set from what loaded
/// and matching against it.
func fuzzIntel(_ input: inout FuzzInput) {
    let names = ["feed.txt", "feed.csv", "feed.json", "ips.list"]
    let name = names[Int(input.u8()) % names.count]
    let text = input.restAsText()
    guard let file = try? IndicatorLoader.parse(text, path: "/intel/" + name) else { return }
    let set = IndicatorSet(file.indicators)
    let now = Timestamp(seconds: 1_700_000_000)
    for i in file.indicators.prefix(64) {
        _ = set.match(i.type, i.value, at: now)
        _ = set.match(domain: i.value, at: now)
        if let a = IPAddress(i.value) { _ = set.match(address: a, at: now) }
    }
}
