import PacketCore

/// QUIC versions whose Initial packets the sensor can decrypt: v1 (RFC 9000/9001), v2 (RFC 9369),
/// and the IETF drafts 23–34 that deployed clients spoke before v1, which differ from v1 only in their
/// salt (drafts 33–34 already use v1's). Each was checked against tshark's decryption of real captures.
///
/// Initial packets are encrypted with keys every observer can derive from the client's first
/// Destination Connection ID and a per-version public salt (RFC 9001 §5.2): the encryption protects
/// against middleboxes ossifying the handshake, not against a passive reader. That is what lets a
/// sensor read the ClientHello (SNI, ALPN, JA4) of QUIC the way it reads TLS over TCP.
public struct QUICVersion: Sendable, Equatable {
    public let rawValue: UInt32
    enum Family: Sendable { case v1, v2, draft29, draft23 }
    let family: Family

    public static let v1 = QUICVersion(rawValue: 0x0000_0001)!
    public static let v2 = QUICVersion(rawValue: 0x6b33_43cf)!

    public init?(rawValue: UInt32) {
        switch rawValue {
        case 0x0000_0001, 0xff00_0021, 0xff00_0022: family = .v1
        case 0x6b33_43cf: family = .v2
        case 0xff00_001d...0xff00_0020: family = .draft29
        case 0xff00_0017...0xff00_001c: family = .draft23
        default: return nil
        }
        self.rawValue = rawValue
    }

    /// The `initial_salt` of RFC 9001 §5.2 (v1, drafts 33–34), RFC 9369 §3.3.1 (v2), and of the drafts
    /// (draft-ietf-quic-tls-29 §5.2 for 29–32, -23 §5.2 for 23–28).
    var initialSalt: [UInt8] {
        switch family {
        case .v1: return [0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17,
                          0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad, 0xcc, 0xbb, 0x7f, 0x0a]
        case .v2: return [0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93,
                          0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb, 0xf9, 0xbd, 0x2e, 0xd9]
        case .draft29: return [0xaf, 0xbf, 0xec, 0x28, 0x99, 0x93, 0xd2, 0x4c, 0x9e, 0x97,
                               0x86, 0xf1, 0x9c, 0x61, 0x11, 0xe0, 0x43, 0x90, 0xa8, 0x99]
        case .draft23: return [0xc3, 0xee, 0xf7, 0x12, 0xc7, 0x2e, 0xbb, 0x5a, 0x11, 0xa7,
                               0xd2, 0x43, 0x2b, 0xb4, 0x63, 0x65, 0xbe, 0xf9, 0xf5, 0x02]
        }
    }

    /// HKDF labels of the packet-protection key, IV and header-protection key (RFC 9001 §5.1, RFC 9369 §3.3.2).
    var labels: (key: String, iv: String, hp: String) {
        family == .v2 ? ("quicv2 key", "quicv2 iv", "quicv2 hp") : ("quic key", "quic iv", "quic hp")
    }

    /// The long-header type bits of an Initial packet: 0b00 in v1 and the drafts, 0b01 in v2 (RFC 9369 §3.2).
    var initialTypeBits: UInt8 { family == .v2 ? 1 : 0 }
    /// The type bits of a Retry packet, which has no Length field (RFC 9000 §17.2.5; RFC 9369 §3.2).
    var retryTypeBits: UInt8 { family == .v2 ? 0 : 3 }
}

/// One long-header packet of a datagram (RFC 9000 §17.2), as offsets into the datagram.
public struct QUICLongHeader: Sendable, Equatable {
    /// Where the packet starts in the datagram (its first byte).
    public var start: Int
    public var version: UInt32
    /// The two long-packet-type bits (their meaning depends on the version).
    public var typeBits: UInt8
    public var destinationCID: Range<Int>
    public var sourceCID: Range<Int>
    /// The address-validation token (Initial packets only; empty otherwise).
    public var token: Range<Int>
    /// Where the (protected) packet number starts: just past the Length field.
    public var packetNumberOffset: Int
    /// Just past this packet (`packetNumberOffset + Length`): the next coalesced packet starts here.
    public var end: Int

    /// Whether this is an Initial packet of a version we decrypt.
    public var isInitial: Bool {
        guard let v = QUICVersion(rawValue: version) else { return false }
        return typeBits == v.initialTypeBits
    }
}

