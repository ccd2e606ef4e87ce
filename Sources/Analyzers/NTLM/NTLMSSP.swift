import PacketCore

/// NTLMSSP (MS-NLMP) messages, found inside SPNEGO blobs (SMB SESSION_SETUP) or DCE-RPC auth trailers.
///
/// Only the AUTHENTICATE message (type 3) names the account: user, domain and workstation. The message
/// is located by its signature rather than by walking the SPNEGO DER, which is what matters on the wire
/// and keeps the parser small. Every offset is checked through `ByteCursor`.
public enum NTLMSSP {
    static let signature: [UInt8] = Array("NTLMSSP".utf8) + [0]

    public struct Authenticate: Equatable, Sendable {
        public var user: String
        public var domain: String
        public var workstation: String
        /// An anonymous (null session) authentication: empty user and no NT response.
        public var anonymous: Bool
    }

    /// Offset of the first NTLMSSP signature in `bytes`, if any.
    public static func find(_ bytes: UnsafeRawBufferPointer) -> Int? {
        guard bytes.count >= 8 else { return nil }
        var i = 0
        while i <= bytes.count - 8 {
            if bytes[i] == 0x4E, bytes[i + 1] == 0x54, bytes[i + 2] == 0x4C, bytes[i + 3] == 0x4D,
               bytes[i + 4] == 0x53, bytes[i + 5] == 0x53, bytes[i + 6] == 0x50, bytes[i + 7] == 0 {
                return i
            }
            i += 1
        }
        return nil
    }

    /// The message type (1 negotiate, 2 challenge, 3 authenticate) of the NTLMSSP message in `bytes`.
    public static func messageType(_ bytes: UnsafeRawBufferPointer) -> UInt32? {
        guard let at = find(bytes) else { return nil }
        var c = ByteCursor(bytes, offset: at + 8)
        return c.u32le()
    }

    /// Parses the AUTHENTICATE message contained somewhere in `bytes`.
    public static func authenticate(in bytes: UnsafeRawBufferPointer) -> Authenticate? {
        guard let at = find(bytes) else { return nil }
        let msg = UnsafeRawBufferPointer(rebasing: bytes[at...])
        var c = ByteCursor(msg, offset: 8)
        guard let type = c.u32le(), type == 3 else { return nil }
        // Security buffers: LmChallengeResponse, NtChallengeResponse, DomainName, UserName, Workstation, EncryptedRandomSessionKey.
        var fields: [(len: Int, offset: Int)] = []
        for _ in 0..<6 {
            guard let len = c.u16le(), c.skip(2), let off = c.u32le() else { return nil }
            fields.append((Int(len), Int(off)))
        }
        guard let flags = c.u32le() else { return nil }
        let unicode = flags & 0x1 != 0
        func text(_ f: (len: Int, offset: Int)) -> String {
            guard f.len > 0, let s = ByteCursor(msg).slice(at: f.offset, count: f.len) else { return "" }
            return unicode ? utf16LE(s) : latin1(s)
        }
        let user = text(fields[3])
        return Authenticate(user: user, domain: text(fields[2]), workstation: text(fields[4]),
                            anonymous: user.isEmpty && fields[1].len == 0)
    }
}
