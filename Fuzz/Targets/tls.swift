import Analyzers

/// TLS: ClientHello and ServerHello parsing with every fingerprint computed from what parsed, directly;
/// then the analyser over a TCP conversation on 443 (records split across segments, out of order).
func fuzzTLS(_ input: inout FuzzInput) {
    switch input.u8() % 3 {
    case 0:
        _ = TLSHandshakeParser.looksLikeHandshakeRecord(input.bytes)
        if case .parsed(let h) = TLSHandshakeParser.clientHello(input.rest()) {
            _ = TLSFingerprint.ja3(h)
            _ = TLSFingerprint.ja4(h, transport: .tcp)
            _ = TLSFingerprint.ja4(h, transport: .quic)
            _ = TLSFingerprint.ja4Raw(h)
            _ = TLSFingerprint.versionName(h.highestVersion)
            for c in h.cipherSuites { _ = TLSFingerprint.cipherName(c) }
        }
    case 1:
        if case .parsed(let h) = TLSHandshakeParser.serverHello(input.rest()) {
            _ = TLSFingerprint.ja3s(h)
            _ = TLSFingerprint.versionName(h.version)
            _ = TLSFingerprint.cipherName(h.cipherSuite)
        }
    default:
        Conversation(.tcp, serverPort: 443).play(&input, through: PipelineSession())
    }
}
