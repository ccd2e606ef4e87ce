import Events
import PacketCore

/// Minimal DER reading for Kerberos (RFC 4120): tag, definite length, contents. Nil on anything odd.
enum DER {
    static func element(_ c: inout ByteCursor) -> (tag: UInt8, content: UnsafeRawBufferPointer)? {
        guard let tag = c.u8(), let first = c.u8() else { return nil }
        var length = 0
        if first & 0x80 == 0 {
            length = Int(first)
        } else {
            let n = Int(first & 0x7F)
            guard n >= 1 && n <= 4 else { return nil }
            for _ in 0..<n {
                guard let b = c.u8() else { return nil }
                length = length << 8 | Int(b)
            }
        }
        guard let content = c.take(length) else { return nil }
        return (tag, content)
    }

    /// The contents of the context-tagged field `[n]` inside a SEQUENCE's contents.
    static func field(_ seq: UnsafeRawBufferPointer, _ n: UInt8) -> UnsafeRawBufferPointer? {
        var c = ByteCursor(seq)
        while !c.isAtEnd {
            guard let e = element(&c) else { return nil }
            if e.tag == 0xA0 | n { return e.content }
        }
        return nil
    }

    /// The contents of a single inner element of the given tag (e.g. the SEQUENCE inside `[n]`).
    static func inner(_ bytes: UnsafeRawBufferPointer, tag: UInt8) -> UnsafeRawBufferPointer? {
        var c = ByteCursor(bytes)
        guard let e = element(&c), e.tag == tag else { return nil }
        return e.content
    }

    static func integer(_ bytes: UnsafeRawBufferPointer) -> Int? {
        guard let i = inner(bytes, tag: 0x02), i.count >= 1, i.count <= 8 else { return nil }
        var v = Int(Int8(bitPattern: i[0]))
        for b in i.dropFirst() { v = v << 8 | Int(b) }
        return v
    }

    static func string(_ bytes: UnsafeRawBufferPointer) -> String? {
        var c = ByteCursor(bytes)
        guard let e = element(&c), e.tag == 0x1B || e.tag == 0x0C || e.tag == 0x16 else { return nil }
        return latin1(e.content, limit: 256)
    }

    /// PrincipalName: `name-string [1] SEQUENCE OF KerberosString`, joined with "/".
    static func principal(_ bytes: UnsafeRawBufferPointer) -> String? {
        guard let seq = inner(bytes, tag: 0x30), let names = field(seq, 1), let list = inner(names, tag: 0x30) else { return nil }
        var c = ByteCursor(list)
        var parts: [String] = []
        while !c.isAtEnd && parts.count < 4 {
            guard let e = element(&c) else { break }
            parts.append(latin1(e.content, limit: 256))
        }
        return parts.isEmpty ? nil : parts.joined(separator: "/")
    }
}

/// Kerberos messages of the AS exchange (RFC 4120), over UDP and TCP port 88.
public enum Kerberos {
    public enum Message: Equatable {
        case asRequest(user: String, realm: String)
        case asReply(user: String, realm: String)
        case tgsReply
        case error(code: Int, user: String?, realm: String?)
    }

    public static func parse(_ bytes: UnsafeRawBufferPointer) -> Message? {
        var c = ByteCursor(bytes)
        guard let app = DER.element(&c), let seq = DER.inner(app.content, tag: 0x30) else { return nil }
        switch app.tag {
        case 0x6A:  // AS-REQ
            guard let bodyField = DER.field(seq, 4), let body = DER.inner(bodyField, tag: 0x30) else { return nil }
            let user = DER.field(body, 1).flatMap(DER.principal) ?? ""
            let realm = DER.field(body, 2).flatMap(DER.string) ?? ""
            return .asRequest(user: user, realm: realm)
        case 0x6B:  // AS-REP
            let realm = DER.field(seq, 3).flatMap(DER.string) ?? ""
            let user = DER.field(seq, 4).flatMap(DER.principal) ?? ""
            return .asReply(user: user, realm: realm)
        case 0x6D:
            return .tgsReply
        case 0x7E:  // KRB-ERROR
            guard let code = DER.field(seq, 6).flatMap(DER.integer) else { return nil }
            return .error(code: code, user: DER.field(seq, 8).flatMap(DER.principal), realm: DER.field(seq, 7).flatMap(DER.string))
        default:
            return nil
        }
    }

    /// Error codes that mean the client's credentials or account were refused (a failed logon attempt):
    /// C_PRINCIPAL_UNKNOWN, CLIENT_REVOKED, KEY_EXPIRED, PREAUTH_FAILED. PREAUTH_REQUIRED (25) is the
    /// normal first step of a logon and is not one.
    public static let failureCodes: Set<Int> = [6, 18, 23, 24]

    public static func errorName(_ code: Int) -> String {
        switch code {
        case 6: return "KDC_ERR_C_PRINCIPAL_UNKNOWN"
        case 18: return "KDC_ERR_CLIENT_REVOKED"
        case 23: return "KDC_ERR_KEY_EXPIRED"
        case 24: return "KDC_ERR_PREAUTH_FAILED"
        case 25: return "KDC_ERR_PREAUTH_REQUIRED"
        default: return "KRB_ERROR_\(code)"
        }
    }
}

