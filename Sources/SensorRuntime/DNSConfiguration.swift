import Analyzers
import ConfigKit
import Detectors
import Events
import Logging
#if canImport(Glibc)
import Glibc
#endif

extension SensorConfiguration {
    /// The `dns:` section:
    ///
    /// ```yaml
    /// dns:
    ///   enabled: true              # parse DNS at all (passive DNS and the tunnelling detector)
    ///   events: true               # spanwatch.dns events, one per transaction
    ///   transaction_timeout: 10s   # a query unanswered this long (packet clock) is reported as such
    ///   max_pending: 16384         # queries awaiting a response, per worker
    ///   tcp: true                  # DNS over TCP
    ///   psl: /usr/share/publicsuffix/public_suffix_list.dat
    /// ```
    static func parseDNS(_ v: ConfigValue, into c: inout SensorConfiguration, _ r: inout ConfigReader) {
        let t = r.table(v, allowed: ["enabled", "events", "transaction_timeout", "max_pending", "tcp", "psl"])
        if let b = r.bool(t["enabled"]) { c.dnsEnabled = b }
        if let b = r.bool(t["events"]) { c.dns.eventsEnabled = b }
        if let s = r.seconds(t["transaction_timeout"], in: 0.001...3600) { c.dns.transactionTimeout = .seconds(s) }
        if let m = r.int(t["max_pending"], in: 64...10_000_000) { c.dns.maxPendingQueries = m }
        if let b = r.bool(t["tcp"]) { c.dns.tcpEnabled = b }
        if let v = t["psl"], let path = r.string(v) {
            if access(path, R_OK) != 0 { r.report(v, "cannot read the Public Suffix List file '\(path)'") }
            c.dns.publicSuffixListPath = path
        }
    }
}
