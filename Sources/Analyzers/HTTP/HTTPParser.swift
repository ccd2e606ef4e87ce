#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import PacketCore

/// The request line and the headers detectors and analysts use, from an HTTP/1.x request head.
public struct HTTPRequestHead: Sendable, Equatable {
    public var method: [UInt8] = []
    /// The request target as sent (`url.original`).
    public var target: [UInt8] = []
    /// `1.0`, `1.1`.
    public var version: [UInt8] = []
    public var host: [UInt8]?
    public var userAgent: [UInt8]?
    public var referrer: [UInt8]?
    public var contentType: [UInt8]?
    public var contentLength: Int?
    /// `Transfer-Encoding` ends in `chunked`.
    public var chunked = false
    public var contentEncoding: [UInt8]?
    /// Bytes of the head, blank line included: where the body starts.
    public var headLength = 0
    public init() {}

    /// How the request's body is delimited: chunked, by Content-Length, or absent (RFC 9112 §6.3).
    public var bodyFraming: HTTPBodyFraming {
        if chunked { return .chunked }
        if let n = contentLength, n > 0 { return .length(n) }
        return .none
    }
}

/// The status line and a few headers of an HTTP/1.x response head.
public struct HTTPResponseHead: Sendable, Equatable {
    public var version: [UInt8] = []
    public var status: Int = 0
    public var contentType: [UInt8]?
    public var contentLength: Int?
    public var server: [UInt8]?
    public var chunked = false
    public var contentEncoding: [UInt8]?
    public var headLength = 0
    public init() {}

    /// How the response's body is delimited, given whether it answers a HEAD request (RFC 9112 §6.3):
    /// none for HEAD, 1xx, 204 and 304; else chunked, Content-Length, or until the connection closes.
    public func bodyFraming(answeringHead: Bool) -> HTTPBodyFraming {
        if answeringHead || status < 200 || status == 204 || status == 304 { return .none }
        if chunked { return .chunked }
        if let n = contentLength { return n > 0 ? .length(n) : .none }
        return .untilClose
    }
}

/// An HTTP/1.x head parser over untrusted bytes (requests and responses), bounded and allocation-light.
public enum HTTPParser {
    public enum Outcome<T> { case parsed(T), needMore, invalid }

    /// Largest head we wait for before giving up (Apache's default limit is 8 kB per line, 100 lines).
    public static let maxHead = 16_384

    /// Request methods recognised at the start of a stream (RFC 9110 plus WebDAV and RTSP-free extras).
    static let methods: [[UInt8]] = ["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "CONNECT", "TRACE", "PATCH",
                                     "PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "SEARCH",
                                     "REPORT", "RPC_IN_DATA", "RPC_OUT_DATA"].map { Array($0.utf8) }

    /// Whether `b` starts like an HTTP request (a known method followed by a space), for identification.
    public static func looksLikeRequest(_ b: UnsafeRawBufferPointer) -> Bool {
        guard b.count >= 4 else { return false }
        outer: for m in methods where b.count > m.count {
            for i in 0..<m.count where b[i] != m[i] { continue outer }
            if b[m.count] == 0x20 { return true }
        }
        return false
    }

    /// Whether `b` starts like an HTTP/1.x status line.
    public static func looksLikeResponse(_ b: UnsafeRawBufferPointer) -> Bool {
        guard b.count >= 12 else { return false }
        let p: [UInt8] = Array("HTTP/1.".utf8)
        for i in 0..<p.count where b[i] != p[i] { return false }
        return isDigit(b[7]) && b[8] == 0x20 && isDigit(b[9]) && isDigit(b[10]) && isDigit(b[11])
    }

