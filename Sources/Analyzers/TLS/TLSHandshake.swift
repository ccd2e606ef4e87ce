import PacketCore

/// What a TLS ClientHello says about the client, as JA3/JA4 and ECS `tls.client.*` need it.
///
/// Lists keep wire order and include GREASE values (RFC 8701); the fingerprints drop GREASE themselves,
/// as their specifications say, so the raw facts stay available.
public struct ClientHello: Sendable, Equatable {
    /// `legacy_version` of the ClientHello body (what JA3 uses).
    public var legacyVersion: UInt16 = 0
    public var cipherSuites: [UInt16] = []
    /// Extension types in wire order.
    public var extensions: [UInt16] = []
    public var serverName: [UInt8]?
    /// ALPN protocol names in wire order.
    public var alpn: [[UInt8]] = []
    public var supportedVersions: [UInt16] = []
    public var supportedGroups: [UInt16] = []
    public var ecPointFormats: [UInt8] = []
    public var signatureAlgorithms: [UInt16] = []

    public init() {}

    /// RFC 8701 GREASE values: 0x?a?a with both bytes equal.
    @inlinable public static func isGREASE(_ v: UInt16) -> Bool { v & 0x0f0f == 0x0a0a && v >> 8 == v & 0xff }

    /// The highest offered version, from supported_versions when present (GREASE ignored).
    public var highestVersion: UInt16 {
        var highest: UInt16?
        for v in supportedVersions where !ClientHello.isGREASE(v) { highest = max(highest ?? v, v) }
        return highest ?? legacyVersion
    }
}

/// What a TLS ServerHello says about the negotiated session.
public struct ServerHello: Sendable, Equatable {
    public var legacyVersion: UInt16 = 0
    /// supported_versions' selected version (TLS 1.3), if the extension is there.
    public var selectedVersion: UInt16?
    public var cipherSuite: UInt16 = 0
    public var extensions: [UInt16] = []
    /// ALPN protocol the server chose.
    public var alpn: [UInt8]?

    public init() {}

    /// The version actually negotiated.
    public var version: UInt16 { selectedVersion ?? legacyVersion }
}

/// Parses TLS handshake messages from the bytes of a TLS stream (records included).
///
/// Hostile input: every read goes through `ByteCursor`, lengths are checked against what is there
/// and against their enclosing structure, and a parse never traps. Incomplete input is `.needMore`
/// (with the number of stream bytes the first handshake message needs, so callers can bound buffering).
public enum TLSHandshakeParser {
    public enum Outcome<T> {
        case parsed(T)
        /// The first handshake message is not complete yet; `needed` stream bytes hold it (0 if unknown yet).
        case needMore(needed: Int)
        /// Not TLS, or not the expected message.
        case invalid
    }

    /// Largest TLS record fragment we accept (2^14 plus expansion allowance for protected records).
    static let maxRecord = 18_432
    /// Largest first handshake message we assemble (ClientHellos with post-quantum key shares are ~2 kB;
    /// anything beyond 64 kB is not a handshake we fingerprint).
    public static let maxHandshake = 65_536

    /// Whether `b` begins like a TLS handshake record (type 22, version 3.x, sane length, hello type);
    /// a start shorter than the record header is judged on the bytes it has.
    public static func looksLikeHandshakeRecord(_ b: UnsafeRawBufferPointer) -> Bool {
        guard b.count >= 1, b[0] == 0x16 else { return false }
        if b.count >= 2 && b[1] != 0x03 { return false }
        if b.count >= 3 && b[2] > 0x04 { return false }
        if b.count >= 5 {
            let len = Int(b[3]) << 8 | Int(b[4])
            guard len > 0, len <= maxRecord else { return false }
        }
        if b.count >= 6 { return b[5] == 1 || b[5] == 2 }
        return true
    }

    /// Collects the first handshake message (type and body) out of consecutive handshake records.
    /// Returns the message body via `body` without copying when it lies in one record.
    static func firstHandshakeMessage<R>(_ stream: UnsafeRawBufferPointer, expectedType: UInt8,
                                         _ body: (UnsafeRawBufferPointer) -> R?) -> Outcome<R> {
        var c = ByteCursor(stream)
        // Fast path: the whole message inside the first record.
        guard let type = c.u8(), let v1 = c.u8(), let v2 = c.u8() else { return .needMore(needed: 0) }
        guard type == 0x16, v1 == 3, v2 <= 4 else { return .invalid }
        guard let recLen16 = c.u16() else { return .needMore(needed: 0) }
        let recLen = Int(recLen16)
        guard recLen > 0, recLen <= maxRecord else { return .invalid }
        guard let hsType = c.peek(), c.remaining >= 1 else { return .needMore(needed: 5 + recLen) }
        guard hsType == expectedType else { return .invalid }
        guard let l1 = c.peek(at: 1), let l2 = c.peek(at: 2), let l3 = c.peek(at: 3) else {
            return .needMore(needed: 5 + recLen)
        }
        let msgLen = Int(l1) << 16 | Int(l2) << 8 | Int(l3)
        guard msgLen <= maxHandshake else { return .invalid }
        if msgLen + 4 <= recLen {
            guard let msg = c.slice(at: 9, count: msgLen) else { return .needMore(needed: 5 + recLen) }
            if let r = body(msg) { return .parsed(r) }
            return .invalid
        }
        // Slow path: the message spans records; concatenate the handshake fragments.
        var assembled: [UInt8] = []
        var pos = 0
        var needed = 0
        while assembled.count < msgLen + 4 {
            guard let rec = ByteCursor(stream, offset: pos).slice(at: pos, count: 5) else {
                return .needMore(needed: needed + 5)
            }
            guard rec[0] == 0x16, rec[1] == 3 else { return .invalid }
            let len = Int(rec[3]) << 8 | Int(rec[4])
            guard len > 0, len <= maxRecord else { return .invalid }
            needed = pos + 5 + len
            guard let frag = ByteCursor(stream).slice(at: pos + 5, count: len) else {
                // Tell the caller how much more it needs, at least to the end of this record.
                return .needMore(needed: needed)
            }
            assembled.append(contentsOf: frag)
            pos += 5 + len
            if pos > maxHandshake + 4096 { return .invalid }
        }
        return assembled.withUnsafeBytes { a in
            guard let msg = ByteCursor(a).slice(at: 4, count: msgLen), let r = body(msg) else { return .invalid }
            return .parsed(r)
        }
    }

