/// Every `event.dataset` the sensor writes, as a closed set: what an output's `datasets=` filter names,
/// what `Deploy/kafka-topics.sh` creates a topic for (a test checks both against the emitters' literals).
public enum EventDataset: String, CaseIterable, Sendable, Comparable {
    case flow, alert, stats, health, dns, http, file, evidence

    /// `spanwatch.flow`, … as in `event.dataset`.
    public var qualifiedName: String { "spanwatch." + rawValue }

    /// `alert` or `spanwatch.alert`.
    public init?(name: some StringProtocol) {
        let s = String(name)
        guard let d = EventDataset(rawValue: s.hasPrefix("spanwatch.") ? String(s.dropFirst(7)) : s) else { return nil }
        self = d
    }

    /// The dataset of an event's metadata, by its bytes (no string is built on the packet path).
    public init?(_ dataset: StaticString) {
        let p = UnsafeRawBufferPointer(start: dataset.utf8Start, count: dataset.utf8CodeUnitCount)
        // "spanwatch." + short name.
        guard p.count > 7, "spanwatch.".utf8.elementsEqual(UnsafeRawBufferPointer(rebasing: p[..<7])) else { return nil }
        let short = UnsafeRawBufferPointer(rebasing: p[7...])
        for d in EventDataset.allCases where d.rawValue.utf8.elementsEqual(short) {
            self = d
            return
        }
        return nil
    }

    public static func < (a: EventDataset, b: EventDataset) -> Bool { a.rawValue < b.rawValue }
}

/// The datasets one output takes (`?datasets=alert,dns` on its URL); the others pass it by.
public struct DatasetFilter: Equatable, Sendable, CustomStringConvertible {
    /// One bit per `EventDataset` case.
    var bits: UInt32

    public init(_ datasets: some Sequence<EventDataset>) {
        bits = 0
        for d in datasets { bits |= Self.bit(d) }
    }

    static func bit(_ d: EventDataset) -> UInt32 { 1 << UInt32(EventDataset.allCases.firstIndex(of: d)!) }

    public func contains(_ d: EventDataset) -> Bool { bits & Self.bit(d) != 0 }

    /// Whether an event of this dataset goes to the output (only the datasets named do).
    public func admits(_ dataset: StaticString) -> Bool {
        guard let d = EventDataset(dataset) else { return false }
        return contains(d)
    }

    public var datasets: [EventDataset] { EventDataset.allCases.filter(contains) }

    public var description: String { datasets.map(\.rawValue).joined(separator: ",") }

    /// A name in a `datasets=` list that is no dataset.
    public struct UnknownDataset: Error {
        public var name: String
    }

    /// `alert,dns,evidence` (short or `spanwatch.`-qualified names).
    public static func parse(_ text: String) throws(UnknownDataset) -> DatasetFilter {
        var out: [EventDataset] = []
        for part in text.split(separator: ",") {
            let name = part.trimmingCharacters(in: " ")
            guard let d = EventDataset(name: name) else { throw UnknownDataset(name: String(name)) }
            out.append(d)
        }
        guard !out.isEmpty else { throw UnknownDataset(name: text) }
        return DatasetFilter(out)
    }
}

extension Substring {
    fileprivate func trimmingCharacters(in c: Character) -> Substring {
        var s = self
        while s.first == c { s = s.dropFirst() }
        while s.last == c { s = s.dropLast() }
        return s
    }
}