/// Kerberos AS exchanges on port 88 (UDP packets and TCP streams): who asked for a ticket and whether the
/// KDC refused. Feeds password-spraying and brute-force detection, and marks KDCs (domain controllers).
public final class KerberosAnalyzer: PacketAnalyzer, StreamConsumer {
    public let name = "kerberos"
    /// Strong on purpose: the detector holds no reference back, and a weakly referenced object pays the
    /// slow (side-table) reference count on every retain in the per-packet analyser loop.
    public var observer: (any RemoteAccessObserver)?
    public private(set) var messages: UInt64 = 0

    struct Pending { var generation: UInt32; var user: String; var realm: String }
    var pending: [Int32: Pending] = [:]
    var assemblers: [Int32: (UInt32, [MessageAssembler])] = [:]

    /// The worker's bound on message buffers (shared with its other stream parsers).
    let budget: ParserMemoryBudget

    public init(budget: ParserMemoryBudget = ParserMemoryBudget()) { self.budget = budget }

    // UDP: one message per datagram.
    public var packetTransports: PacketTransports { .udp }

    public func packet(_ context: PacketContext, flows: FlowTable) {
        guard context.packet.ipProtocol == IPProtocol.udp, context.packet.sourcePort == 88 || context.packet.destinationPort == 88 else { return }
        let record = flows[context.slot]
        handle(context.payload, toServer: context.packet.destinationPort == 88, record: record, fromOriginator: context.fromOriginator,
               slot: context.slot, table: flows, time: context.packet.timestamp)
    }

    func handle(_ bytes: UnsafeRawBufferPointer, toServer: Bool, record: FlowRecord, fromOriginator: Bool, slot: Int32, table: FlowTable, time: Timestamp) {
        guard let m = Kerberos.parse(bytes) else { return }
        messages &+= 1
        if record.appProtocol == 0 { table.setAppProtocol(AppProtocol.kerberos.rawValue, slot: slot) }
        let requestFromOriginator = toServer ? fromOriginator : !fromOriginator
        let ep = requestFromOriginator
            ? SessionEndpoints(client: record.originator, server: record.responder, serverPort: record.responderPort)
            : SessionEndpoints(client: record.responder, server: record.originator, serverPort: record.originatorPort)
        switch m {
        case .asRequest(let user, let realm):
            pending[slot] = Pending(generation: record.generation, user: user, realm: realm)
        case .asReply(let user, let realm):
            observer?.observe(.kerberosServer, on: ep, at: time)
            observer?.observe(.authentication(AuthenticationAttempt(method: .kerberos, user: user, domain: realm, success: true, status: 0)), on: ep, at: time)
            pending[slot] = nil
        case .tgsReply:
            observer?.observe(.kerberosServer, on: ep, at: time)
        case .error(let code, let user, let realm):
            observer?.observe(.kerberosServer, on: ep, at: time)
            let p = pending[slot].flatMap { $0.generation == record.generation ? $0 : nil }
            pending[slot] = nil
            guard Kerberos.failureCodes.contains(code), let name = user ?? p?.user, !name.isEmpty else { return }
            observer?.observe(.authentication(AuthenticationAttempt(method: .kerberos, user: name, domain: realm ?? p?.realm ?? "",
                                                                    success: false, status: UInt32(code))), on: ep, at: time)
        }
    }

    public func flowEnded(_ flow: FlowRecord, reason: FlowEndReason, slot: Int32) {
        guard reason != .activeTimeout else { return }
        pending[slot] = nil
    }

    // TCP: 4-byte length prefix (RFC 4120 §7.2.2).
    public func wantsStream(_ flow: FlowRecord, slot: Int32, firstPayload: UnsafeRawBufferPointer, fromOriginator: Bool) -> Bool {
        guard flow.responderPort == 88 || flow.originatorPort == 88 else { return false }
        assemblers[slot] = (flow.generation, [MessageAssembler(), MessageAssembler()])
        return true
    }

    public func stream(_ data: UnsafeRawBufferPointer, fromOriginator: Bool, slot: Int32, flows: FlowTable, at time: Timestamp) -> StreamVerdict {
        let record = flows[slot]
        guard var entry = assemblers[slot], entry.0 == record.generation else { return .doneWithFlow }
        let d = fromOriginator ? 0 : 1
        let toServer = fromOriginator ? record.responderPort == 88 : record.originatorPort == 88
        let outcome = entry.1[d].feed(data, headerLength: 4, cap: 16 << 10, budget: budget, lengthOf: { h in
            let l = Int(h[0] & 0x7F) << 24 | Int(h[1]) << 16 | Int(h[2]) << 8 | Int(h[3])
            return l <= 1 << 20 ? l + 4 : nil
        }, handle: { msg, _ in
            handle(UnsafeRawBufferPointer(rebasing: msg[4...]), toServer: toServer, record: record, fromOriginator: fromOriginator, slot: slot, table: flows, time: time)
        })
        assemblers[slot] = entry
        return outcome == .ok ? .more : .doneWithDirection
    }

    public func gap(fromOriginator: Bool, slot: Int32, flows: FlowTable, at time: Timestamp) {
        assemblers[slot]?.1[fromOriginator ? 0 : 1].reset()
    }

    public func streamEnded(_ flow: FlowRecord, slot: Int32) {
        assemblers[slot] = nil
        pending[slot] = nil
    }
}
