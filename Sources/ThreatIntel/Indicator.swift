import Events
import PacketCore

/// What an indicator describes, which decides where it is matched.
///
/// `domain` matches DNS questions and answers, TLS SNI and HTTP hosts, subdomains included;
/// `sni` is an exact TLS server name; hashes match extracted files (and, for `sha1`/`sha256`, TLS
/// certificate fingerprints).
public enum IndicatorType: String, Sendable, CaseIterable, Hashable {
    case ip
    case cidr
    case domain
    case url
    case sni
    case ja3
    case ja4
    case md5
    case sha1
    case sha256

    /// Accepts our names plus common spellings in feeds (`ipv4`, `ip-dst`, `hostname`, `sha-256`, …).
    public init?(name: String) {
        switch name.lowercased().trimmingASCIIWhitespace() {
        case "ip", "ipv4", "ipv6", "ip-src", "ip-dst", "ipv4-addr", "ipv6-addr", "addr", "address": self = .ip
        case "cidr", "net", "network", "subnet", "ip-range": self = .cidr
        case "domain", "hostname", "host", "fqdn", "domain-name": self = .domain
        case "url", "uri", "link": self = .url
        case "sni", "server_name", "server-name", "tls-sni": self = .sni
        case "ja3", "ja3-fingerprint-md5", "ja3_md5": self = .ja3
        case "ja4", "ja4-fingerprint": self = .ja4
        case "md5": self = .md5
        case "sha1", "sha-1": self = .sha1
        case "sha256", "sha-256": self = .sha256
        default: return nil
        }
    }

    /// ECS `threat.indicator.type` (the STIX 2.x cyber-observable names ECS adopted).
    public var ecsType: String {
        switch self {
        case .ip, .cidr: return "ipv4-addr"
        case .domain, .sni: return "domain-name"
        case .url: return "url"
        case .ja3, .ja4: return "software"
        case .md5, .sha1, .sha256: return "file"
        }
    }

    /// The MITRE ATT&CK technique a match of this type points at. Documented in docs/SCHEMA.md:
    /// an address or domain on a list is most often command-and-control infrastructure (T1071,
    /// Application Layer Protocol); a URL is web C2 or delivery (T1071.001, Web Protocols); a TLS
    /// name or client fingerprint is an encrypted C2 channel (T1573, Encrypted Channel); a file hash
    /// is a tool brought in over the network (T1105, Ingress Tool Transfer).
    public var technique: Technique {
        switch self {
        case .ip, .cidr, .domain: return .applicationLayerProtocol
        case .url: return .webProtocols
        case .sni, .ja3, .ja4: return .encryptedChannel
        case .md5, .sha1, .sha256: return .ingressToolTransfer
        }
    }
}

/// One piece of threat intelligence: a typed value with where it came from and how far to trust it.
public struct Indicator: Sendable, Equatable {
    public var type: IndicatorType
    /// Normalised (see `Indicator.normalise`): lower-case names and hex, canonical addresses and CIDRs.
    public var value: String
    /// The feed or organisation it came from (`threat.indicator.provider`).
    public var source: String
    /// 0–100 (STIX 2.1 scale), when the feed gives one.
    public var confidence: Int?
    /// Packet time after which the indicator no longer matches. Compared with packet time, so a
    /// retro-hunt over old captures matches what was valid when the traffic happened.
    public var expires: Timestamp?
    public var description: String?
    /// A link or id for the analyst (STIX external reference, MISP event).
    public var reference: String?
    /// Where it was read (file and line; kept apart so a million entries share one path string).
    public var originFile: String
    public var originLine: Int

    public init(type: IndicatorType, value: String, source: String, confidence: Int? = nil, expires: Timestamp? = nil,
                description: String? = nil, reference: String? = nil, file: String = "", line: Int = 0) {
        self.type = type
        self.value = value
        self.source = source
        self.confidence = confidence
        self.expires = expires
        self.description = description
        self.reference = reference
        self.originFile = file
        self.originLine = line
    }

    /// `file:line`, or empty for indicators built in memory.
    public var origin: String { originFile.isEmpty ? "" : "\(originFile):\(originLine)" }

    /// Whether it may match traffic seen at `time`.
    @inlinable public func isLive(at time: Timestamp) -> Bool {
        guard let e = expires else { return true }
        return time < e
    }

    /// ECS `threat.indicator.type`, telling IPv6 from IPv4.
    public var ecsType: String {
        (type == .ip || type == .cidr) && value.contains(":") ? "ipv6-addr" : type.ecsType
    }

    /// ECS `threat.indicator.confidence` (STIX 2.1 None/Low/Med/High scale mapping).
    public var confidenceName: String {
        guard let c = confidence else { return "Not Specified" }
        switch c {
        case ..<1: return "None"
        case 1..<30: return "Low"
        case 30..<70: return "Medium"
        default: return "High"
        }
    }

