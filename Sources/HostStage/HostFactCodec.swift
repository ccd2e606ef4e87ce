import Analyzers
import Detectors
import PacketCore

/// Writes one fact record into a preallocated buffer (little-endian, strings length-prefixed and cut
/// to `HostFactWriter.maxString` bytes at a UTF-8 boundary). Nothing allocates: strings that are native
/// and contiguous are copied from their storage, others byte by byte from their UTF-8 view.
///
/// Layout of every record: `Int64` stamp (the producer's monotonic packet clock, the merge key), `UInt8`
/// kind, then the kind's fields (`HostFactCodec`).
public struct HostFactWriter {
    /// Longest string carried (SNI, Host, share, file and pipe names, user names). Longer ones are cut,
    /// in replay as live, so both decide on the same bytes.
    static let maxString = 512
    /// The largest record: a flow record, two strings and a little more; a remote-access fact with
    /// three strings. 4 KiB holds either with room.
    public static let capacity = 4096
    /// ALPN entries carried for a ClientHello without SNI, at most 64 bytes each (real ALPN ids are a few bytes).
    static let maxALPN = 8
    /// The bytes of one ALPN entry a record carries.
    static let maxALPNEntry = 64

    let base: UnsafeMutableRawPointer
    var count = 0

    public init(base: UnsafeMutableRawPointer) { self.base = base }

    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

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
    /// A count or length as `UInt32`, clamped to `HostFactCodec.figure32`.
    @inline(__always) mutating func figure32(_ v: Int) { u32(UInt32(HostFactCodec.clamp(v, HostFactCodec.figure32))) }
    /// An offset as `Int32`, clamped to `HostFactCodec.offset32`.
    @inline(__always) mutating func offset32(_ v: Int) { u32(UInt32(bitPattern: Int32(HostFactCodec.clamp(v, HostFactCodec.offset32)))) }
    /// A count or length as `UInt64`, clamped to `HostFactCodec.figure64`.
    @inline(__always) mutating func figure64(_ v: Int) { u64(UInt64(HostFactCodec.clamp(v, HostFactCodec.figure64))) }
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
public struct HostFactReader {
    var c: ByteCursor

    public init(_ b: UnsafeRawBufferPointer) { c = ByteCursor(b) }

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
        // Every Bool and enum byte must hold a value of its type before the bytes become a FlowRecord
        // (from a Kafka topic they are anyone's: another bit pattern is undefined behaviour).
        for (offset, largest) in Self.flowTagBytes where b[offset] > largest { return nil }
        // Copied to aligned storage before loading (the record is not aligned for FlowRecord).
        return withUnsafeTemporaryAllocation(of: FlowRecord.self, capacity: 1) { p in
            UnsafeMutableRawPointer(p.baseAddress!).copyMemory(from: b.baseAddress!, byteCount: size)
            return p[0]
        }
    }
    /// Offsets in a `FlowRecord` of its Bool and enum bytes, with the largest valid value of each.
    static let flowTagBytes: [(Int, UInt8)] = {
        let key = MemoryLayout<FlowRecord>.offset(of: \FlowRecord.key)!
        return [
            (MemoryLayout<FlowRecord>.offset(of: \FlowRecord.originatorIsA)!, 1),
            (MemoryLayout<FlowRecord>.offset(of: \FlowRecord.tcpState)!, TCPState.reset.rawValue),
            (key + MemoryLayout<FlowKey>.offset(of: \FlowKey.isIPv6)!, 1),
            (key + MemoryLayout<FlowKey>.offset(of: \FlowKey.hasPorts)!, 1),
            (key + MemoryLayout<FlowKey>.offset(of: \FlowKey.isOneWay)!, 1),
        ]
    }()

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
    mutating func labels(_ l: FlowLabels) {
        u8((l.hasTLS ? 1 : 0) | (l.hasHTTP ? 2 : 0) | (l.identifiedUnknown ? 4 : 0) | (l.hasClientHello ? 16 : 0))
        optionalString(l.serverName)
        if l.hasClientHello && l.serverName == nil {
            let n = min(l.alpn.count, HostFactWriter.maxALPN)
            u8(UInt8(n))
            for a in l.alpn.prefix(n) { var a = a; a.withUTF8 { bytes(UnsafeRawBufferPointer($0), limit: HostFactWriter.maxALPNEntry) } }
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
        case .exploit(let signature): u8(10); u8(signature.rawValue)
        case .rpcCallInferred(let iface, let opnum): u8(11); string(iface.uuid); u16(opnum)
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
        case 10: return u8().flatMap(ExploitSignature.init(rawValue:)).map { .exploit($0) }
        case 11:
            guard let uuid = string(), let opnum = u16() else { return nil }
            return .rpcCallInferred(interface: RPCInterface(uuid: uuid), opnum: opnum)
        default: return nil
        }
    }
}

