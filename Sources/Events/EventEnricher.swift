import PacketCore

/// Adds what is known about an address (GeoIP location, autonomous system) inside the `source` or
/// `destination` object the emitter is writing.
///
/// The seam between events and enrichment: `EventEmitter` holds one, injected at construction, and
/// calls it right after writing an `ip` field, so the enricher writes `geo` and `as` next to it. One
/// enricher per emitter (per pipeline worker), so an implementation may keep an unlocked cache.
public protocol EventEnricher: AnyObject {
    /// Writes members such as `"geo":{…},"as":{…}` into the open object; nothing when nothing is known.
    func enrich(_ address: IPAddress, into writer: inout JSONWriter)
}

extension JSONWriter {
    /// Appends pre-rendered object members (`"k":v,"k2":v2`) to the open object, with the separator
    /// before them handled. For cached enrichment, rendered once and reused for every event.
    public mutating func appendMembers(_ raw: UnsafeRawBufferPointer) {
        guard raw.count > 0 else { return }
        separator()
        append(bytes: raw)
    }
}
