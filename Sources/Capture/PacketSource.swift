import CPcap
import PacketCore

/// One captured frame as libpcap hands it over: a view into libpcap's own buffer, valid until the next
/// call on the same source. Nothing is copied.
public struct RawPacket {
    /// Always within `Timestamp.validRange`.
    public private(set) var timestamp: Timestamp
    /// The record's own time was outside `Timestamp.validRange`: `timestamp` is then the epoch, and the
    /// pipeline stamps the packet with its packet clock and counts it.
    public private(set) var timestampOutOfRange: Bool
    public var capturedLength: Int
    public var wireLength: Int
    public var linkType: LinkType
    public var bytes: UnsafeRawBufferPointer

    /// A packet with a time already computed (tests, tools): checked against `Timestamp.validRange` too.
    public init(timestamp: Timestamp, capturedLength: Int, wireLength: Int, linkType: LinkType, bytes: UnsafeRawBufferPointer,
                timestampOutOfRange: Bool = false) {
        let valid = !timestampOutOfRange && Timestamp.validRange.contains(timestamp.nanoseconds)
        self.timestamp = valid ? timestamp : .zero
        self.timestampOutOfRange = !valid
        self.capturedLength = capturedLength
        self.wireLength = wireLength
        self.linkType = linkType
        self.bytes = bytes
    }

    /// A view of one libpcap record, its time checked against `Timestamp.validRange` (the one place
    /// packet times enter the sensor, offline and live). `fractionUnit` is the nanoseconds in one unit
    /// of `ts.tv_usec`: 1 when the handle has nanosecond precision, 1000 when it has microseconds.
    /// `unsignedSeconds`: the record comes from a classic pcap file, whose seconds field is unsigned 32-bit
    /// (to 2106) but reaches us through libpcap as signed, negative past January 2038 (Wireshark reads it
    /// unsigned, as the format says).
    @inlinable
    public init(header: UnsafePointer<pcap_pkthdr>, data: UnsafePointer<UInt8>, linkType: LinkType, fractionUnit: Int64,
                unsignedSeconds: Bool = false) {
        let h = header.pointee
        let caplen = Int(h.caplen)
        var seconds = Int64(h.ts.tv_sec)
        if unsignedSeconds && seconds < 0 && seconds >= Int64(Int32.min) { seconds &+= 1 << 32 }
        let time = Timestamp(captureSeconds: seconds, fraction: Int64(h.ts.tv_usec), fractionUnit: fractionUnit)
        self.init(timestamp: time ?? .zero, capturedLength: caplen, wireLength: max(Int(h.len), caplen), linkType: linkType,
                  bytes: UnsafeRawBufferPointer(start: data, count: caplen), timestampOutOfRange: time == nil)
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
        case .filter: return "bad BPF filter: \(message) (compiled for the link type of \(input))"
        case .read: return "\(input): read error after packet \(packetsBefore): \(message)"
        }
    }
}

/// Anything that yields packets: an offline file, several files merged, a live interface.
public protocol PacketSource: AnyObject {
    /// The next packet, or nil at the end. The packet's bytes stay valid until the next call.
    func next() throws(CaptureError) -> RawPacket?
    /// Hands up to `maxPackets` packets to `consumer` (each valid only during its call) and returns how many;
    /// 0 means the end. Sources backed by `pcap_dispatch` deliver a whole batch from libpcap's buffer
    /// without a call per packet; the default goes through `next()`.
    func dispatch(maxPackets: Int, to consumer: PacketConsumer) throws(CaptureError) -> Int
    /// Makes a blocked or looping `next` return nil soon (signal handlers, shutdown). Thread-safe.
    func stop()
    /// Like `dispatch`, but a live source may come back `.idle` when its wait timed out with no traffic,
    /// so the worker can do its periodic work (statistics, flushing, idle flow expiry) on a quiet link.
    /// Files never idle: the default is `dispatch`.
    func dispatchOrIdle(maxPackets: Int, to consumer: PacketConsumer) throws(CaptureError) -> DispatchResult
}

/// What one `dispatchOrIdle` gave.
public enum DispatchResult: Equatable {
    case delivered(Int)
    /// Nothing arrived within the source's wait; not the end.
    case idle
    case end
}

extension PacketSource {
    public func dispatchOrIdle(maxPackets: Int, to consumer: PacketConsumer) throws(CaptureError) -> DispatchResult {
        let n = try dispatch(maxPackets: maxPackets, to: consumer)
        return n > 0 ? .delivered(n) : .end
    }
}

/// Whoever processes packets (a worker's pipeline).
///
/// A base class rather than a protocol on purpose: libpcap's batch callback is C and reaches the consumer
/// through one unretained pointer; with a class that is a plain virtual call, while calling through a
/// protocol existential stored in memory costs a retain and a release per packet (measured: ~5% of the
/// whole pipeline).
open class PacketConsumer {
    public init() {}
    /// Processes one packet; its bytes are valid only during the call.
    open func consume(_ packet: RawPacket) {}
}

extension PacketSource {
    public func dispatch(maxPackets: Int, to consumer: PacketConsumer) throws(CaptureError) -> Int {
        var n = 0
        while n < maxPackets, let p = try next() {
            consumer.consume(p)
            n += 1
        }
        return n
    }
}

/// The libpcap the process runs with (`sensor --version`).
public enum PcapLibrary {
    /// As libpcap words it, e.g. "libpcap version 1.10.3 (with TPACKET_V3)".
    public static var version: String { String(cString: pcap_lib_version()) }
}