extension ByteCursor {
    /// A QUIC variable-length integer (RFC 9000 §16): the two high bits of the first byte give its length.
    @inlinable mutating func quicVarInt() -> UInt64? {
        guard let first = peek() else { return nil }
        switch first >> 6 {
        case 0: return u8().map { UInt64($0) }
        case 1: return u16().map { UInt64($0 & 0x3fff) }
        case 2: return u32().map { UInt64($0 & 0x3fff_ffff) }
        default: return u64().map { $0 & 0x3fff_ffff_ffff_ffff }
        }
    }
}

/// Parsers of QUIC's cleartext structure: long headers and the frames of a decrypted Initial payload.
///
/// Hostile input: every read goes through `ByteCursor`, every length is checked against what is
/// there, loops advance by at least one byte, and the result is nil (or false), never a trap.
public enum QUICPacketParser {
    /// The long-header packet at `offset` of a datagram, if it is one of a version we know (v1, v2)
    /// and its Length fits the datagram. Version negotiation, unknown versions and Retry (no Length)
    /// give nil: nothing after them can be delimited.
    public static func longHeader(_ d: UnsafeRawBufferPointer, at offset: Int) -> QUICLongHeader? {
        var c = ByteCursor(d, offset: offset)
        guard let first = c.u8(), first & 0xc0 == 0xc0 else { return nil }  // header form 1, fixed bit 1
        guard let version = c.u32(), let v = QUICVersion(rawValue: version) else { return nil }
        let typeBits = (first >> 4) & 3
        guard typeBits != v.retryTypeBits else { return nil }
        guard let dl = c.u8(), dl <= 20 else { return nil }
        let dcidStart = c.offset
        guard c.skip(Int(dl)), let sl = c.u8(), sl <= 20 else { return nil }
        let scidStart = c.offset
        guard c.skip(Int(sl)) else { return nil }
        var token = c.offset..<c.offset
        if typeBits == v.initialTypeBits {
            guard let tl = c.quicVarInt(), tl <= UInt64(c.remaining) else { return nil }
            token = c.offset..<(c.offset + Int(tl))
            guard c.skip(Int(tl)) else { return nil }
        }
        guard let length = c.quicVarInt(), length <= UInt64(c.remaining) else { return nil }
        return QUICLongHeader(start: offset, version: version, typeBits: typeBits,
                              destinationCID: dcidStart..<(dcidStart + Int(dl)), sourceCID: scidStart..<(scidStart + Int(sl)),
                              token: token, packetNumberOffset: c.offset, end: c.offset + Int(length))
    }

    /// Frame types an Initial packet may carry (RFC 9000 §12.4, Table 3).
    enum FrameType {
        static let padding: UInt64 = 0x00
        static let ping: UInt64 = 0x01
        static let ack: UInt64 = 0x02
        static let ackECN: UInt64 = 0x03
        static let crypto: UInt64 = 0x06
        static let connectionClose: UInt64 = 0x1c
    }

    /// Walks the frames of a decrypted Initial payload, handing each CRYPTO frame's stream offset and
    /// data to `crypto`. False when a frame is malformed or not allowed in an Initial packet (the
    /// frames before it were still delivered).
    public static func initialFrames(_ payload: UnsafeRawBufferPointer,
                                     crypto: (_ offset: UInt64, _ data: UnsafeRawBufferPointer) -> Void) -> Bool {
        var c = ByteCursor(payload)
        while !c.isAtEnd {
            guard let type = c.quicVarInt() else { return false }
            switch type {
            case FrameType.padding, FrameType.ping:
                continue
            case FrameType.ack, FrameType.ackECN:
                // Largest Acknowledged, ACK Delay, ACK Range Count, First ACK Range, ranges, ECN counts.
                guard c.quicVarInt() != nil, c.quicVarInt() != nil, let ranges = c.quicVarInt(), c.quicVarInt() != nil else { return false }
                // Each range is at least two bytes: a count beyond what is left cannot be honest.
                guard ranges <= UInt64(c.remaining / 2) else { return false }
                for _ in 0..<ranges {
                    guard c.quicVarInt() != nil, c.quicVarInt() != nil else { return false }
                }
                if type == FrameType.ackECN {
                    guard c.quicVarInt() != nil, c.quicVarInt() != nil, c.quicVarInt() != nil else { return false }
                }
            case FrameType.crypto:
                guard let offset = c.quicVarInt(), let length = c.quicVarInt(), length <= UInt64(c.remaining),
                      offset <= (1 << 62) - 1 - length, let data = c.take(Int(length)) else { return false }
                crypto(offset, data)
            case FrameType.connectionClose:
                // The peer gave up; nothing after it matters.
                return true
            default:
                return false
            }
        }
        return true
    }
}
