import Analyzers
import Detectors
import PacketCore

/// The kinds of self-contained facts workers hand to the host-level detectors (first payload byte
/// after the 8-byte stamp). One record per flow end, new TCP flow, SYN-ACK, lateral-movement fact or
/// DNS message: never one per packet of a flow.
enum HostFactKind: UInt8 {
    /// The worker's packet clock started (the lateral-movement learning period counts from it).
    case clockStarted = 1
    /// A flow ended or was reported at an active timeout: its record plus the analysers' labels.
    case flowEnded = 2
    /// The first packet of a new TCP flow (lateral fan-out).
    case tcpFlowStarted = 3
    /// A SYN-ACK (lateral first-seen remote-access edges).
    case tcpAccepted = 4
    /// An SMB / DCE-RPC / Kerberos fact (`RemoteAccessFact`) with its session endpoints.
    case remoteAccess = 5
    /// A parsed DNS message (`DNSMessageFacts`) with its first question name.
    case dnsMessage = 6
    /// A flow end judged on another shard (S > 1): its record only, so this shard's non-standard-port
    /// detector learns port popularity from every session, as with one shard.
    case flowElsewhere = 7
    /// A worker's pipeline ticked (its packet clock passed a second): the stage ticks its detectors at
    /// the first such time past each second, so with one worker it ticks exactly when the pipeline does
    /// (some detectors' periodic work depends on the exact tick time).
    case tick = 8
    /// An FTP data connection announced on a control connection: to every shard, since the data
    /// connection's originator (the client in passive mode, the server in active mode) may be on any.
    case ftpDataAnnounced = 9
}

/// Writes one fact record into a preallocated buffer (little-endian, strings length-prefixed and cut
/// to `HostFactWriter.maxString` bytes at a UTF-8 boundary). Nothing allocates: strings that are native
/// and contiguous are copied from their storage, others byte by byte from their UTF-8 view.
///
/// Layout of every record: `Int64` stamp (the producer's monotonic packet clock, the merge key), `UInt8`
/// kind, then the kind's fields in the order `HostDetectorSet.apply` reads them.
struct HostFactWriter {
    /// Longest string carried (SNI, Host, share, file and pipe names, user names). Longer ones are cut,
    /// in replay as live, so both decide on the same bytes.
    static let maxString = 512
    /// The largest record: a flow record, two strings and a little more; a remote-access fact with
    /// three strings. 4 KiB holds either with room.
    static let capacity = 4096
    /// ALPN entries carried for a ClientHello without SNI, at most 64 bytes each (real ALPN ids are a few bytes).
    static let maxALPN = 8

    let base: UnsafeMutableRawPointer
    var count = 0

    init(base: UnsafeMutableRawPointer) { self.base = base }

    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    mutating func reset(stamp: Int64, kind: HostFactKind) {
        count = 0
        i64(stamp)
        u8(kind.rawValue)
    }

    @inline(__always) mutating func u8(_ v: UInt8) {
        base.storeBytes(of: v, toByteOffset: count, as: UInt8.self)
        count += 1
    }
    @inline(__always) mutating func bool(_ v: Bool) { u8(v ? 1 : 0) }
    @inline(__always) mutating func u16(_ v: UInt16) {
        base.storeBytes(of: v.littleEndian, toByteOffset: count, as: UInt16.self)
        count += 2
    }
    @inline(__always) mutating func u32(_ v: UInt32) {
        base.storeBytes(of: v.littleEndian, toByteOffset: count, as: UInt32.self)
        count += 4
    }
    @inline(__always) mutating func u64(_ v: UInt64) {
        base.storeBytes(of: v.littleEndian, toByteOffset: count, as: UInt64.self)
        count += 8
    }
    @inline(__always) mutating func i64(_ v: Int64) { u64(UInt64(bitPattern: v)) }
    @inline(__always) mutating func time(_ t: Timestamp) { i64(t.nanoseconds) }
    mutating func ip(_ a: IPAddress) {
        u64(a.high)
        u64(a.low)
        bool(a.isIPv6)
    }

    /// The flow record as it is in memory (a trivial struct of integers), so every field the detectors
    /// read, now or later, comes across.
    mutating func flow(_ r: FlowRecord) {
        withUnsafeBytes(of: r) { raw($0) }
    }

    mutating func raw(_ b: UnsafeRawBufferPointer) {
        guard b.count > 0 else { return }
        (base + count).copyMemory(from: b.baseAddress!, byteCount: b.count)
        count += b.count
    }

