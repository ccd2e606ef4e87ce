import PacketCore

/// NDR (C706 chapter 14) reads of the few request stubs whose arguments matter for lateral movement:
/// Netlogon's secure-channel setup (Zerologon) and DRSUAPI's GetNCChanges (DCSync without the bind).
///
/// Stubs are hostile: every read is bounds-checked through `ByteCursor` and yields nil when the stub is
/// cut short or malformed; alignment is relative to the stub start, as NDR defines it.
struct NDRCursor {
    var c: ByteCursor
    let littleEndian: Bool

    init(_ stub: UnsafeRawBufferPointer, littleEndian: Bool) {
        c = ByteCursor(stub)
        self.littleEndian = littleEndian
    }

    mutating func align(_ n: Int) -> Bool {
        let pad = (n - c.offset % n) % n
        return c.skip(pad)
    }

    mutating func u16() -> UInt16? { guard align(2) else { return nil }; return littleEndian ? c.u16le() : c.u16() }
    mutating func u32() -> UInt32? { guard align(4) else { return nil }; return littleEndian ? c.u32le() : c.u32() }
    mutating func bytes(_ n: Int) -> UnsafeRawBufferPointer? { c.take(n) }

    /// A conformant varying UTF-16 string (`[string] wchar_t*`): max count, offset, actual count, units.
    /// Skipped, not decoded; nil when its counts are inconsistent.
    mutating func skipWideString() -> Bool {
        guard let max = u32(), let offset = u32(), let actual = u32(), offset == 0, actual <= max, actual <= 4096 else { return false }
        return c.skip(Int(actual) * 2)
    }

    /// A `[unique, string] wchar_t*`: referent id, then the string unless the pointer is null.
    mutating func skipUniqueWideString() -> Bool {
        guard let ref = u32() else { return false }
        return ref == 0 || skipWideString()
    }
}

extension DCERPC {
    static func isZero(_ b: UnsafeRawBufferPointer) -> Bool { b.allSatisfy { $0 == 0 } }

    /// What a Netlogon (MS-NRPC) request's arguments reveal of Zerologon (CVE-2020-1472): an all-zero client
    /// challenge (`NetrServerReqChallenge`, opnum 4) or client credential (`NetrServerAuthenticate`,
    /// `…2`, `…3`: opnums 5, 15, 26), or a `NetrServerPasswordSet2` (opnum 30) with an all-zero
    /// authenticator or new password. Legitimate values are random or encrypted: eight zero bytes
    /// happen by chance with probability 2⁻⁶⁴.
    public static func netlogonSignature(opnum: UInt16, stub: UnsafeRawBufferPointer, littleEndian: Bool) -> ExploitSignature? {
        var n = NDRCursor(stub, littleEndian: littleEndian)
        // Every one of these starts with PrimaryName ([unique, string] LOGONSRV_HANDLE).
        guard opnum == 4 || opnum == 5 || opnum == 15 || opnum == 26 || opnum == 30, n.skipUniqueWideString() else { return nil }
        if opnum == 4 {
            // ComputerName, ClientChallenge (8 bytes).
            guard n.skipWideString(), let challenge = n.bytes(8) else { return nil }
            return isZero(challenge) ? .netlogonZeroChallenge : nil
        }
        // AccountName, SecureChannelType (an enum: 16 bits on the wire), ComputerName.
        guard n.skipWideString(), n.u16() != nil, n.align(4), n.skipWideString() else { return nil }
        if opnum == 30 {
            // Authenticator (credential 8 bytes + timestamp), ClearNewPassword (512 bytes + length).
            guard n.align(4), let credential = n.bytes(8), let timestamp = n.u32() else { return nil }
            if isZero(credential) && timestamp == 0 { return .netlogonZeroPasswordSet }
            guard let password = n.bytes(516) else { return nil }
            return isZero(password) ? .netlogonZeroPasswordSet : nil
        }
        guard let credential = n.bytes(8) else { return nil }
        return isZero(credential) ? .netlogonZeroCredential : nil
    }

    /// Whether a REQUEST on a context whose bind was not seen has the shape of DRSUAPI
    /// `IDL_DRSGetNCChanges` (MS-DRSR 4.1.10): opnum 3; a context handle (zero attributes, non-zero
    /// UUID); `dwInVersion` one of 5, 7, 8, 10, 11 repeated as the union's discriminant; non-zero
    /// destination DSA and source invocation GUIDs; a non-null naming-context pointer; and a stub of at
    /// least the V5 request's size. About 60 bits of structure must line up, so a random or other
    /// interface's opnum-3 call matches by chance far less often than once in 10⁹: confident, though
    /// not proof, which the detector says.
    public static func looksLikeGetNCChanges(opnum: UInt16, stub: UnsafeRawBufferPointer, littleEndian: Bool) -> Bool {
        guard opnum == 3, stub.count >= 100 else { return false }
        var n = NDRCursor(stub, littleEndian: littleEndian)
        guard let attributes = n.u32(), attributes == 0, let handle = n.bytes(16), !isZero(handle),
              let version = n.u32(), [5, 7, 8, 10, 11].contains(version), let tag = n.u32(), tag == version,
              let destination = n.bytes(16), !isZero(destination), let source = n.bytes(16), !isZero(source),
              let nc = n.u32(), nc != 0 else { return false }
        return true
    }
}

extension DCERPC {
    /// Where the first REQUEST or RESPONSE header of a mid-stream payload starts: little-endian ASCII
    /// data representation (what Windows sends), a fragment of at most 16 KiB that either continues past
    /// the payload or is followed by another header. Nil when there is none (most payloads: one byte in
    /// ~10⁸ positions of random data passes).
    static func firstPDUOffset(_ bytes: UnsafeRawBufferPointer) -> Int? {
        var i = 0
        while i + headerLength <= bytes.count {
            if bytes[i] == 5, bytes[i + 1] <= 1, bytes[i + 2] == PacketType.request.rawValue || bytes[i + 2] == PacketType.response.rawValue,
               bytes[i + 4] == 0x10, let h = header(UnsafeRawBufferPointer(rebasing: bytes[i...])), h.fragmentLength <= 16 << 10 {
                let end = i + h.fragmentLength
                if end >= bytes.count || header(UnsafeRawBufferPointer(rebasing: bytes[end...])) != nil { return i }
            }
            i += 1
        }
        return nil
    }
}
