/// How an HTTP/1.x message body is delimited (RFC 9112 §6.3), decided from its head.
public enum HTTPBodyFraming: Sendable, Equatable {
    /// No body: a request without Content-Length or chunking, a response to HEAD, 1xx, 204, 304.
    case none
    case length(Int)
    case chunked
    /// A response without length: the body runs until the server closes the connection.
    case untilClose
}

/// Walks one message body as it streams past, byte-exact across segment boundaries, and hands the
/// entity bytes (chunk framing removed) to a callback without copying them.
///
/// Chunk-size lines and trailers are parsed a byte at a time with bounded state (a size past 2^60 or a
/// size line over 4 KiB is malformed), so a hostile peer cannot make it buffer or trap.
public struct HTTPBodyReader: Sendable {
    enum State: Sendable, Equatable {
        case length(remaining: Int)
        /// Reading a chunk-size line: the size so far, whether a digit was seen, whether past the digits
        /// (extensions), bytes of the line so far.
        case sizeLine(size: Int, digits: Bool, extensions: Bool, lineBytes: Int)
        case chunkData(remaining: Int)
        /// After a chunk's data: its CRLF (`sawCR` after the CR).
        case chunkEnd(sawCR: Bool)
        /// Trailer section after the last chunk: `lineBytes` of the current line so far.
        case trailer(lineBytes: Int)
        case untilClose
        case done
    }

    public enum Progress: Sendable, Equatable {
        /// Every byte offered was body; more is expected.
        case more
        /// The body ended after this many of the offered bytes.
        case complete(consumed: Int)
        /// The framing is broken (bad chunk size): the direction cannot be followed further.
        case malformed
    }

    var state: State

    static let maxLine = 4096
    static let maxChunk = 1 << 60

    public init(_ framing: HTTPBodyFraming) {
        switch framing {
        case .none: state = .done
        case .length(let n): state = n > 0 ? .length(remaining: n) : .done
        case .chunked: state = .sizeLine(size: 0, digits: false, extensions: false, lineBytes: 0)
        case .untilClose: state = .untilClose
        }
    }

    public var isDone: Bool { state == .done }

    /// Consumes body bytes from the front of `data`, calling `entity` with each run of entity bytes.
    public mutating func consume(_ data: UnsafeRawBufferPointer, entity: (UnsafeRawBufferPointer) -> Void) -> Progress {
        var i = 0
        let n = data.count
        while true {
            switch state {
            case .done:
                return .complete(consumed: i)
            case .untilClose:
                if i < n { entity(UnsafeRawBufferPointer(rebasing: data[i..<n])) }
                return .more
            case .length(let remaining):
                let take = min(remaining, n - i)
                if take > 0 { entity(UnsafeRawBufferPointer(rebasing: data[i..<(i + take)])) }
                i += take
                if take == remaining { state = .done; continue }
                state = .length(remaining: remaining - take)
                return .more
            case .chunkData(let remaining):
                let take = min(remaining, n - i)
                if take > 0 { entity(UnsafeRawBufferPointer(rebasing: data[i..<(i + take)])) }
                i += take
                if take == remaining { state = .chunkEnd(sawCR: false); continue }
                state = .chunkData(remaining: remaining - take)
                return .more
            case .chunkEnd(let sawCR):
                guard i < n else { return .more }
                let c = data[i]
                i += 1
                if c == 10 { state = .sizeLine(size: 0, digits: false, extensions: false, lineBytes: 0) }
                else if c == 13 && !sawCR { state = .chunkEnd(sawCR: true) }
                else { return .malformed }
            case .sizeLine(var size, var digits, var extensions, var lineBytes):
                while i < n {
                    let c = data[i]
                    i += 1
                    lineBytes += 1
                    if lineBytes > Self.maxLine { return .malformed }
                    if c == 10 {
                        guard digits else { return .malformed }
                        state = size == 0 ? .trailer(lineBytes: 0) : .chunkData(remaining: size)
                        break
                    }
                    if extensions { continue }
                    if let v = Self.hexValue(c) {
                        guard size < Self.maxChunk >> 4 else { return .malformed }
                        size = size << 4 | v
                        digits = true
                    } else if c == 59 || c == 32 || c == 9 || c == 13 {
                        // `;ext`, whitespace before it or the CR: the digits are over.
                        extensions = true
                    } else {
                        return .malformed
                    }
                }
                if case .sizeLine = state {
                    state = .sizeLine(size: size, digits: digits, extensions: extensions, lineBytes: lineBytes)
                    if i >= n { return .more }
                }
            case .trailer(var lineBytes):
                while i < n {
                    let c = data[i]
                    i += 1
                    if c == 10 {
                        if lineBytes == 0 { state = .done; break }
                        lineBytes = 0
                    } else if c != 13 || lineBytes > 0 {
                        lineBytes += 1
                        if lineBytes > Self.maxLine { return .malformed }
                    }
                }
                if case .trailer = state {
                    state = .trailer(lineBytes: lineBytes)
                    return .more
                }
            }
        }
    }

    @inline(__always) static func hexValue(_ c: UInt8) -> Int? {
        switch c {
        case 0x30...0x39: return Int(c &- 0x30)
        case 0x41...0x46: return Int(c &- 0x41 &+ 10)
        case 0x61...0x66: return Int(c &- 0x61 &+ 10)
        default: return nil
        }
    }
}