    /// Parses the ClientHello at the start of a client's TLS stream.
    public static func clientHello(_ stream: UnsafeRawBufferPointer) -> Outcome<ClientHello> {
        firstHandshakeMessage(stream, expectedType: 1) { parseClientHelloBody($0) }
    }

    /// Parses the ServerHello at the start of a server's TLS stream.
    public static func serverHello(_ stream: UnsafeRawBufferPointer) -> Outcome<ServerHello> {
        firstHandshakeMessage(stream, expectedType: 2) { parseServerHelloBody($0) }
    }

    /// The ClientHello body (after the 4-byte handshake header). Also used for QUIC CRYPTO frames.
    public static func parseClientHelloBody(_ body: UnsafeRawBufferPointer) -> ClientHello? {
        var c = ByteCursor(body)
        var h = ClientHello()
        guard let version = c.u16(), c.skip(32) else { return nil }
        h.legacyVersion = version
        guard let sidLen = c.u8(), sidLen <= 32, c.skip(Int(sidLen)) else { return nil }
        guard let csLen = c.u16(), csLen % 2 == 0, let cs = c.take(Int(csLen)) else { return nil }
        var cc = ByteCursor(cs)
        h.cipherSuites.reserveCapacity(Int(csLen) / 2)
        while let v = cc.u16() { h.cipherSuites.append(v) }
        guard let compLen = c.u8(), compLen >= 1, c.skip(Int(compLen)) else { return nil }
        if c.isAtEnd { return h }
        guard let extLen = c.u16(), let exts = c.take(Int(extLen)) else { return nil }
        var e = ByteCursor(exts)
        while !e.isAtEnd {
            guard let type = e.u16(), let len = e.u16(), let data = e.take(Int(len)) else { return nil }
            h.extensions.append(type)
            var d = ByteCursor(data)
            switch type {
            case 0: // server_name
                guard let listLen = d.u16(), let list = d.take(Int(listLen)) else { break }
                var l = ByteCursor(list)
                while let nameType = l.u8(), let nameLen = l.u16(), let name = l.take(Int(nameLen)) {
                    if nameType == 0 && h.serverName == nil { h.serverName = Array(name) }
                }
            case 10: // supported_groups
                guard let listLen = d.u16(), let list = d.take(Int(listLen)) else { break }
                var l = ByteCursor(list)
                while let g = l.u16() { h.supportedGroups.append(g) }
            case 11: // ec_point_formats
                guard let listLen = d.u8(), let list = d.take(Int(listLen)) else { break }
                h.ecPointFormats = Array(list)
            case 13: // signature_algorithms
                guard let listLen = d.u16(), let list = d.take(Int(listLen)) else { break }
                var l = ByteCursor(list)
                while let s = l.u16() { h.signatureAlgorithms.append(s) }
            case 16: // application_layer_protocol_negotiation
                guard let listLen = d.u16(), let list = d.take(Int(listLen)) else { break }
                var l = ByteCursor(list)
                while let n = l.u8(), let name = l.take(Int(n)) { h.alpn.append(Array(name)) }
            case 43: // supported_versions
                guard let listLen = d.u8(), let list = d.take(Int(listLen)) else { break }
                var l = ByteCursor(list)
                while let v = l.u16() { h.supportedVersions.append(v) }
            default:
                break
            }
        }
        return h
    }

    static func parseServerHelloBody(_ body: UnsafeRawBufferPointer) -> ServerHello? {
        var c = ByteCursor(body)
        var h = ServerHello()
        guard let version = c.u16(), c.skip(32) else { return nil }
        h.legacyVersion = version
        guard let sidLen = c.u8(), sidLen <= 32, c.skip(Int(sidLen)) else { return nil }
        guard let cs = c.u16(), c.skip(1) else { return nil }
        h.cipherSuite = cs
        if c.isAtEnd { return h }
        guard let extLen = c.u16(), let exts = c.take(Int(extLen)) else { return nil }
        var e = ByteCursor(exts)
        while !e.isAtEnd {
            guard let type = e.u16(), let len = e.u16(), let data = e.take(Int(len)) else { return nil }
            h.extensions.append(type)
            var d = ByteCursor(data)
            switch type {
            case 43:
                h.selectedVersion = d.u16()
            case 16:
                if d.u16() != nil, let n = d.u8(), let name = d.take(Int(n)) { h.alpn = Array(name) }
            default:
                break
            }
        }
        return h
    }
}
