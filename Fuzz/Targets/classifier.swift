import Analyzers

/// Content-based protocol identification: every classifier directly (first client bytes, server
/// greetings, FTP/SMTP disambiguation, datagrams on fuzzer-chosen ports); then the protocol identifier
/// (and the passive FTP/SIP port announcements it scans for) over a conversation on a fuzzer-chosen port.
func fuzzClassifier(_ input: inout FuzzInput) {
    let mode = input.u8()
    switch mode % 3 {
    case 0:
        let sport = input.u16(), dport = input.u16()
        let b = input.rest()
        _ = ContentClassifier.classifyClient(b)
        _ = ContentClassifier.classifyServerGreeting(b)
        _ = ContentClassifier.resolveFTPOrSMTP(client: b)
        _ = ContentClassifier.classifyDatagram(b, sourcePort: sport, destinationPort: dport)
        _ = ContentClassifier.isDNSMessage(b)
        _ = ContentClassifier.isoTransportApplication(b)
    case 1:
        Conversation(.tcp, serverPort: input.u16()).play(&input, through: PipelineSession())
    default:
        Conversation(.udp, serverPort: input.u16()).play(&input, through: PipelineSession())
    }
}
