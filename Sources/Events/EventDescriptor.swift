/// The fixed ECS categorisation of one kind of event (`event.kind/category/type/dataset`).
///
/// Declared once as a static value by whoever emits that kind, so emitting allocates nothing for it.
public struct EventDescriptor: Sendable {
    public var kind: EventKind
    public var categories: [StaticString]
    public var types: [StaticString]
    public var dataset: StaticString

    public init(kind: EventKind, categories: [StaticString], types: [StaticString], dataset: StaticString) {
        self.kind = kind
        self.categories = categories
        self.types = types
        self.dataset = dataset
    }

    public static let flowEnd = EventDescriptor(kind: .event, categories: ["network"], types: ["connection", "end"], dataset: "sensor.flow")
    public static let flowUpdate = EventDescriptor(kind: .event, categories: ["network"], types: ["connection", "info"], dataset: "sensor.flow")
    public static let alert = EventDescriptor(kind: .alert, categories: ["network", "intrusion_detection"], types: ["info"], dataset: "sensor.alert")
    public static let stats = EventDescriptor(kind: .metric, categories: ["network"], types: ["info"], dataset: "sensor.stats")
    /// Sensor self-monitoring warnings (capture loss, evidence capture off), `event.dataset: sensor.health`.
    public static let health = EventDescriptor(kind: .event, categories: ["host"], types: ["info"], dataset: "sensor.health")
}
