/// Direction of a connection relative to the home networks (ECS `network.direction`). The raw value is
/// what a rule's direction mask is tested with: 2 when the source is a home address, plus 1 when the
/// destination is. Cases in the order configuration errors list them.
public enum NetworkDirection: UInt8, CaseIterable, Sendable {
    case outbound = 2
    case `internal` = 3
    case external = 0
    case inbound = 1

    @inlinable public init(_ homes: NetworkSet, from source: IPAddress, to destination: IPAddress) {
        switch (homes.contains(source), homes.contains(destination)) {
        case (true, true): self = .internal
        case (true, false): self = .outbound
        case (false, true): self = .inbound
        case (false, false): self = .external
        }
    }

    /// The ECS value.
    public var name: StaticString {
        switch self {
        case .outbound: return "outbound"
        case .internal: return "internal"
        case .external: return "external"
        case .inbound: return "inbound"
        }
    }

    /// The direction an ECS value names (as rules files write it).
    public init?(name: String) {
        guard let d = Self.allCases.first(where: { "\($0.name)" == name }) else { return nil }
        self = d
    }
}
