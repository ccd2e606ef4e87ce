import PacketCore

/// One HTTP/1.x request as cross-flow detectors measure it: a keep-alive connection carries many, and
/// a beacon polling inside one connection shows only here (its flow has one start).
public struct HTTPRequestFact: Sendable, Equatable {
    public var client: IPAddress
    public var server: IPAddress
    public var serverPort: UInt16
    /// When the request head was complete.
    public var time: Timestamp
    /// The Host header, lower-cased, without port (`HTTPFacts.hostName`).
    public var host: String?
    /// Head bytes plus the body's declared length (chunked bodies: the head only).
    public var bytes: Int

    public init(client: IPAddress, server: IPAddress, serverPort: UInt16, time: Timestamp, host: String?, bytes: Int) {
        self.client = client
        self.server = server
        self.serverPort = serverPort
        self.time = time
        self.host = host
        self.bytes = bytes
    }
}

/// Receives every request head the HTTP analyser reads (the worker's host-fact publisher, when a host
/// detector reads requests). Called once per request, never per packet.
public protocol HTTPRequestObserver: AnyObject {
    func httpRequest(_ request: HTTPRequestFact)
}