/// The one wire form of `HostFact`: `encode` and `decode` are one `switch` each over the same field
/// lists, and a round-trip property test holds them together.
public enum HostFactCodec {
    /// Writes `stamp`, the kind and the fact's fields.
    public static func encode(_ fact: HostFact, stamp: Int64, into w: inout HostFactWriter) {
        w.reset(stamp: stamp, kind: fact.kind)
        switch fact {
        case .clockStarted(let t), .tick(let t):
            w.time(t)
        case .flowEnded(let flow, let reason, let labels):
            w.flow(flow); w.u8(reason.rawValue); w.labels(labels)
        case .tcpFlowStarted(let a, let b, let port, let t), .tcpAccepted(let a, let b, let port, let t):
            w.ip(a); w.ip(b); w.u16(port); w.time(t)
        case .remoteAccess(let fact, let ep, let t):
            w.endpoints(ep); w.time(t); w.remoteAccess(fact)
        case .dnsMessage(let f):
            w.time(f.timestamp); w.ip(f.client); w.ip(f.server); w.u16(f.clientPort); w.u16(f.serverPort)
            w.u8(f.ipProtocol); w.u8(f.appProtocol.rawValue); w.bool(f.isResponse); w.u16(f.id); w.u16(f.queryType)
            w.u16(f.responseCode)
            w.offset32(f.registeredDomainStart); w.offset32(f.publicSuffixStart)
            w.figure32(f.messageLength); w.figure32(f.answerCount); w.figure32(f.answerDataBytes)
            w.figure32(f.answerPayload.bytes); w.u32(f.answerPayload.entropy.bitPattern); w.u64(f.answerPayload.hash)
            // DNS names are at most 255 bytes: never cut (the offsets above point into them).
            w.bytes(f.name, limit: maxDNSName)
        case .flowElsewhere(let flow):
            w.flow(flow)
        case .ftpDataAnnounced(let channel, let t):
            w.ip(channel.host); w.u16(channel.port); w.time(channel.until); w.time(t)
        case .httpRequest(let q):
            w.ip(q.client); w.ip(q.server); w.u16(q.serverPort); w.time(q.time); w.optionalString(q.host)
            w.figure64(q.bytes)
        case .udpRequest(let q):
            w.ip(q.client); w.u16(q.clientPort); w.ip(q.server); w.u16(q.serverPort); w.time(q.flowStart); w.time(q.time)
            w.figure32(q.bytes); w.optionalString(q.serverName)
        }
    }

    /// The longest DNS name carried (the parser's names are at most 255 bytes).
    public static let maxDNSName = 1024

    // What the numeric fields carry, one definition each: the writer clamps to them, the reader refuses
    // what is outside the last two, and `carriesWhole` tests them all.
    /// Counts and lengths written in 32 and in 64 bits.
    static let figure32 = 0...Int(UInt32.max)
    static let figure64 = 0...Int.max
    /// Offsets into a DNS name, written in 32 bits (negative: absent).
    static let offset32 = Int(Int32.min)...Int(Int32.max)
    /// A DNS answer payload's byte count and entropy (bits per byte).
    static let payloadBytes = 0...Int(Int32.max)
    static let entropyBits: ClosedRange<Float> = 0...8

    @inline(__always) static func clamp(_ v: Int, _ r: ClosedRange<Int>) -> Int { min(max(v, r.lowerBound), r.upperBound) }

