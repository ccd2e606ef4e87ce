import Events

/// An output that takes only some datasets (`?datasets=alert,dns`): the others pass it by, uncounted.
/// The check reads the dataset literal's bytes: no string is built per event.
public final class DatasetFilterSink: EventSink {
    public let inner: any EventSink
    public let datasets: DatasetFilter
    public let name: String

    public init(_ inner: any EventSink, datasets: DatasetFilter) {
        self.inner = inner
        self.datasets = datasets
        name = "\(inner.name)?datasets=\(datasets)"
    }

    public func write(_ json: UnsafeRawBufferPointer, metadata: EventMetadata) {
        guard datasets.admits(metadata.dataset) else { return }
        inner.write(json, metadata: metadata)
    }

    public func flush() throws { try inner.flush() }
    public func flushDelivery() throws { try inner.flushDelivery() }
    public func close() throws { try inner.close() }
    public var statistics: SinkStatistics { inner.statistics }
    public var failureReason: String? { inner.failureReason }
}
