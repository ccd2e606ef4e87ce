#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// ECS `observer.*`: who saw the traffic. Filled once at start.
public struct ObserverInfo: Sendable, Equatable {
    public var name: String
    public var hostname: String
    /// Interface name for live capture, `replay` for files.
    public var ingressInterface: String
    public var version: String

    /// The product name: `observer.product`, `event.module`, `rule.ruleset`, the prefix of every `event.dataset`
    /// and the one vendor namespace of the events (the binary, package and paths keep the name `sensor`).
    public static let product = "spanwatch"
    public static let vendor = "spanwatch-project"
    public static let softwareVersion = "0.1.0"

    public init(name: String? = nil, hostname: String? = nil, ingressInterface: String = "replay", version: String = ObserverInfo.softwareVersion) {
        let host = hostname ?? ObserverInfo.systemHostname()
        self.name = name ?? host
        self.hostname = host
        self.ingressInterface = ingressInterface
        self.version = version
    }

    public static func systemHostname() -> String {
        var buf = [CChar](repeating: 0, count: 256)
        guard gethostname(&buf, buf.count - 1) == 0 else { return "localhost" }
        return String(cString: buf)
    }
}

/// The ECS version whose field set the events follow.
public enum ECS {
    public static let version: StaticString = "8.11.0"
}
