import Analyzers

/// Kerberos: the ASN.1 message reader directly; then the analyser over UDP 88 and over TCP 88
/// (length-prefixed, split across segments).
func fuzzKerberos(_ input: inout FuzzInput) {
    switch input.u8() % 3 {
    case 0: _ = Kerberos.parse(input.rest())
    case 1: Conversation(.udp, serverPort: 88).play(&input, through: PipelineSession())
    default: Conversation(.tcp, serverPort: 88).play(&input, through: PipelineSession())
    }
}
