import PacketCore

/// The server's first flight up to its certificate (TLS ≤ 1.2), for `tls.server.x509.*`.
public struct ServerFlight: Sendable {
    public var hello: ServerHello
    /// The DER of the first certificate of the Certificate message, when the server sent one.
    public var certificate: [UInt8]?
    /// A Certificate message whose list did not parse.
    public var certificateMalformed = false
}

extension TLSHandshakeParser {
    /// Reads the server's handshake records from the start of its stream: the ServerHello and, for
    /// TLS ≤ 1.2, the Certificate message after it. TLS 1.3 encrypts everything after the ServerHello
    /// (its certificate is not on the wire in clear), so its flight ends there; so does a flight whose
    /// next message is not a Certificate (anonymous or PSK suites), or whose handshake records are
    /// followed by another record type (a resumed session's ChangeCipherSpec).
    public static func serverFlight(_ stream: UnsafeRawBufferPointer) -> Outcome<ServerFlight> {
        var handshake: [UInt8] = []
        var pos = 0
        var ended = false
        while let header = ByteCursor(stream).slice(at: pos, count: 5) {
            guard header[1] == 3 else { return .invalid }
            let length = Int(header[3]) << 8 | Int(header[4])
            guard length <= maxRecord else { return .invalid }
            guard header[0] == 0x16 else { ended = true; break }
            guard let fragment = ByteCursor(stream).slice(at: pos + 5, count: length) else { break }
            handshake.append(contentsOf: fragment)
            pos += 5 + length
        }
        let incomplete: Outcome<ServerFlight> = ended ? .invalid : .needMore(needed: 0)
        return handshake.withUnsafeBytes { h -> Outcome<ServerFlight> in
            var m = ByteCursor(h)
            guard let type = m.u8(), let helloLength = m.u24() else { return incomplete }
            guard type == 2 else { return .invalid }
            guard let body = m.take(helloLength) else { return incomplete }
            guard let hello = parseServerHelloBody(body) else { return .invalid }
            var flight = ServerFlight(hello: hello)
            if hello.version >= 0x0304 || hello.selectedVersion != nil { return .parsed(flight) }
            guard let next = m.u8(), let length = m.u24() else { return ended ? .parsed(flight) : .needMore(needed: 0) }
            guard next == 11 else { return .parsed(flight) }
            guard let message = m.take(length) else {
                if ended { flight.certificateMalformed = true; return .parsed(flight) }
                return .needMore(needed: 0)
            }
            var list = ByteCursor(message)
            if let listLength = list.u24(), let certificates = list.take(listLength) {
                var c = ByteCursor(certificates)
                if let n = c.u24(), let der = c.take(n) { flight.certificate = Array(der) }
            }
            if flight.certificate == nil { flight.certificateMalformed = true }
            return .parsed(flight)
        }
    }
}

extension ByteCursor {
    /// A 24-bit big-endian length (TLS handshake and certificate lengths).
    mutating func u24() -> Int? {
        guard let a = u8(), let b = u8(), let c = u8() else { return nil }
        return Int(a) << 16 | Int(b) << 8 | Int(c)
    }
}
