import Analyzers
import ConfigKit
import Evidence
import Enrichment
import Outputs
import PacketCore

/// Everything the sensor is told at start: from the YAML file (`--config`), then overridden by flags.
///
/// Sections map one-to-one to the YAML layout documented in `Deploy/sensor.example.yaml`.
public struct SensorConfiguration: Sendable {
    /// `observer.name`; defaults to the host name.
    public var sensorName: String?
    public var logLevel: String = "info"
    /// `sensor.log_format` / `--log-format`: text or JSON log lines.
    public var logFormat: LogFormat = .text
    /// Kernel BPF filter applied to every source (minimisation: capture only what is in scope).
    public var bpf: String?
    public var snapLength: Int = 262_144
    public var flows = FlowTableConfiguration()
    public var flowEvents = true
    public var communityIDSeed: UInt16 = 0
    public var homeNetworks: [IPNetwork] = NetworkSet.privateDefaults.networks
    /// Empty means standard output.
    public var outputs: [OutputSpec] = []
    /// `host_facts:` / `--host-facts`: the host facts go to this Kafka topic for `sensor aggregate`
    /// instead of the local host stage (docs/SCALE-OUT.md).
    public var hostFacts: KafkaOutputOptions?
    public var rulesDirectory: String?
    /// Alert-triggered evidence capture (`evidence:`); off unless an authorisation reference is set.
    public var evidence = EvidenceConfiguration()
    /// GeoIP/ASN databases (YAML `enrichment:`).
    public var enrichment = EnrichmentConfiguration()
    /// `intel:` threat-intelligence indicators (see IntelConfiguration.swift).
    public var intel = IntelConfiguration()
    /// Live capture (`sensor run`): interface, workers, CPUs, ring size (see LiveConfiguration.swift).
    public var live = LiveConfiguration()
    /// Who the sensor becomes after opening its handles.
    public var privileges = PrivilegeConfiguration()
    /// Prometheus endpoint.
    public var metrics = MetricsConfiguration()
    /// DNS analysis (`dns:`): parsing on/off, passive-DNS events, transaction timeout, PSL file.
    public var dnsEnabled = true
    public var dns = DNSConfiguration()
    /// The C2 family (`c2: {enabled}`): content-based protocol identification, TLS/HTTP analysis, the
    /// non-standard-port and beacon detectors. Off saves the most CPU of any family (every TCP stream's
    /// first bytes are inspected) on a sensor that only needs, say, lateral movement in a server segment.
    public var c2Enabled = true
    /// The lateral-movement family (`lateral_movement: {enabled}`): SMB, DCE-RPC and Kerberos analysers and
    /// their detector. `Rules/lateral-movement.yaml`'s own `enabled` switches only the detector off.
    public var lateralMovementEnabled = true
    /// TCP reassembly bounds (`reassembly:`), in real bytes of memory per flow and per worker.
    public var reassembly = ReassemblyConfiguration()
    /// `reassembly.parser_buffers_per_worker`: every stream parser buffer of a worker together.
    public var parserMemoryLimit = ParserMemoryBudget.defaultLimit
    /// `http.events`: `spanwatch.http` transaction events (HTTPFilesConfiguration.swift).
    public var httpEvents = true
    /// `files:`: hashing of HTTP bodies and SMB reads/writes into `spanwatch.file` events.
    public var files = FileConfiguration()

    public init() {}

    /// A `--host-facts` / `host_facts:` value: `kafka://BROKERS/TOPIC[?librdkafka properties…]`.
    public static func hostFactsTopic(_ text: String) throws(OutputError) -> KafkaOutputOptions {
        guard text.hasPrefix("kafka://") else { throw .badSpec(text, reason: "host facts go to kafka://HOST:PORT[,HOST:PORT]/TOPIC") }
        let o = try KafkaOutputOptions(url: text)
        guard !o.topic.contains("{dataset}") else { throw .badSpec(text, reason: "the host-fact topic is one topic ({dataset} does not apply)") }
        return o
    }