    @inline(__always) static func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }

    /// Finds the end of the head (after the blank line), accepting CRLF or bare LF.
    static func headEnd(_ b: UnsafeRawBufferPointer) -> Int? {
        var i = 0
        let n = min(b.count, maxHead)
        while let lf = index(of: 10, in: b, from: i, to: n) {
            if lf + 1 < b.count && b[lf + 1] == 10 { return lf + 2 }
            if lf + 2 < b.count && b[lf + 1] == 13 && b[lf + 2] == 10 { return lf + 3 }
            i = lf + 1
        }
        return nil
    }

    /// The first position of `byte` in `b[from..<to]` (memchr: heads are scanned line by line, not byte by byte).
    @inline(__always)
    static func index(of byte: UInt8, in b: UnsafeRawBufferPointer, from: Int, to: Int) -> Int? {
        guard from < to, to <= b.count, let base = b.baseAddress,
              let hit = memchr(base + from, Int32(byte), to - from) else { return nil }
        return base.distance(to: UnsafeRawPointer(hit))
    }

    /// Splits the head into lines (without CR/LF) and calls `body` with each.
    static func lines(_ head: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) -> Bool) {
        var start = 0
        while let i = index(of: 10, in: head, from: start, to: head.count) {
            var end = i
            if end > start && head[end - 1] == 13 { end -= 1 }
            if end == start { return }
            if !body(UnsafeRawBufferPointer(rebasing: head[start..<end])) { return }
            start = i + 1
        }
    }

    /// Calls `body(name, value)` for a header line; the name is compared case-insensitively by callers.
    static func header(_ line: UnsafeRawBufferPointer) -> (UnsafeRawBufferPointer, UnsafeRawBufferPointer)? {
        guard let colon = index(of: 58, in: line, from: 0, to: line.count), colon > 0 else { return nil }
        var v = colon + 1
        while v < line.count && (line[v] == 32 || line[v] == 9) { v += 1 }
        var e = line.count
        while e > v && (line[e - 1] == 32 || line[e - 1] == 9) { e -= 1 }
        return (UnsafeRawBufferPointer(rebasing: line[..<colon]), UnsafeRawBufferPointer(rebasing: line[v..<e]))
    }

    static func nameIs(_ name: UnsafeRawBufferPointer, _ lower: StaticString) -> Bool {
        guard name.count == lower.utf8CodeUnitCount else { return false }
        return lower.withUTF8Buffer { l in
            for i in 0..<l.count {
                var c = name[i]
                if c >= 0x41 && c <= 0x5a { c |= 0x20 }
                if c != l[i] { return false }
            }
            return true
        }
    }

    /// Whether a Transfer-Encoding value's last coding is `chunked` (the only one that frames the body).
    static func endsWithChunked(_ v: UnsafeRawBufferPointer) -> Bool {
        var e = v.count
        while e > 0 && (v[e - 1] == 32 || v[e - 1] == 9 || v[e - 1] == 44) { e -= 1 }
        guard e >= 7 else { return false }
        let tail = UnsafeRawBufferPointer(rebasing: v[(e - 7)..<e])
        guard nameIs(tail, "chunked") else { return false }
        return e == 7 || v[e - 8] == 32 || v[e - 8] == 9 || v[e - 8] == 44
    }

    static func decimal(_ v: UnsafeRawBufferPointer) -> Int? {
        guard !v.isEmpty, v.count <= 18 else { return nil }
        var n = 0
        for c in v { guard isDigit(c) else { return nil }; n = n * 10 + Int(c - 48) }
        return n
    }

    /// Parses a request head at the start of `b`.
    public static func request(_ b: UnsafeRawBufferPointer) -> Outcome<HTTPRequestHead> {
        guard looksLikeRequest(b) || (b.count < 8 && !b.isEmpty && b.allSatisfy { $0 >= 0x41 && $0 <= 0x5a }) else { return .invalid }
        guard let end = headEnd(b) else { return b.count >= maxHead ? .invalid : .needMore }
        let head = UnsafeRawBufferPointer(rebasing: b[..<end])
        var r = HTTPRequestHead()
        var first = true
        var ok = true
        lines(head) { line in
            if first {
                first = false
                // METHOD SP target SP HTTP/x.y
                guard let sp1 = line.firstIndex(of: 32) else { ok = false; return false }
                let rest = UnsafeRawBufferPointer(rebasing: line[(sp1 + 1)...])
                guard let sp2 = rest.lastIndex(of: 32), sp2 > 0 else { ok = false; return false }
                let proto = UnsafeRawBufferPointer(rebasing: rest[(sp2 + 1)...])
                guard proto.count >= 8, proto.starts(with: Array("HTTP/".utf8)) else { ok = false; return false }
                r.method = Array(line[..<sp1])
                r.target = Array(rest[..<sp2])
                r.version = Array(proto[5...])
                return true
            }
            guard let (name, value) = header(line) else { return true }
            if nameIs(name, "host") { if r.host == nil { r.host = Array(value) } }
            else if nameIs(name, "user-agent") { if r.userAgent == nil { r.userAgent = Array(value) } }
            else if nameIs(name, "referer") { if r.referrer == nil { r.referrer = Array(value) } }
            else if nameIs(name, "content-type") { if r.contentType == nil { r.contentType = Array(value) } }
            else if nameIs(name, "content-length") { r.contentLength = decimal(value) }
            else if nameIs(name, "transfer-encoding") { r.chunked = endsWithChunked(value) }
            else if nameIs(name, "content-encoding") { if r.contentEncoding == nil { r.contentEncoding = Array(value) } }
            return true
        }
        r.headLength = end
        return ok && !first ? .parsed(r) : .invalid
    }

    /// Parses a response head at the start of `b`.
    public static func response(_ b: UnsafeRawBufferPointer) -> Outcome<HTTPResponseHead> {
        if b.count < 12 {
            let p: [UInt8] = Array("HTTP/1.".utf8)
            for i in 0..<min(b.count, p.count) where b[i] != p[i] { return .invalid }
            return .needMore
        }
        guard looksLikeResponse(b) else { return .invalid }
        guard let end = headEnd(b) else { return b.count >= maxHead ? .invalid : .needMore }
        let head = UnsafeRawBufferPointer(rebasing: b[..<end])
        var r = HTTPResponseHead()
        var first = true
        lines(head) { line in
            if first {
                first = false
                r.version = Array(line[5..<8])
                r.status = Int(line[9] - 48) * 100 + Int(line[10] - 48) * 10 + Int(line[11] - 48)
                return true
            }
            guard let (name, value) = header(line) else { return true }
            if nameIs(name, "content-type") { if r.contentType == nil { r.contentType = Array(value) } }
            else if nameIs(name, "content-length") { r.contentLength = decimal(value) }
            else if nameIs(name, "server") { if r.server == nil { r.server = Array(value) } }
            else if nameIs(name, "transfer-encoding") { r.chunked = endsWithChunked(value) }
            else if nameIs(name, "content-encoding") { if r.contentEncoding == nil { r.contentEncoding = Array(value) } }
            return true
        }
        r.headLength = end
        return .parsed(r)
    }
}