    /// Reads a record (stamp, kind, fields); nil when it is truncated or foreign. A DNS message's
    /// lower-cased name is written into `scratch` (at least `maxDNSName` bytes), which the fact points into.
    public static func decode(_ record: UnsafeRawBufferPointer, scratch: UnsafeMutableRawBufferPointer) -> (stamp: Int64, fact: HostFact)? {
        var r = HostFactReader(record)
        guard let stamp = r.i64(), let k = r.u8(), let kind = HostFactKind(rawValue: k) else { return nil }
        let fact: HostFact?
        switch kind {
        case .clockStarted:
            fact = r.time().map { .clockStarted($0) }
        case .tick:
            fact = r.time().map { .tick($0) }
        case .flowEnded:
            guard let flow = r.flow(), let raw = r.u8(), let reason = FlowEndReason(rawValue: raw), let labels = r.labels() else { return nil }
            fact = .flowEnded(flow, reason, labels)
        case .tcpFlowStarted:
            guard let a = r.ip(), let b = r.ip(), let port = r.u16(), let t = r.time() else { return nil }
            fact = .tcpFlowStarted(source: a, destination: b, port: port, at: t)
        case .tcpAccepted:
            guard let a = r.ip(), let b = r.ip(), let port = r.u16(), let t = r.time() else { return nil }
            fact = .tcpAccepted(server: a, client: b, port: port, at: t)
        case .remoteAccess:
            guard let ep = r.endpoints(), let t = r.time(), let f = r.remoteAccess() else { return nil }
            fact = .remoteAccess(f, ep, at: t)
        case .dnsMessage:
            fact = r.dnsMessage(scratch: scratch).map { .dnsMessage($0) }
        case .flowElsewhere:
            fact = r.flow().map { .flowElsewhere($0) }
        case .ftpDataAnnounced:
            guard let host = r.ip(), let port = r.u16(), let until = r.time(), let t = r.time() else { return nil }
            fact = .ftpDataAnnounced(FTPDataChannels.Expected(host: host, port: port, until: until), at: t)
        case .httpRequest:
            guard let c = r.ip(), let s = r.ip(), let port = r.u16(), let t = r.time(), let host = r.optionalString(),
                  let bytes = r.u64() else { return nil }
            fact = .httpRequest(HTTPRequestFact(client: c, server: s, serverPort: port, time: t, host: host, bytes: Int(clamping: bytes)))
        case .udpRequest:
            guard let c = r.ip(), let cport = r.u16(), let s = r.ip(), let sport = r.u16(), let start = r.time(), let t = r.time(),
                  let bytes = r.u32(), let name = r.optionalString() else { return nil }
            fact = .udpRequest(UDPRequestFact(client: c, clientPort: cport, server: s, serverPort: sport, flowStart: start, time: t, bytes: Int(bytes),
                                              serverName: name))
        }
        // Bytes left over mean the writer and reader disagree: not trusted.
        guard let fact, r.c.remaining == 0 else { return nil }
        return (stamp, fact)
    }
}

extension HostFactReader {
    mutating func dnsMessage(scratch: UnsafeMutableRawBufferPointer) -> DNSMessageFacts? {
        guard let t = time(), let client = ip(), let server = ip(), let cport = u16(), let sport = u16(),
              let ipProtocol = u8(), let app = u8(), let isResponse = bool(), let id = u16(), let qtype = u16(),
              let rcode = u16(), let registered = u32(), let suffix = u32(), let length = u32(), let answers = u32(),
              let answerBytes = u32(), let payloadBytes = u32(), let payloadEntropy = u32(), let payloadHash = u64(),
              let name = bytes(), name.count <= scratch.count else { return nil }
        // The detectors index the name with these offsets: from another process (a Kafka topic) they are
        // hostile, so each is absent (negative) or within the name; the payload's entropy is a figure in bits per byte.
        let registeredStart = Int(Int32(bitPattern: registered)), suffixStart = Int(Int32(bitPattern: suffix))
        let entropy = Float(bitPattern: payloadEntropy)
        guard registeredStart <= name.count, suffixStart <= name.count, HostFactCodec.entropyBits.contains(entropy),
              HostFactCodec.payloadBytes.contains(Int(payloadBytes)) else { return nil }
        for i in 0..<name.count {
            let b = name[i]
            scratch[i] = b >= 0x41 && b <= 0x5A ? b | 0x20 : b
        }
        return DNSMessageFacts(
            at: t, client: client, server: server, clientPort: cport, serverPort: sport, ipProtocol: ipProtocol,
            appProtocol: AppProtocol(rawValue: app) ?? .dns, isResponse: isResponse, id: id, queryType: qtype, responseCode: rcode,
            name: name, lowercaseName: UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(scratch)[..<name.count]),
            registeredDomainStart: registeredStart, publicSuffixStart: suffixStart,
            messageLength: Int(length), answerCount: Int(answers), answerDataBytes: Int(answerBytes),
            answerPayload: DNSAnswerPayload(bytes: Int(payloadBytes), entropy: entropy, hash: payloadHash))
    }
}
