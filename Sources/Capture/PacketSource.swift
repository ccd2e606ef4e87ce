import PacketCore

/// One captured frame as libpcap hands it over: a view into libpcap's own buffer, valid until the next
/// call on the same source. Nothing is copied.
public struct RawPacket {
    public var timestamp: Timestamp
    public var capturedLength: Int
    public var wireLength: Int
    public var linkType: LinkType
    public var bytes: UnsafeRawBufferPointer

    public init(timestamp: Timestamp, capturedLength: Int, wireLength: Int, linkType: LinkType, bytes: UnsafeRawBufferPointer) {
        self.timestamp = timestamp
        self.capturedLength = capturedLength
        self.wireLength = wireLength
        self.linkType = linkType
        self.bytes = bytes
    }
}

/// A problem with an input. Opening errors are fatal for that input; read errors end it where they occur
/// and are reported with the packet number, after every packet before them was processed.
public struct CaptureError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: Sendable, Equatable { case open, filter, read }
    public var kind: Kind
    public var input: String
    public var message: String
    /// Packets read from this input before the error.
    public var packetsBefore: UInt64

    public init(kind: Kind, input: String, message: String, packetsBefore: UInt64 = 0) {
        self.kind = kind
        self.input = input
        self.message = message
        self.packetsBefore = packetsBefore
    }

    public var description: String {
        switch kind {
        case .open: return "\(input): cannot read capture: \(message)"
        case .filter: return "\(input): bad BPF filter: \(message)"
        case .read: return "\(input): read error after packet \(packetsBefore): \(message)"
        }
    }
}

/// Anything that yields packets: an offline file, several files merged, a live interface.
public protocol PacketSource: AnyObject {
    /// The next packet, or nil at the end. The packet's bytes stay valid until the next call.
    func next() throws(CaptureError) -> RawPacket?
    /// Makes a blocked or looping `next` return nil soon (signal handlers, shutdown). Thread-safe.
    func stop()
    /// Like `next`, but a live source may come back with `.idle` when its wait timed out with no traffic,
    /// so the worker can do its periodic work (statistics, flushing, idle flow expiry) on a quiet link.
    /// Files never idle: the default is `next()`.
    func read() throws(CaptureError) -> SourceRead
}

/// What one read from a source gave.
public enum SourceRead {
    case packet(RawPacket)
    /// Nothing arrived within the source's wait; not the end.
    case idle
    case end
}

extension PacketSource {
    public func read() throws(CaptureError) -> SourceRead {
        if let p = try next() { return .packet(p) }
        return .end
    }
}
