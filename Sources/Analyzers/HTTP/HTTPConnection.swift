import Events
import PacketCore

/// A request waiting for its response (pipelined requests queue up in order).
struct HTTPPendingRequest {
    var head: HTTPRequestHead
    var time: Timestamp
    /// Bytes charged to the parser budget while it waits.
    var charged: Int
    /// The request body, when it had one and files are hashed.
    var body: FileDigests?
}

/// One direction of an HTTP connection: a head being gathered, or a body being walked.
struct HTTPDirectionState {
    /// Bytes of a head split over segments (bounded by `HTTPParser.maxHead` and the parser budget).
    var partial: ParserBuffer?
    /// The body of the current message, when one is being read.
    var body: HTTPBodyReader?
    /// Its digests, when files are hashed.
    var file: FileHasher?
    /// Parsing of this direction ended (malformed, tunnel, budget).
    var stopped = false
    /// After a gap: bytes are skipped until a segment starts with a head.
    var resync = false
}

/// The per-flow state of an HTTP connection: both directions' parse positions, the requests waiting for
/// responses, and the response whose body is being read. A class so the digest states inside are
/// updated in place (a copy would make swift-crypto copy them on every update).
final class HTTPConnection {
    let generation: UInt32
    var orig = HTTPDirectionState()
    var resp = HTTPDirectionState()
    /// Requests sent and not yet answered, oldest first (at most `HTTPAnalyzer.maxPending`).
    var pending: [HTTPPendingRequest] = []
    /// The request whose body is being read (it joins `pending` once the body is done).
    var requestInBody: HTTPPendingRequest?
    /// A response already answered `requestInBody` (sent before the request body was done).
    var requestAnswered = false
    /// The response whose body is being read, with the request it answers.
    var response: HTTPResponseHead?
    var answering: HTTPPendingRequest?
    var responseTime = Timestamp(nanoseconds: 0)
    /// Bytes of files hashed on this flow (for the per-flow cap).
    var hashedBytes = 0
    /// Bytes of the budget this connection holds for itself.
    let charged: Int

    init(generation: UInt32, charged: Int) {
        self.generation = generation
        self.charged = charged
    }
}
