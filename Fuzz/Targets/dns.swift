import Analyzers
import PacketCore

/// DNS: the message parser and every renderer of what it validated, directly; then the analyser (and the
/// tunnelling detector behind it) over UDP datagrams and over TCP, where length-prefixed messages split
/// across segments take the stream path.
func fuzzDNS(_ input: inout FuzzInput) {
    switch input.u8() % 3 {
    case 0:
        let bytes = input.rest()
        guard let m = DNSMessage.parse(bytes) else { return }
        var out: [UInt8] = []
        for q in m.questions { _ = DNSText.appendName(bytes, at: q.nameOffset, to: &out) }
        for r in m.records {
            _ = DNSText.appendName(bytes, at: r.nameOffset, to: &out)
            DNSText.appendRData(r, in: bytes, to: &out)
        }
        _ = m.responseCode
    case 1: Conversation(.udp, serverPort: 53).play(&input, through: PipelineSession())
    default: Conversation(.tcp, serverPort: 53).play(&input, through: PipelineSession())
    }
}
