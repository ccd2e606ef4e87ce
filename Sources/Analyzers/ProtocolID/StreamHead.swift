/// The start of one direction of a TCP stream, gathered until a parser has what it needs.
///
/// The common case costs nothing: when the first in-order segment holds the whole message, the parser
/// runs straight over the reassembler's bytes (libpcap's buffer) and nothing is copied. Only a message
/// split over segments is copied, into a `ParserBuffer` that grows with what it holds, bounded by `limit`
/// per direction and by the worker's `ParserMemoryBudget`; past either the parse gives up.
public struct StreamHead {
    public enum Step {
        case done, needMore, invalid
        /// The worker's parser budget could not hold the partial message (counted by the budget).
        case refused
    }

    var buffer: ParserBuffer?

    public init() {}

    /// Offers `data` (the next in-order bytes) to `parse`, which sees everything gathered so far.
    public mutating func feed(_ data: UnsafeRawBufferPointer, limit: Int, budget: ParserMemoryBudget,
                              _ parse: (UnsafeRawBufferPointer) -> Step) -> Step {
        guard var b = buffer else {
            let step = parse(data)
            if step == .needMore {
                guard data.count < limit else { return .invalid }
                guard let b = ParserBuffer(budget: budget, holding: data) else { return .refused }
                buffer = b
            }
            return step
        }
        buffer = nil
        let room = limit - b.count
        guard room > 0 else { return .invalid }
        guard b.append(UnsafeRawBufferPointer(rebasing: data[..<min(data.count, room)])) else { return .refused }
        let step = b.withUnsafeBytes { parse($0) }
        if step != .needMore { return step }
        // Still incomplete with the bound reached: it never will be.
        if b.count >= limit { return .invalid }
        buffer = b
        return .needMore
    }
}
