import Analyzers
import ArgumentParser
import ConfigKit
import Evidence
import Logging
import Outputs
import PacketCore
import SensorRuntime

/// Options shared by every command that runs the pipeline. Each overrides the same setting in `--config`.
struct SensorOptions: ParsableArguments {
    @Option(name: .long, help: "YAML configuration file (see Deploy/sensor.example.yaml).")
    var config: String?

    @Option(name: .long, help: "Rules directory (default: ./Rules, then /etc/sensor/rules).")
    var rules: String?

    @Option(name: .long, help: ArgumentHelp("Where events go: stdout, file:PATH, kafka://HOST:PORT[,…]/TOPIC[?prop=value…], syslog+{udp,tcp,tls}://HOST:PORT. Repeatable.", valueName: "spec"))
    var output: [String] = []

    @Option(name: .long, help: ArgumentHelp("Kafka topic of host facts: run and replay publish to it instead of running the cross-flow detectors themselves; aggregate reads it.", valueName: "kafka://HOST:PORT/TOPIC"))
    var hostFacts: String?

    @Option(name: .long, help: "BPF filter applied before decoding (minimisation).")
    var bpf: String?

    @Option(name: .long, help: "Sensor name for observer.name (default: host name).")
    var sensorName: String?

    @Flag(inversion: .prefixedNo, help: "Emit spanwatch.flow events for finished flows.")
    var flowEvents: Bool?

    @Option(name: .long, help: ArgumentHelp("Flow table capacity per worker, \(FlowTableConfiguration.capacityRange.lowerBound) to \(FlowTableConfiguration.capacityRange.upperBound) (the stalest flow is evicted beyond it).", valueName: "n"))
    var maxFlows: FlowCapacity?

    @Option(name: .long, help: "Community ID seed.")
    var communityIdSeed: UInt16?

    @Option(name: .long, help: ArgumentHelp("Home network CIDR for network.direction. Repeatable; replaces the RFC 1918/ULA defaults.", valueName: "cidr"))
    var homeNet: [String] = []

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String?

    @Option(name: .long, help: "Log line format on standard error: text or json (a <N> priority prefix is added under systemd's journal).")
    var logFormat: LogFormat?

    @Option(name: .long, help: ArgumentHelp("Evidence directory (0700/0750, owned by the sensor user).", valueName: "dir"))
    var evidenceDir: String?

    @Option(name: .long, help: ArgumentHelp("age X25519 recipient (age1…) evidence is encrypted to. Repeatable.", valueName: "age1..."))
    var evidenceRecipient: [String] = []

    @Option(name: .long, help: ArgumentHelp("age recipients file (as age -R: one age1… key per line, # comments) evidence is encrypted to. Repeatable.", valueName: "path"))
    var evidenceRecipientsFile: [String] = []

    @Option(name: .long, help: ArgumentHelp("Authorisation reference for evidence capture; without one, evidence capture stays off.", valueName: "ref"))
    var authorization: String?

    @Option(name: .long, help: ArgumentHelp("Purpose of the evidence capture (recorded in every file and custody entry).", valueName: "text"))
    var purpose: String?

    @Option(name: .customLong("operator"), help: ArgumentHelp("Operator responsible for the evidence capture.", valueName: "name"))
    var operatorName: String?
    @Option(name: .long, help: ArgumentHelp("MaxMind City or Country database for source/destination.geo.*.", valueName: "path"))
    var geoipCity: String?

    @Option(name: .long, help: ArgumentHelp("MaxMind ASN database for source/destination.as.*.", valueName: "path"))
    var geoipAsn: String?
    @Option(name: .long, help: ArgumentHelp("Threat-intelligence indicator file or directory (list, CSV, STIX 2.1, MISP JSON). Repeatable; adds to intel.indicators.", valueName: "path"))
    var indicators: [String] = []

    @Flag(inversion: .prefixedNo, help: "Emit spanwatch.dns passive-DNS events (one per transaction).")
    var dnsEvents: Bool?

    @Option(name: .long, help: ArgumentHelp("Digests of transferred files, comma-separated (default sha256; each one more costs about as much CPU again).", valueName: "md5,sha1,sha256"))
    var fileHashes: FileHashList?

    @Option(name: .long, help: ArgumentHelp("Public Suffix List file (default: Debian's /usr/share/publicsuffix/public_suffix_list.dat).", valueName: "path"))
    var psl: String?

