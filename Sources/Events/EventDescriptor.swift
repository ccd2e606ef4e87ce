/// The fixed ECS categorisation of one kind of event (`event.kind/category/type/dataset`).
///
/// Declared once as a static value by whoever emits that kind, so emitting allocates nothing for it.
public struct EventDescriptor: Sendable {
    public let kind: EventKind
    public let categories: [StaticString]
    public let types: [StaticString]
    public let dataset: StaticString
    /// The members of `event` these make, rendered once: `"kind":…,"category":[…],"type":[…],"dataset":…,"module":…`.
    let eventMembers: [UInt8]

    public init(kind: EventKind, categories: [StaticString], types: [StaticString], dataset: StaticString) {
        self.kind = kind
        self.categories = categories
        self.types = types
        self.dataset = dataset
        var w = JSONWriter(capacity: 256)
        w.beginObject()
        w.field("kind", kind.name)
        w.beginArray("category"); for c in categories { w.element(c) }; w.endArray()
        w.beginArray("type"); for t in types { w.element(t) }; w.endArray()
        w.field("dataset", dataset)
        w.field("module", ObserverInfo.product)
        w.endObject()
        eventMembers = Array(w.bytes.dropFirst().dropLast())
    }

    public static let flowEnd = EventDescriptor(kind: .event, categories: ["network"], types: ["connection", "end"], dataset: "spanwatch.flow")
    public static let flowUpdate = EventDescriptor(kind: .event, categories: ["network"], types: ["connection", "info"], dataset: "spanwatch.flow")
    public static let alert = EventDescriptor(kind: .alert, categories: ["network", "intrusion_detection"], types: ["info"], dataset: "spanwatch.alert")
    public static let stats = EventDescriptor(kind: .metric, categories: ["network"], types: ["info"], dataset: "spanwatch.stats")
    /// Sensor self-monitoring warnings (capture loss, evidence capture off), `event.dataset: spanwatch.health`.
    public static let health = EventDescriptor(kind: .event, categories: ["host"], types: ["info"], dataset: "spanwatch.health")
}