    /// Validates and canonicalises `raw` for `type`; nil with a reason when it is not a valid value.
    public static func normalise(_ raw: String, as type: IndicatorType) -> Result<String, NormaliseError> {
        let s = raw.trimmingASCIIWhitespace()
        if s.isEmpty { return .failure(.init("empty value")) }
        switch type {
        case .ip:
            guard let a = IPAddress(s) else { return .failure(.init("'\(s)' is not an IP address")) }
            return .success(a.description)
        case .cidr:
            guard s.contains("/"), let n = IPNetwork(s) else { return .failure(.init("'\(s)' is not a CIDR network (e.g. 192.0.2.0/24)")) }
            return .success(n.description)
        case .domain, .sni:
            guard let d = normaliseDomain(s) else { return .failure(.init("'\(s)' is not a domain name (letters, digits, '-', '_' and dots; internationalised names in their xn-- form)")) }
            return .success(d)
        case .url:
            guard let u = normaliseURL(s) else { return .failure(.init("'\(s)' is not an http(s) URL")) }
            return .success(u)
        case .ja3, .md5: return hex(s, 32, type)
        case .sha1: return hex(s, 40, type)
        case .sha256: return hex(s, 64, type)
        case .ja4:
            // JA4: a_b_c, e.g. t13d1516h2_8daaf6152771_b0da82dd1658.
            let l = s.lowercased()
            let parts = l.split(separator: "_", omittingEmptySubsequences: false)
            guard parts.count == 3, parts[0].count == 10, let f = parts[0].first, "tqd".contains(f),
                  parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) } })
            else { return .failure(.init("'\(s)' is not a JA4 fingerprint (a_b_c, e.g. t13d1516h2_8daaf6152771_b0da82dd1658)")) }
            return .success(l)
        }
    }

    static func hex(_ s: String, _ n: Int, _ type: IndicatorType) -> Result<String, NormaliseError> {
        let l = s.lowercased()
        guard l.utf8.count == n, l.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }) else {
            return .failure(.init("'\(s)' is not a \(type.rawValue) value (\(n) hex digits)"))
        }
        return .success(l)
    }

    /// Lower case, no trailing dot, letters/digits/hyphen/underscore labels (underscores occur in real
    /// DNS names such as `_dmarc`); a leading `*.` is dropped because domain indicators match subdomains anyway.
    public static func normaliseDomain(_ s: String) -> String? {
        var d = s.lowercased()
        if d.hasPrefix("*.") { d.removeFirst(2) }
        if d.hasSuffix(".") { d.removeLast() }
        guard !d.isEmpty, d.utf8.count <= 253, !d.hasPrefix("."), !d.contains("..") else { return nil }
        for c in d.utf8 {
            let ok = (c >= 97 && c <= 122) || (c >= 48 && c <= 57) || c == 45 || c == 46 || c == 95
            if !ok { return nil }
        }
        // A bare address is an IP indicator, not a domain.
        if IPAddress(d) != nil { return nil }
        return d
    }

    /// The form URLs are compared in: scheme dropped (http and https alike), host lower case without a
    /// trailing dot or default port, fragment dropped, empty path as `/`. Path and query keep their case.
    public static func normaliseURL(_ s: String) -> String? {
        var rest = Substring(s)
        if let r = rest.range(of: "://") {
            let scheme = rest[..<r.lowerBound].lowercased()
            guard scheme == "http" || scheme == "https" else { return nil }
            rest = rest[r.upperBound...]
        }
        if let hash = rest.firstIndex(of: "#") { rest = rest[..<hash] }
        let slash = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? rest.endIndex
        var host = rest[..<slash].lowercased()
        var path = String(rest[slash...])
        if let at = host.lastIndex(of: "@") { host = String(host[host.index(after: at)...]) }
        if host.hasSuffix(":80") || host.hasSuffix(":443") { host = String(host[..<host.lastIndex(of: ":")!]) }
        if host.hasSuffix(".") { host.removeLast() }
        guard !host.isEmpty, !host.contains(" ") else { return nil }
        if path.isEmpty || path.hasPrefix("?") { path = "/" + path }
        return host + path
    }
}

public struct NormaliseError: Error, Sendable, CustomStringConvertible {
    public var description: String
    init(_ d: String) { description = d }
}

extension StringProtocol {
    func trimmingASCIIWhitespace() -> String {
        let u = Array(utf8)
        var a = 0, b = u.count
        while a < b, u[a] == 32 || u[a] == 9 || u[a] == 13 || u[a] == 10 { a += 1 }
        while b > a, u[b - 1] == 32 || u[b - 1] == 9 || u[b - 1] == 13 || u[b - 1] == 10 { b -= 1 }
        return String(decoding: u[a..<b], as: UTF8.self)
    }
}
