import PacketCore

/// A datagram from a UDP flow's originator after at least `gap` of its silence: one request of a client
/// that polls from a fixed source port. Its polls share one flow (the UDP idle timeout is 60 s), so the
/// flow's start alone would make one start of many; the worker's host-fact tap reports each later one
/// (at most one a second per flow).
public struct UDPRequestFact: Sendable, Equatable {
    /// Silence of the originator after which its next datagram is a new request (the beacon's default
    /// merge window: starts closer than that are one start anyway).
    public static let gap = Timestamp.Duration.seconds(1)

    public var client: IPAddress
    public var clientPort: UInt16
    public var server: IPAddress
    public var serverPort: UInt16
    /// The flow's first packet: with `clientPort`, which flow's end this request belongs to.
    public var flowStart: Timestamp
    public var time: Timestamp
    /// Wire bytes of the datagram.
    public var bytes: Int
    /// The SNI of the flow's ClientHello read so far (QUIC's Initial), as sent: the name its flow's end
    /// carries too, so the request lands in the same (source, name) pair and under the same allowlist.
    public var serverName: String?

    public init(client: IPAddress, clientPort: UInt16, server: IPAddress, serverPort: UInt16, flowStart: Timestamp, time: Timestamp, bytes: Int,
                serverName: String? = nil) {
        self.client = client
        self.clientPort = clientPort
        self.server = server
        self.serverPort = serverPort
        self.flowStart = flowStart
        self.time = time
        self.bytes = bytes
        self.serverName = serverName
    }
}