    /// `UInt16` length then the bytes, cut to `limit` at a UTF-8 boundary.
    mutating func bytes(_ b: UnsafeRawBufferPointer, limit: Int = HostFactWriter.maxString) {
        var n = min(b.count, limit)
        if n < b.count { while n > 0 && b[n] & 0xC0 == 0x80 { n -= 1 } }
        u16(UInt16(n))
        raw(UnsafeRawBufferPointer(rebasing: b[..<n]))
    }

    mutating func string(_ s: String) {
        var s = s
        s.withUTF8 { bytes(UnsafeRawBufferPointer($0)) }
    }

    /// Presence byte, then the string.
    mutating func optionalString(_ s: String?) {
        guard let s else { u8(0); return }
        u8(1)
        string(s)
    }
}

/// Reads what `HostFactWriter` wrote, through the bounds-checked `ByteCursor` (a truncated or foreign
/// record reads as nil and is counted, never trusted).
struct HostFactReader {
    var c: ByteCursor

    init(_ b: UnsafeRawBufferPointer) { c = ByteCursor(b) }

    mutating func u8() -> UInt8? { c.u8() }
    mutating func bool() -> Bool? { c.u8().map { $0 != 0 } }
    mutating func u16() -> UInt16? { c.u16le() }
    mutating func u32() -> UInt32? { c.u32le() }
    mutating func u64() -> UInt64? { c.u64le() }
    mutating func i64() -> Int64? { c.u64le().map { Int64(bitPattern: $0) } }
    mutating func time() -> Timestamp? { i64().map { Timestamp(nanoseconds: $0) } }
    mutating func ip() -> IPAddress? {
        guard let h = c.u64le(), let l = c.u64le(), let v6 = c.u8() else { return nil }
        return IPAddress(high: h, low: l, isIPv6: v6 != 0)
    }
    mutating func flow() -> FlowRecord? {
        let size = MemoryLayout<FlowRecord>.size
        guard let b = c.take(size) else { return nil }
        // Copied to aligned storage before loading (the record is not aligned for FlowRecord).
        return withUnsafeTemporaryAllocation(of: FlowRecord.self, capacity: 1) { p in
            UnsafeMutableRawPointer(p.baseAddress!).copyMemory(from: b.baseAddress!, byteCount: size)
            return p[0]
        }
    }
    mutating func bytes() -> UnsafeRawBufferPointer? {
        guard let n = c.u16le() else { return nil }
        return c.take(Int(n))
    }
    mutating func string() -> String? { bytes().map { String(decoding: $0, as: UTF8.self) } }
    /// nil when unreadable; `.some(nil)` when absent.
    mutating func optionalString() -> String?? {
        guard let present = c.u8() else { return nil }
        if present == 0 { return .some(nil) }
        guard let s = string() else { return nil }
        return .some(s)
    }
}

extension HostFactWriter {
    /// The flow's labels straight from the analysers' bytes (no `String` is built on the worker); reads
    /// back as `FlowLabels(flow, slot:, identifier:, tls:, http:)` would have made them.
    mutating func labels(_ flow: FlowRecord, slot: Int32, identifier: ProtocolIdentifier?, tls: TLSAnalyzer?, http: HTTPAnalyzer?) {
        let t = tls?.facts(slot: slot, generation: flow.generation)
        let h = http?.facts(slot: slot, generation: flow.generation)
        var flags: UInt8 = (t != nil ? 1 : 0) | (h != nil ? 2 : 0) | (t?.client != nil ? 16 : 0)
        if let identifier, identifier.identification(slot: slot, generation: flow.generation) == .unknown { flags |= 4 }
        u8(flags)
        if let sni = t?.client?.serverName {
            u8(1)
            sni.withUnsafeBytes { bytes($0) }
        } else {
            u8(0)
        }
        if let t, let hello = t.client, hello.serverName == nil {
            // What the bare-IP rule reports of a ClientHello without SNI.
            let n = min(hello.alpn.count, HostFactWriter.maxALPN)
            u8(UInt8(n))
            for a in hello.alpn.prefix(n) { a.withUnsafeBytes { bytes($0, limit: 64) } }
            optionalString(t.ja3)
            optionalString(t.ja4)
        }
        // `HTTPFacts.hostName`: the Host header without its port (unless an IPv6 literal), lower-cased.
        if let host = h?.request?.host, !host.isEmpty {
            var end = host.count
            if host.first != 0x5b, let colon = host.lastIndex(of: 58) { end = colon }
            u8(1)
            host.withUnsafeBytes { raw in
                let from = count + 2
                bytes(UnsafeRawBufferPointer(rebasing: raw[..<end]))
                for i in from..<count {
                    let b = base.load(fromByteOffset: i, as: UInt8.self)
                    if b >= 0x41 && b <= 0x5a { base.storeBytes(of: b | 0x20, toByteOffset: i, as: UInt8.self) }
                }
            }
        } else {
            u8(0)
        }
    }

