import PacketCore

/// Connection-oriented DCE-RPC (C706 chapter 12, MS-RPCE) PDUs: the header, BIND/ALTER_CONTEXT
/// presentation contexts, REQUEST opnums, the auth trailer (for NTLMSSP) and endpoint-mapper ports.
///
/// Parsing is over a `ByteCursor`, so truncated or hostile PDUs yield nil, never a trap.
public enum DCERPC {
    public static let headerLength = 16

    public enum PacketType: UInt8 {
        case request = 0, response = 2, fault = 3, bind = 11, bindAck = 12, bindNak = 13,
             alterContext = 14, alterContextResponse = 15, auth3 = 16, shutdown = 17, cancel = 18, orphaned = 19
    }

    public struct Header {
        public var type: UInt8
        public var flags: UInt8
        public var littleEndian: Bool
        public var fragmentLength: Int
        public var authLength: Int
        public var callID: UInt32
    }

    /// The header of a PDU, or nil if `bytes` does not start with one (version 5.0/5.1, sane lengths).
    public static func header(_ bytes: UnsafeRawBufferPointer) -> Header? {
        var c = ByteCursor(bytes)
        guard let major = c.u8(), major == 5, let minor = c.u8(), minor <= 1,
              let type = c.u8(), type <= 20, let flags = c.u8(), let drep = c.u8(), c.skip(3) else { return nil }
        let le = drep & 0x10 != 0
        guard let fl = le ? c.u16le() : c.u16(), let al = le ? c.u16le() : c.u16(), let call = le ? c.u32le() : c.u32() else { return nil }
        guard Int(fl) >= headerLength, Int(al) + headerLength <= Int(fl) else { return nil }
        return Header(type: type, flags: flags, littleEndian: le, fragmentLength: Int(fl), authLength: Int(al), callID: call)
    }

    /// Length of the PDU starting at `bytes` (for `MessageAssembler`).
    static func fragmentLength(_ bytes: UnsafeRawBufferPointer) -> Int? { header(bytes)?.fragmentLength }

    /// The UUID at the cursor in DCE-RPC wire order (first three fields in the PDU's byte order).
    static func uuid(_ c: inout ByteCursor, littleEndian: Bool) -> String? {
        guard let a = littleEndian ? c.u32le() : c.u32(), let b = littleEndian ? c.u16le() : c.u16(),
              let d = littleEndian ? c.u16le() : c.u16(), let rest = c.take(8) else { return nil }
        var out = ""
        out.reserveCapacity(36)
        func hex(_ v: UInt64, digits: Int) {
            var i = digits - 1
            while i >= 0 {
                let n = Int((v >> (UInt64(i) * 4)) & 0xF)
                out.unicodeScalars.append(Unicode.Scalar(UInt8(n < 10 ? 48 + n : 87 + n)))
                i -= 1
            }
        }
        hex(UInt64(a), digits: 8); out += "-"
        hex(UInt64(b), digits: 4); out += "-"
        hex(UInt64(d), digits: 4); out += "-"
        hex(UInt64(rest[0]), digits: 2); hex(UInt64(rest[1]), digits: 2); out += "-"
        for i in 2..<8 { hex(UInt64(rest[i]), digits: 2) }
        return out
    }

    /// Presentation contexts of a BIND or ALTER_CONTEXT: (context id, abstract syntax UUID).
    public static func bindContexts(_ pdu: UnsafeRawBufferPointer, header h: Header) -> [(id: UInt16, uuid: String)] {
        var c = ByteCursor(pdu, offset: headerLength)
        guard c.skip(8), let n = c.u8(), c.skip(3) else { return [] }
        var out: [(UInt16, String)] = []
        for _ in 0..<min(Int(n), 16) {
            guard let id = h.littleEndian ? c.u16le() : c.u16(), let nts = c.u8(), c.skip(1),
                  let u = uuid(&c, littleEndian: h.littleEndian), c.skip(4), c.skip(Int(nts) * 20) else { break }
            out.append((id, u))
        }
        return out
    }

    /// Context id and opnum of a REQUEST.
    public static func request(_ pdu: UnsafeRawBufferPointer, header h: Header) -> (context: UInt16, opnum: UInt16)? {
        var c = ByteCursor(pdu, offset: headerLength)
        guard c.skip(4), let ctx = h.littleEndian ? c.u16le() : c.u16(), let op = h.littleEndian ? c.u16le() : c.u16() else { return nil }
        return (ctx, op)
    }