    func validate() throws {
        for r in evidenceRecipient {
            do { _ = try AgeRecipient(r) } catch { throw ValidationError("--evidence-recipient: \(error.description)") }
        }
        for o in output {
            do { _ = try OutputSpec(parsing: o) } catch { throw ValidationError(error.description) }
        }
        if let h = hostFacts {
            do { _ = try SensorConfiguration.hostFactsTopic(h) } catch { throw ValidationError("--host-facts: \(error.description)") }
        }
        for n in homeNet where IPNetwork(n) == nil { throw ValidationError("--home-net '\(n)' is not a CIDR network") }
        if let l = logLevel, !SensorConfiguration.logLevels.contains(l) {
            throw ValidationError("--log-level must be one of \(SensorConfiguration.logLevels.joined(separator: ", "))")
        }
    }

    /// The configuration file's settings with the flags applied on top.
    func resolve() throws -> SensorConfiguration {
        var c = SensorConfiguration()
        if let config {
            do { c = try SensorConfiguration.load(path: config) } catch {
                throw CLIError(message: "invalid configuration:\n\(error.description)", code: ExitStatus.configuration)
            }
        }
        if let rules { c.rulesDirectory = rules }
        if !output.isEmpty { c.outputs = try output.map { try OutputSpec(parsing: $0) } }
        if let bpf { c.bpf = bpf }
        if let hostFacts { c.hostFacts = try? SensorConfiguration.hostFactsTopic(hostFacts) }
        if let sensorName { c.sensorName = sensorName }
        if let flowEvents { c.flowEvents = flowEvents }
        if let maxFlows { c.flows.capacity = maxFlows.value }
        if let communityIdSeed { c.communityIDSeed = communityIdSeed }
        if !homeNet.isEmpty { c.homeNetworks = homeNet.compactMap(IPNetwork.init) }
        if let logLevel { c.logLevel = logLevel }
        if let logFormat { c.logFormat = logFormat }
        if let evidenceDir { c.evidence.directory = evidenceDir }
        if !evidenceRecipient.isEmpty { c.evidence.recipients = evidenceRecipient }
        if !evidenceRecipientsFile.isEmpty { c.evidence.recipientsFiles = evidenceRecipientsFile }
        if let authorization { c.evidence.authorization = authorization }
        if let purpose { c.evidence.purpose = purpose }
        if let operatorName { c.evidence.operatorName = operatorName }
        let evidenceProblems = c.evidence.validate()
        if !evidenceProblems.isEmpty { throw CLIError(message: evidenceProblems.joined(separator: "\n"), code: ExitStatus.configuration) }
        if let geoipCity { c.enrichment.cityDatabase = geoipCity }
        if let geoipAsn { c.enrichment.asnDatabase = geoipAsn }
        c.intel.indicators += indicators
        if let dnsEvents { c.dns.eventsEnabled = dnsEvents }
        if let psl { c.dns.publicSuffixListPath = psl }
        if let fileHashes { c.files.hashes = fileHashes.value }
        return c
    }

    func makeLogger(_ c: SensorConfiguration) -> Logger {
        SensorLogHandler.bootstrap(format: c.logFormat)
        var logger = Logger(label: "sensor")
        logger.logLevel = Logger.Level(rawValue: c.logLevel) ?? .info
        return logger
    }
}

extension LogFormat: ExpressibleByArgument {}

/// A `--max-flows` value: an integer within `FlowTableConfiguration.capacityRange`. Checked while the
/// command line is parsed, so an out-of-range value is a usage error before anything is reserved.
struct FlowCapacity: ExpressibleByArgument {
    var value: Int
    init?(argument: String) {
        guard let n = Int(argument), FlowTableConfiguration.capacityRange.contains(n) else { return nil }
        value = n
    }
}

/// A `--file-hashes` value: comma-separated digest names, checked while the command line is parsed.
struct FileHashList: ExpressibleByArgument {
    var value: FileHashAlgorithms
    init?(argument: String) {
        guard let v = FileHashAlgorithms(names: argument.split(separator: ",").map(String.init)) else { return nil }
        value = v
    }
}

/// An error that ends the command with a message and a specific exit status.
struct CLIError: Error, CustomStringConvertible {
    var message: String
    var code: Int32
    var description: String { message }
}
