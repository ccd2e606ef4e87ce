import Analyzers

/// HTTP: request and response head parsing directly; the body reader (chunked, by length, until close)
/// fed whole and in fuzzer-chosen pieces, which must yield the same entity bytes; content sniffing; then
/// the analyser over a TCP conversation on 80 (heads split across segments, pipelined requests,
/// responses with bodies, hashed as files).
func fuzzHTTP(_ input: inout FuzzInput) {
    switch input.u8() % 5 {
    case 0:
        let b = input.rest()
        _ = HTTPParser.looksLikeRequest(b)
        _ = HTTPParser.request(b)
    case 1:
        let b = input.rest()
        _ = HTTPParser.looksLikeResponse(b)
        _ = HTTPParser.response(b)
    case 2:
        Conversation(.tcp, serverPort: 80).play(&input, through: PipelineSession())
    case 3:
        let mode = input.u8()
        let length = Int(input.u16())
        let piece = max(1, Int(input.u8()))
        let framing: HTTPBodyFraming = mode % 3 == 0 ? .chunked : (mode % 3 == 1 ? .length(length) : .untilClose)
        let b = input.rest()
        var whole = HTTPBodyReader(framing)
        var wholeEntity: [UInt8] = []
        let wholeProgress = whole.consume(b) { wholeEntity.append(contentsOf: $0) }
        var split = HTTPBodyReader(framing)
        var splitEntity: [UInt8] = []
        var at = 0
        var splitProgress = HTTPBodyReader.Progress.more
        while at < b.count {
            let end = min(b.count, at + piece)
            splitProgress = split.consume(UnsafeRawBufferPointer(rebasing: b[at..<end])) { splitEntity.append(contentsOf: $0) }
            if case .complete(let used) = splitProgress { splitProgress = .complete(consumed: at + used); break }
            if splitProgress == .malformed { break }
            at = end
        }
        if b.isEmpty { splitProgress = wholeProgress }
        precondition(wholeProgress == splitProgress, "body reader: \(wholeProgress) whole, \(splitProgress) split")
        if wholeProgress != .malformed { precondition(wholeEntity == splitEntity, "body reader: entity differs when split") }
    default:
        _ = FileMagic.mimeType(input.rest())
    }
}