    public static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]

    /// Reads a YAML config file, reporting every problem with its line (not just the first).
    public static func load(path: String) throws(ConfigIssues) -> SensorConfiguration {
        do {
            guard let root = try YAMLDocument.load(path: path) else { return SensorConfiguration() }
            return try parse(root)
        } catch let issue as ConfigIssue {
            throw ConfigIssues([issue])
        } catch let issues as ConfigIssues {
            throw issues
        } catch {
            throw ConfigIssues([ConfigIssue(file: path, line: 0, column: 0, message: "\(error)")])
        }
    }

    public static func parse(text: String, file: String = "<config>") throws(ConfigIssues) -> SensorConfiguration {
        do {
            guard let root = try YAMLDocument.parse(text, file: file) else { return SensorConfiguration() }
            return try parse(root)
        } catch let issue as ConfigIssue {
            throw ConfigIssues([issue])
        } catch let issues as ConfigIssues {
            throw issues
        } catch {
            throw ConfigIssues([ConfigIssue(file: file, line: 0, column: 0, message: "\(error)")])
        }
    }

    static func parse(_ root: ConfigValue) throws(ConfigIssues) -> SensorConfiguration {
        var c = SensorConfiguration()
        var r = ConfigReader()
        let top = r.table(root, allowed: ["sensor", "capture", "flows", "community_id", "network", "outputs", "rules",
                                          "enrichment", "intel", "evidence", "privileges", "metrics", "dns",
                                          "c2", "lateral_movement", "reassembly", "http", "files", "host_facts"])

        if let v = top["sensor"] {
            let t = r.table(v, allowed: ["name", "log_level", "log_format"])
            c.sensorName = r.string(t["name"])
            if let l = r.string(t["log_level"]) {
                if logLevels.contains(l) { c.logLevel = l } else { r.report(t["log_level"]!, "must be one of \(logLevels.joined(separator: ", "))") }
            }
            if let f = r.string(t["log_format"]) {
                if let format = LogFormat(rawValue: f) { c.logFormat = format } else { r.report(t["log_format"]!, "must be text or json") }
            }
        }
        var captureTable: [String: ConfigValue] = [:]
        if let v = top["capture"] {
            let t = r.table(v, allowed: Set(["bpf", "snaplen"] + LiveConfiguration.captureKeys))
            c.bpf = r.string(t["bpf"])
            if let s = r.int(t["snaplen"], in: 64...262_144) { c.snapLength = s }
            captureTable = t
        }
        parseLiveSections(top: top, capture: captureTable, into: &c, &r)
        if let v = top["flows"] {
            let t = r.table(v, allowed: ["max", "events", "timeouts"])
            if let m = r.int(t["max"], in: FlowTableConfiguration.capacityRange) { c.flows.capacity = m }
            if let e = r.bool(t["events"]) { c.flowEvents = e }
            if let tv = t["timeouts"] {
                let tt = r.table(tv, allowed: ["tcp", "tcp_closed", "udp", "other", "active"])
                if let s = r.seconds(tt["tcp"], in: 1...86400) { c.flows.tcpTimeout = .seconds(s) }
                if let s = r.seconds(tt["tcp_closed"], in: 0...3600) { c.flows.tcpClosedTimeout = .seconds(s) }
                if let s = r.seconds(tt["udp"], in: 1...86400) { c.flows.udpTimeout = .seconds(s) }
                if let s = r.seconds(tt["other"], in: 1...86400) { c.flows.otherTimeout = .seconds(s) }
                if let s = r.seconds(tt["active"], in: 0...604_800) { c.flows.activeTimeout = .seconds(s) }
            }
        }
        if let v = top["community_id"] {
            let t = r.table(v, allowed: ["seed"])
            if let s = r.int(t["seed"], in: 0...65535) { c.communityIDSeed = UInt16(s) }
        }
        if let v = top["network"] {
            let t = r.table(v, allowed: ["home"])
            if let hv = t["home"], let list = hv.items ?? [hv] as [ConfigValue]? {
                var nets: [IPNetwork] = []
                for item in list {
                    guard let s = r.string(item) else { continue }
                    if let n = IPNetwork(s) { nets.append(n) } else { r.report(item, "'\(s)' is not a network (expected e.g. 10.0.0.0/8)") }
                }
                c.homeNetworks = nets
            }
        }
        if let v = top["outputs"] {
            for item in v.items ?? [v] {
                guard let s = r.string(item) else { continue }
                do { c.outputs.append(try OutputSpec(parsing: s)) } catch { r.report(item, error.description) }
            }
        }
        if let v = top["host_facts"], let s = r.string(v) {
            do { c.hostFacts = try Self.hostFactsTopic(s) } catch { r.report(v, error.description) }
        }
        if let v = top["rules"] {
            let t = r.table(v, allowed: ["directory"])
            c.rulesDirectory = r.string(t["directory"])
        }
        if let v = top["evidence"] { EvidenceConfiguration.parse(v, into: &c.evidence, reader: &r) }
        if let v = top["enrichment"] {
            let t = r.table(v, allowed: ["geoip_city", "geoip_asn", "cache_size", "reload_check"])
            c.enrichment.cityDatabase = r.string(t["geoip_city"])
            c.enrichment.asnDatabase = r.string(t["geoip_asn"])
            if let n = r.int(t["cache_size"], in: 16...10_000_000) { c.enrichment.cacheSize = n }
            if let s = r.seconds(t["reload_check"], in: 0.1...3600) { c.enrichment.reloadCheckSeconds = s }
        }
        if let v = top["intel"] { c.intel = IntelConfiguration.parse(v, &r) }
        if let v = top["dns"] { parseDNS(v, into: &c, &r) }
        parseHTTPAndFiles(top, into: &c, &r)
        if let v = top["c2"], let b = r.bool(r.table(v, allowed: ["enabled"])["enabled"]) { c.c2Enabled = b }
        if let v = top["lateral_movement"], let b = r.bool(r.table(v, allowed: ["enabled"])["enabled"]) { c.lateralMovementEnabled = b }
        if let v = top["reassembly"] {
            let t = r.table(v, allowed: ["held_per_flow", "held_segments_per_flow", "held_per_worker", "parser_buffers_per_worker"])
            if let n = r.int(t["held_per_flow"], in: 16 << 10...1 << 30) { c.reassembly.maxPendingBytesPerFlow = n }
            if let n = r.int(t["held_segments_per_flow"], in: 16...4096) { c.reassembly.maxHeldSegmentsPerFlow = n }
            if let n = r.int(t["held_per_worker"], in: 64 << 10...4 << 30) { c.reassembly.maxPendingBytesTotal = n }
            if let n = r.int(t["parser_buffers_per_worker"], in: 64 << 10...4 << 30) { c.parserMemoryLimit = n }
        }
        if !r.issues.isEmpty { throw ConfigIssues(r.issues) }
        return c
    }
}
