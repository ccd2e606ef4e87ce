import Analyzers

/// HTTP: request and response head parsing directly; then the analyser over a TCP conversation on 80
/// (heads split across segments, pipelined requests, responses).
func fuzzHTTP(_ input: inout FuzzInput) {
    switch input.u8() % 3 {
    case 0:
        let b = input.rest()
        _ = HTTPParser.looksLikeRequest(b)
        _ = HTTPParser.request(b)
    case 1:
        let b = input.rest()
        _ = HTTPParser.looksLikeResponse(b)
        _ = HTTPParser.response(b)
    default:
        Conversation(.tcp, serverPort: 80).play(&input, through: PipelineSession())
    }
}
