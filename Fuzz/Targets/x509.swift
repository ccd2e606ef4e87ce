import Analyzers

/// X.509: the DER reader over a certificate, directly (subject, issuer, serial, validity, SAN, key); or
/// the server's first flight (ServerHello, then a Certificate message carrying the input as its first
/// certificate), the way the TLS analyser meets it on a TLS ≤ 1.2 server stream.
func fuzzX509(_ input: inout FuzzInput) {
    if input.u8() & 1 == 0 {
        _ = X509Reader.parse(input.rest())
        return
    }
    let der = Array(input.take(0xFFFF))
    // ServerHello: TLS 1.2, 32 random bytes, empty session id, cipher 0x002f, null compression, no extensions.
    let helloBody: [UInt8] = [3, 3] + [UInt8](repeating: 0x42, count: 32) + [0, 0x00, 0x2F, 0]
    var handshake: [UInt8] = [2] + u24(helloBody.count) + helloBody
    let list = u24(der.count) + der
    handshake += [11] + u24(list.count + 3) + u24(list.count) + list
    // Records of at most 2^14 bytes, as a server writes them; the input's tail is appended raw after them.
    var stream: [UInt8] = []
    var i = 0
    while i < handshake.count {
        let n = min(16_384, handshake.count - i)
        stream += [0x16, 3, 3, UInt8(n >> 8), UInt8(n & 0xff)] + handshake[i..<(i + n)]
        i += n
    }
    stream += Array(input.rest())
    stream.withUnsafeBytes { s in
        if case .parsed(let flight) = TLSHandshakeParser.serverFlight(s), let cert = flight.certificate {
            _ = cert.withUnsafeBytes { X509Reader.parse($0) }
        }
    }
}

private func u24(_ v: Int) -> [UInt8] { [UInt8(v >> 16 & 0xff), UInt8(v >> 8 & 0xff), UInt8(v & 0xff)] }
