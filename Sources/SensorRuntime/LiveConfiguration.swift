import ConfigKit

#if canImport(Glibc)
import Glibc
#endif

/// Live capture settings (`capture:` section beyond `bpf`/`snaplen`, and `sensor run` flags).
public struct LiveConfiguration: Sendable, Equatable {
    /// The interface to capture on (a SPAN or tap port).
    public var interface: String?
    /// Capture workers: one libpcap handle, one pinned thread and one flow table each.
    public var workers: Int = 1
    /// CPU for each worker, in order (`cpus: [2, 3]`); empty leaves scheduling to the kernel.
    public var cpus: [Int] = []
    /// TPACKET_V3 ring size per worker, MiB.
    public var bufferMegabytes: Int = 64
    public var promiscuous: Bool = true
    /// Ring block timeout (ms): latency bound for a part-filled block, and the idle wake-up interval.
    public var timeoutMilliseconds: Int = 100
    /// How often each worker writes a `spanwatch.stats` event with its capture counters.
    public var statsIntervalSeconds: Double = 60
    /// Kernel drops / received over one stats interval above which a `spanwatch.health` warning is emitted.
    public var lossWarningFraction: Double = 0.01
    /// Host-level aggregator threads (S): the cross-flow detectors' state is sharded by host address
    /// over them (docs/LIVE.md, "State that spans workers"). One is enough for the fact rates of a
    /// 10 Gb/s link; more only when the detectors' CPU is the bottleneck.
    public var hostShards: Int = 1
    /// Each (worker, shard) fact ring, KiB (rounded up to a power of two). A full ring drops facts, counted.
    public var hostRingKilobytes: Int = 4096

    public init() {}

    /// Keys this type reads from the `capture:` mapping (besides `bpf` and `snaplen`).
    public static let captureKeys = ["interface", "workers", "cpus", "buffer_mb", "promiscuous", "timeout_ms",
                                     "stats_interval", "loss_warning", "host_shards", "host_ring_kb"]

    mutating func parse(capture t: [String: ConfigValue], _ r: inout ConfigReader) {
        interface = r.string(t["interface"]) ?? interface
        if let w = r.int(t["workers"], in: 1...256) { workers = w }
        if let v = t["cpus"] {
            var list: [Int] = []
            for item in v.items ?? [v] {
                if let c = r.int(item, in: 0...4095) { list.append(c) }
            }
            cpus = list
        }
        if let b = r.int(t["buffer_mb"], in: 1...16384) { bufferMegabytes = b }
        if let p = r.bool(t["promiscuous"]) { promiscuous = p }
        if let ms = r.int(t["timeout_ms"], in: 1...10_000) { timeoutMilliseconds = ms }
        if let s = r.seconds(t["stats_interval"], in: 1...86400) { statsIntervalSeconds = s }
        if let f = r.double(t["loss_warning"], in: 0...1) { lossWarningFraction = f }
        if let s = r.int(t["host_shards"], in: 1...64) { hostShards = s }
        if let k = r.int(t["host_ring_kb"], in: 64...1_048_576) { hostRingKilobytes = k }
        if let v = t["cpus"], !cpus.isEmpty, cpus.count < workers, t["workers"] != nil {
            r.report(v, "lists \(cpus.count) CPUs for \(workers) workers (one each, or leave cpus out)")
        }
    }

    /// Problems that only show when flags and file are combined (the CLI calls this after merging).
    public func validate() -> [String] {
        var out: [String] = []
        if interface == nil || interface?.isEmpty == true { out.append("no interface: give --interface IF or capture.interface") }
        if !cpus.isEmpty && cpus.count < workers { out.append("\(cpus.count) CPUs listed for \(workers) workers: list one per worker") }
        if Set(cpus).count != cpus.count { out.append("a CPU is listed twice in cpus") }
        return out
    }
}

/// `privileges:`: who the sensor becomes once its capture handles are open, and where it may write.
public struct PrivilegeConfiguration: Sendable, Equatable {
    public var user: String?
    public var group: String?
    /// Keep running as root (with no capabilities) when no user is given. Off: root is refused.
    public var allowRoot: Bool = false
    /// Directory for state the sensor keeps between runs; created 0750 and owned by `user`.
    public var stateDirectory: String?
    public init() {}

    static let keys: Set<String> = ["user", "group", "allow_root", "state_directory"]

    mutating func parse(_ t: [String: ConfigValue], _ r: inout ConfigReader) {
        user = r.string(t["user"]) ?? user
        group = r.string(t["group"]) ?? group
        if let a = r.bool(t["allow_root"]) { allowRoot = a }
        if let d = r.string(t["state_directory"]) {
            if d.hasPrefix("/") { stateDirectory = d } else { r.report(t["state_directory"]!, "must be an absolute path") }
        }
    }
}

/// `metrics:`: the Prometheus text endpoint.
public struct MetricsConfiguration: Sendable, Equatable {
    public var enabled: Bool = true
    /// `HOST:PORT` with a literal address; loopback by default (metrics name hosts and rates: not for the world).
    public var listen: ListenAddress = ListenAddress(host: "127.0.0.1", port: 9109)
    public init() {}

    static let keys: Set<String> = ["enabled", "listen"]

    mutating func parse(_ t: [String: ConfigValue], _ r: inout ConfigReader) {
        if let e = r.bool(t["enabled"]) { enabled = e }
        if let l = r.string(t["listen"]) {
            do { listen = try ListenAddress(parsing: l) } catch { r.report(t["listen"]!, error.description) }
        }
    }
}

/// A numeric listen address: `127.0.0.1:9109`, `[::1]:9109`, `0.0.0.0:9109`.
public struct ListenAddress: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: UInt16

    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    public struct ParseError: Error, CustomStringConvertible { public var description: String }

    public init(parsing text: String) throws(ParseError) {
        var hostPart: Substring, portPart: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[close...].hasPrefix("]:") else {
                throw ParseError(description: "'\(text)': expected [IPv6]:PORT")
            }
            hostPart = text[text.index(after: text.startIndex)..<close]
            portPart = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":") else { throw ParseError(description: "'\(text)': expected HOST:PORT") }
            hostPart = text[..<colon]
            portPart = text[text.index(after: colon)...]
        }
        guard let p = UInt16(portPart) else { throw ParseError(description: "'\(text)': bad port '\(portPart)'") }
        let h = String(hostPart)
        var v4 = in_addr(), v6 = in6_addr()
        guard inet_pton(AF_INET, h, &v4) == 1 || inet_pton(AF_INET6, h, &v6) == 1 else {
            throw ParseError(description: "'\(text)': the host must be a literal IPv4 or IPv6 address")
        }
        host = h
        port = p
    }

    public var isIPv6: Bool { host.contains(":") }
    public var isLoopback: Bool { host.hasPrefix("127.") || host == "::1" }
    public var description: String { isIPv6 ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

extension SensorConfiguration {
    /// Parses the sections live capture owns. Called from `SensorConfiguration.parse`.
    static func parseLiveSections(top: [String: ConfigValue], capture: [String: ConfigValue], into c: inout SensorConfiguration,
                                  _ r: inout ConfigReader) {
        c.live.parse(capture: capture, &r)
        if let v = top["privileges"] { c.privileges.parse(r.table(v, allowed: PrivilegeConfiguration.keys), &r) }
        if let v = top["metrics"] { c.metrics.parse(r.table(v, allowed: MetricsConfiguration.keys), &r) }
    }
}