    mutating func labels(_ l: FlowLabels) {
        u8((l.hasTLS ? 1 : 0) | (l.hasHTTP ? 2 : 0) | (l.identifiedUnknown ? 4 : 0) | (l.hasClientHello ? 16 : 0))
        optionalString(l.serverName)
        if l.hasClientHello && l.serverName == nil {
            let n = min(l.alpn.count, HostFactWriter.maxALPN)
            u8(UInt8(n))
            for a in l.alpn.prefix(n) { var a = a; a.withUTF8 { bytes(UnsafeRawBufferPointer($0), limit: 64) } }
            optionalString(l.ja3)
            optionalString(l.ja4)
        }
        optionalString(l.httpHost)
    }

    mutating func endpoints(_ e: SessionEndpoints) {
        ip(e.client)
        ip(e.server)
        u16(e.serverPort)
    }

    mutating func remoteAccess(_ fact: RemoteAccessFact) {
        switch fact {
        case .treeConnect(let path):
            u8(0); string(path)
        case .open(let share, let name, let isPipe, let writeAccess):
            u8(1); string(share); string(name); bool(isPipe); bool(writeAccess)
        case .write(let share, let name):
            u8(2); string(share); string(name)
        case .authentication(let a):
            u8(3)
            u8(a.method == .ntlm ? 0 : 1)
            string(a.user); string(a.domain); string(a.workstation)
            u8(a.success == nil ? 0 : a.success! ? 2 : 1)
            u32(a.status)
        case .rpcBind(let iface):
            u8(4); string(iface.uuid)
        case .rpcCall(let iface, let opnum, let pipe):
            u8(5); optionalString(iface?.uuid); u16(opnum); optionalString(pipe)
        case .dcomActivation(let className):
            u8(6); optionalString(className)
        case .wmiProcessCreate: u8(7)
        case .encryptedSMB: u8(8)
        case .kerberosServer: u8(9)
        }
    }
}

extension HostFactReader {
    mutating func labels() -> FlowLabels? {
        guard let flags = u8(), let sni = optionalString() else { return nil }
        var l = FlowLabels()
        l.hasTLS = flags & 1 != 0
        l.hasHTTP = flags & 2 != 0
        l.identifiedUnknown = flags & 4 != 0
        l.hasClientHello = flags & 16 != 0
        l.serverName = sni
        if l.hasClientHello && sni == nil {
            guard let n = u8() else { return nil }
            for _ in 0..<n {
                guard let a = string() else { return nil }
                l.alpn.append(a)
            }
            guard let ja3 = optionalString(), let ja4 = optionalString() else { return nil }
            l.ja3 = ja3
            l.ja4 = ja4
        }
        guard let host = optionalString() else { return nil }
        l.httpHost = host
        return l
    }

    mutating func endpoints() -> SessionEndpoints? {
        guard let c = ip(), let s = ip(), let p = u16() else { return nil }
        return SessionEndpoints(client: c, server: s, serverPort: p)
    }

    mutating func remoteAccess() -> RemoteAccessFact? {
        guard let tag = u8() else { return nil }
        switch tag {
        case 0:
            return string().map { .treeConnect(path: $0) }
        case 1:
            guard let share = string(), let name = string(), let pipe = bool(), let w = bool() else { return nil }
            return .open(share: share, name: name, isPipe: pipe, writeAccess: w)
        case 2:
            guard let share = string(), let name = string() else { return nil }
            return .write(share: share, name: name)
        case 3:
            guard let m = u8(), let user = string(), let domain = string(), let ws = string(), let outcome = u8(),
                  let status = u32() else { return nil }
            return .authentication(AuthenticationAttempt(method: m == 0 ? .ntlm : .kerberos, user: user, domain: domain,
                                                         workstation: ws, success: outcome == 0 ? nil : outcome == 2,
                                                         status: status))
        case 4:
            return string().map { .rpcBind(RPCInterface(uuid: $0)) }
        case 5:
            guard let uuid = optionalString(), let opnum = u16(), let pipe = optionalString() else { return nil }
            return .rpcCall(interface: uuid.map { RPCInterface(uuid: $0) }, opnum: opnum, pipe: pipe)
        case 6:
            return optionalString().map { .dcomActivation(className: $0) }
        case 7: return .wmiProcessCreate
        case 8: return .encryptedSMB
        case 9: return .kerberosServer
        default: return nil
        }
    }
}
