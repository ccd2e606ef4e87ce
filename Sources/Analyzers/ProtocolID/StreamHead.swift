/// The start of one direction of a TCP stream, gathered until a parser has what it needs.
///
/// The common case costs nothing: when the first in-order segment holds the whole message, the parser
/// runs straight over the reassembler's bytes (libpcap's buffer) and nothing is copied. Only a message
/// split over segments is copied, into a buffer bounded by `limit`; past it the parse gives up.
public struct StreamHead {
    public enum Step { case done, needMore, invalid }

    var buffer: [UInt8] = []

    public init() {}

    /// Offers `data` (the next in-order bytes) to `parse`, which sees everything gathered so far.
    public mutating func feed(_ data: UnsafeRawBufferPointer, limit: Int, _ parse: (UnsafeRawBufferPointer) -> Step) -> Step {
        if buffer.isEmpty {
            let step = parse(data)
            if step == .needMore {
                guard data.count <= limit else { return .invalid }
                buffer.reserveCapacity(min(limit, max(2048, data.count * 2)))
                buffer.append(contentsOf: data)
            }
            return step
        }
        let room = limit - buffer.count
        guard room > 0 else { buffer = []; return .invalid }
        buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: data[..<min(data.count, room)]))
        let step = buffer.withUnsafeBytes { parse($0) }
        if step != .needMore || buffer.count >= limit { buffer = [] }
        return step == .needMore && buffer.isEmpty ? .invalid : step
    }
}