    /// The stub data of a REQUEST or RESPONSE (after the 8-byte body header and optional object UUID,
    /// before the auth trailer), cut to what was captured.
    public static func stub(_ pdu: UnsafeRawBufferPointer, header h: Header) -> UnsafeRawBufferPointer? {
        var start = headerLength + 8
        if h.type == PacketType.request.rawValue && h.flags & 0x80 != 0 { start += 16 }
        var end = h.fragmentLength - (h.authLength > 0 ? h.authLength + 8 : 0)
        end = min(end, pdu.count)
        guard start <= end else { return nil }
        return UnsafeRawBufferPointer(rebasing: pdu[start..<end])
    }

    /// The auth value (e.g. an NTLMSSP message) at the end of the PDU, if present and captured.
    public static func authValue(_ pdu: UnsafeRawBufferPointer, header h: Header) -> UnsafeRawBufferPointer? {
        guard h.authLength > 0, h.fragmentLength <= pdu.count else { return nil }
        let start = h.fragmentLength - h.authLength
        guard start >= headerLength else { return nil }
        return UnsafeRawBufferPointer(rebasing: pdu[start..<h.fragmentLength])
    }

    /// TCP ports in the towers of an endpoint-mapper `ept_map` response stub.
    ///
    /// A tower floor for TCP is `lhs_len=1 (01 00), protocol 0x07, rhs_len=2 (02 00), port (big endian)`;
    /// scanning for that pattern avoids walking the NDR conformant arrays around it.
    public static func endpointMapperPorts(_ stub: UnsafeRawBufferPointer) -> [UInt16] {
        var out: [UInt16] = []
        guard stub.count >= 7 else { return out }
        var i = 0
        while i + 7 <= stub.count {
            if stub[i] == 1, stub[i + 1] == 0, stub[i + 2] == 7, stub[i + 3] == 2, stub[i + 4] == 0 {
                let port = UInt16(stub[i + 5]) << 8 | UInt16(stub[i + 6])
                if port != 0 && !out.contains(port) { out.append(port) }
                i += 7
            } else {
                i += 1
            }
        }
        return out
    }

    /// Classes whose remote activation is a known lateral-movement technique (MS-DCOM activation blobs
    /// carry the CLSID in little-endian GUID form).
    static let activationClasses: [(name: String, clsid: [UInt8])] = [
        ("WbemLevel1Login", guidBytes(0x8BC3F05E, 0xD86B, 0x11D0, [0xA0, 0x75, 0x00, 0xC0, 0x4F, 0xB6, 0x88, 0x20])),
        ("MMC20.Application", guidBytes(0x49B2791A, 0xB1AE, 0x4C90, [0x9B, 0x8E, 0xE8, 0x60, 0xBA, 0x07, 0xF8, 0x89])),
        ("ShellWindows", guidBytes(0x9BA05972, 0xF6A8, 0x11CF, [0xA4, 0x42, 0x00, 0xA0, 0xC9, 0x0A, 0x8F, 0x39])),
        ("ShellBrowserWindow", guidBytes(0xC08AFD90, 0xF2A1, 0x11D1, [0x84, 0x55, 0x00, 0xA0, 0xC9, 0x1F, 0x38, 0x80])),
        ("Excel.Application", guidBytes(0x00024500, 0x0000, 0x0000, [0xC0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x46])),
    ]

    static func guidBytes(_ a: UInt32, _ b: UInt16, _ c: UInt16, _ d: [UInt8]) -> [UInt8] {
        [UInt8(a & 0xFF), UInt8(a >> 8 & 0xFF), UInt8(a >> 16 & 0xFF), UInt8(a >> 24), UInt8(b & 0xFF), UInt8(b >> 8),
         UInt8(c & 0xFF), UInt8(c >> 8)] + d
    }

    /// The first occurrence of `needle` in `hay`.
    static func contains(_ hay: UnsafeRawBufferPointer, _ needle: [UInt8]) -> Bool {
        guard let first = needle.first, hay.count >= needle.count else { return false }
        var i = 0
        let last = hay.count - needle.count
        while i <= last {
            if hay[i] == first {
                var j = 1
                while j < needle.count && hay[i + j] == needle[j] { j += 1 }
                if j == needle.count { return true }
            }
            i += 1
        }
        return false
    }

    /// The known class an activation stub asks for, if any.
    public static func activatedClass(_ stub: UnsafeRawBufferPointer) -> String? {
        activationClasses.first { contains(stub, $0.clsid) }?.name
    }

    static let win32Process: [UInt8] = Array("Win32_Process".utf16).flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] }

    /// Whether a stub names WMI's Win32_Process class (UTF-16), as ExecMethod calls that start processes do.
    public static func namesWin32Process(_ stub: UnsafeRawBufferPointer) -> Bool { contains(stub, win32Process) }

    /// Whether a stub carries a marshalled DCOM object reference or activation blob ("MEOW" signature).
    public static func containsOBJREF(_ stub: UnsafeRawBufferPointer) -> Bool {
        guard stub.count >= 4 else { return false }
        for i in 0...(stub.count - 4) where stub[i] == 0x4D && stub[i + 1] == 0x45 && stub[i + 2] == 0x4F && stub[i + 3] == 0x57 {
            return true
        }
        return false
    }
}

/// The bound presentation contexts of one DCE-RPC association (an SMB pipe or a TCP connection), and
/// the interpretation of the PDUs sent on it. Bounded: at most 16 contexts.
struct DCERPCAssociation {
    var contexts: [(id: UInt16, interface: RPCInterface)] = []
    /// Call ids of `ept_map` requests awaiting their response (endpoint-mapper port learning).
    var pendingMapCalls: [UInt32] = []
    /// The association is on the endpoint mapper's port (135), where DCOM activations arrive.
    var onEndpointMapperPort = false

    func interface(for context: UInt16) -> RPCInterface? {
        contexts.first { $0.id == context }?.interface
    }

    /// What the analysers report from one PDU sent by the client (requests, binds, auth).
    enum Event {
        case bind(RPCInterface)
        case call(RPCInterface?, UInt16)
        case activation(className: String?)
        case wmiProcessCreate
        case ntlm(UnsafeRawBufferPointer)
        case signature(ExploitSignature)
        /// A call on an unbound context identified by its stub's shape.
        case inferredCall(RPCInterface, UInt16)
    }

    static let drsuapi = RPCInterface(uuid: "e3514235-4b06-11d1-ab04-00c04fc2dcd2")

    /// Interprets a client PDU; `report` is called for each event.
    mutating func clientPDU(_ pdu: UnsafeRawBufferPointer, report: (Event) -> Void) {
        guard let h = DCERPC.header(pdu) else { return }
        switch h.type {
        case DCERPC.PacketType.bind.rawValue, DCERPC.PacketType.alterContext.rawValue:
            for (id, u) in DCERPC.bindContexts(pdu, header: h) {
                let iface = RPCInterface(uuid: u)
                if let i = contexts.firstIndex(where: { $0.id == id }) {
                    contexts[i].interface = iface
                } else if contexts.count < 16 {
                    contexts.append((id, iface))
                }
                report(.bind(iface))
            }
        case DCERPC.PacketType.request.rawValue:
            guard let r = DCERPC.request(pdu, header: h) else { return }
            // Only the first fragment of a call carries meaning for us.
            guard h.flags & 0x01 != 0 else { return }
            let iface = interface(for: r.context)
            report(.call(iface, r.opnum))
            if let stub = DCERPC.stub(pdu, header: h) {
                if iface?.name == "epm" && r.opnum == 3 && pendingMapCalls.count < 8 { pendingMapCalls.append(h.callID) }
                // A DCOM activation: ISystemActivator/IRemoteSCMActivator, or (bind unseen) an OBJREF
                // activation blob sent to the endpoint mapper's port.
                let activator = iface?.name == "ISystemActivator" || iface?.name == "IActivation"
                if (activator && (r.opnum == 3 || r.opnum == 4)) || (iface == nil && onEndpointMapperPort && DCERPC.containsOBJREF(stub)) {
                    report(.activation(className: DCERPC.activatedClass(stub)))
                } else if !onEndpointMapperPort && (iface == nil || iface?.name == "IWbemServices") && DCERPC.namesWin32Process(stub) {
                    report(.wmiProcessCreate)
                } else if iface?.name == "netlogon",
                          let s = DCERPC.netlogonSignature(opnum: r.opnum, stub: stub, littleEndian: h.littleEndian) {
                    report(.signature(s))
                } else if iface == nil && !onEndpointMapperPort
                            && DCERPC.looksLikeGetNCChanges(opnum: r.opnum, stub: stub, littleEndian: h.littleEndian) {
                    report(.inferredCall(Self.drsuapi, r.opnum))
                }
            }
        default:
            break
        }
        if h.authLength > 0, let a = DCERPC.authValue(pdu, header: h) { report(.ntlm(a)) }
    }

    /// Interprets a server PDU: returns the TCP ports an `ept_map` response named, if it answers one.
    mutating func serverPDU(_ pdu: UnsafeRawBufferPointer) -> [UInt16] {
        guard let h = DCERPC.header(pdu), h.type == DCERPC.PacketType.response.rawValue,
              let i = pendingMapCalls.firstIndex(of: h.callID) else { return [] }
        pendingMapCalls.remove(at: i)
        guard let stub = DCERPC.stub(pdu, header: h) else { return [] }
        return DCERPC.endpointMapperPorts(stub)
    }
}
