import PacketCore

/// Who talked to whom, as the facts below name it: the client (the side that sent the request) and the
/// server it addressed. Taken from the flow's originator and responder.
public struct SessionEndpoints: Sendable, Hashable {
    public var client: IPAddress
    public var server: IPAddress
    public var serverPort: UInt16
    public init(client: IPAddress, server: IPAddress, serverPort: UInt16) {
        self.client = client
        self.server = server
        self.serverPort = serverPort
    }
    public init(_ flow: FlowRecord) {
        self.init(client: flow.originator, server: flow.responder, serverPort: flow.responderPort)
    }
}

/// An authentication attempt seen on the wire (NTLMSSP in SMB or DCE-RPC, Kerberos AS exchanges).
public struct AuthenticationAttempt: Sendable, Equatable {
    public enum Method: String, Sendable { case ntlm, kerberos }
    public var method: Method
    public var user: String
    public var domain: String
    public var workstation: String
    /// nil while the outcome is not known (no response seen).
    public var success: Bool?
    /// NT status (NTLM over SMB) or Kerberos error code; 0 on success.
    public var status: UInt32
    public init(method: Method, user: String, domain: String = "", workstation: String = "", success: Bool?, status: UInt32) {
        self.method = method
        self.user = user
        self.domain = domain
        self.workstation = workstation
        self.success = success
        self.status = status
    }
}

/// One thing an application analyser learned that matters for lateral movement.
///
/// Analysers extract these facts; the lateral-movement detector decides what they mean (Zeek's split of
/// analysis and policy). Facts are produced per SMB/DCE-RPC/Kerberos message of interest, never per
/// packet, so they may carry strings.
public enum RemoteAccessFact: Sendable, Equatable {
    /// SMB TREE_CONNECT request for a share path (`\\host\ADMIN$`).
    case treeConnect(path: String)
    /// SMB CREATE of a file or named pipe on a share (`share` is the share name, e.g. `ADMIN$`).
    case open(share: String, name: String, isPipe: Bool, writeAccess: Bool)
    /// The first SMB WRITE to a file (not a pipe) on a share, per file handle.
    case write(share: String, name: String)
    /// An authentication attempt and, once known, its outcome.
    case authentication(AuthenticationAttempt)
    /// A DCE-RPC BIND/ALTER_CONTEXT to an interface.
    case rpcBind(RPCInterface)
    /// A DCE-RPC REQUEST; `interface` is nil when the bind was not seen. `pipe` names the SMB pipe, if any.
    case rpcCall(interface: RPCInterface?, opnum: UInt16, pipe: String?)
    /// A DCOM remote activation (an activation blob on the endpoint mapper port): the client asked the
    /// server to create a COM object, the first step of DCOM/WMI lateral movement.
    case dcomActivation(className: String?)
    /// A DCOM call whose arguments name WMI's `Win32_Process` (remote process creation through WMI),
    /// recognisable even when the interface binding was not seen.
    case wmiProcessCreate
    /// SMB3 encrypted traffic (transform header): nothing further is visible.
    case encryptedSMB
    /// The server answered a Kerberos request (it is a KDC, i.e. a domain controller).
    case kerberosServer
    /// Protocol misuse that exploitation produces (once per flow and kind).
    case exploit(ExploitSignature)
    /// A DCE-RPC REQUEST on a context whose bind was not seen, identified by its opnum and stub shape
    /// (`DCERPC.looksLikeGetNCChanges`): an inference, which the detector reports as such.
    case rpcCallInferred(interface: RPCInterface, opnum: UInt16)
}

/// Protocol misuse seen on the wire that exploitation tools produce and ordinary clients and servers do
/// not: evidence the analysers extract; the lateral-movement detector decides what it means.
public enum ExploitSignature: UInt8, Sendable, CaseIterable {
    /// SMB1 TRANSACTION2_SECONDARY continuing an NT_TRANSACT of the same transaction (the type confusion
    /// EternalBlue uses to overflow the FEA-list conversion).
    case smbTransactionMismatch = 0
    /// SMB1 NT_TRANSACT with an undefined function and over 64 KiB of data announced (EternalBlue's
    /// oversized FEA list).
    case smbOversizedNTTransact = 1
    /// SMB1 TRANSACTION2 with the SESSION_SETUP subcommand, which no client uses: DoublePulsar's ping,
    /// shellcode upload or uninstall.
    case doublePulsarRequest = 2
    /// A TRANSACTION2 response whose multiplex id the server changed to 0x51–0x53: an installed
    /// DoublePulsar implant answering.
    case doublePulsarReply = 3
    /// SMB1 TRANSACTION PeekNamedPipe on FID 0: the MS17-010 vulnerability check of scanners and worms.
    case ms17010Probe = 4
    /// STATUS_INSUFF_SERVER_RESOURCES answering that check: the server is unpatched.
    case ms17010Vulnerable = 5
    /// Netlogon NetrServerAuthenticate(2/3) with an all-zero client credential (Zerologon).
    case netlogonZeroCredential = 6
    /// Netlogon NetrServerReqChallenge with an all-zero client challenge (Zerologon).
    case netlogonZeroChallenge = 7
    /// Netlogon NetrServerPasswordSet2 with an all-zero authenticator or new password (Zerologon's
    /// reset of the DC's machine password).
    case netlogonZeroPasswordSet = 8
    /// An SMB 3.1.1 compression transform header whose original size and offset overflow 32 bits or
    /// exceed any negotiated size (SMBGhost, CVE-2020-0796).
    case smbCompressionOverflow = 9

    /// The name in flow events (`smb.exploit_signatures`, `dce_rpc.exploit_signatures`) and alert details.
    public var name: String {
        switch self {
        case .smbTransactionMismatch: return "nt_transact_trans2_secondary_mismatch"
        case .smbOversizedNTTransact: return "oversized_nt_transact"
        case .doublePulsarRequest: return "trans2_session_setup"
        case .doublePulsarReply: return "doublepulsar_reply"
        case .ms17010Probe: return "ms17_010_probe"
        case .ms17010Vulnerable: return "ms17_010_vulnerable_reply"
        case .netlogonZeroCredential: return "netlogon_zero_credential"
        case .netlogonZeroChallenge: return "netlogon_zero_challenge"
        case .netlogonZeroPasswordSet: return "netlogon_zero_password_set"
        case .smbCompressionOverflow: return "smb3_compression_overflow"
        }
    }
}

/// Signatures already reported on one flow (each once per flow).
struct SignatureSet {
    var bits: UInt16 = 0
    /// Inserts `s`; true when it is new.
    mutating func insert(_ s: ExploitSignature) -> Bool {
        let b = UInt16(1) << UInt16(s.rawValue)
        defer { bits |= b }
        return bits & b == 0
    }
    var isEmpty: Bool { bits == 0 }
    var names: [String] { ExploitSignature.allCases.filter { bits & UInt16(1) << UInt16($0.rawValue) != 0 }.map(\.name) }
}

/// Receives facts from the analysers (the lateral-movement detector implements it).
public protocol RemoteAccessObserver: AnyObject {
    func observe(_ fact: RemoteAccessFact, on endpoints: SessionEndpoints, at time: Timestamp)
}

/// Reassembles length-prefixed messages (NetBIOS session, DCE-RPC fragments, Kerberos over TCP) from
/// the in-order byte stream of one direction, keeping at most `cap` bytes of each message.
///
/// Messages that fit in one delivery are handed over in place (no copy). A message spanning deliveries
/// is copied into a `ParserBuffer` (charged to the worker's `ParserMemoryBudget`) up to `cap` bytes; its
/// remainder is skipped, so a 1 MB SMB WRITE costs one bounded prefix. Handlers get the prefix and the
/// message's full length, and must accept truncation; the remainder streams past `rest` in place (for
/// file hashing), never copied.
struct MessageAssembler {
    enum Outcome {
        case ok
        /// `lengthOf` rejected a header: the stream is not this protocol or lost sync.
        case desync
        /// The worker's parser budget could not hold a message spanning segments (counted by the budget).
        case refused
    }

    var buffer: ParserBuffer?
    /// Full length of the message being buffered, or -1 while its header is incomplete.
    var messageLength = -1
    var skip = 0
    /// Bytes copied into buffers (for counters).
    var bufferedBytes = 0

    mutating func feed(_ data: UnsafeRawBufferPointer, headerLength: Int, cap: Int, budget: ParserMemoryBudget,
                       lengthOf: (UnsafeRawBufferPointer) -> Int?,
                       handle: (UnsafeRawBufferPointer, Int) -> Void,
                       rest: (UnsafeRawBufferPointer) -> Void = { _ in }) -> Outcome {
        var d = data
        while !d.isEmpty {
            if skip > 0 {
                let n = min(skip, d.count)
                skip -= n
                rest(UnsafeRawBufferPointer(rebasing: d[..<n]))
                d = UnsafeRawBufferPointer(rebasing: d[n...])
                continue
            }
            guard buffer != nil else {
                if messageLength < 0 && d.count >= headerLength {
                    guard let l = lengthOf(UnsafeRawBufferPointer(rebasing: d[..<headerLength])), l >= headerLength else { return .desync }
                    if d.count >= l {
                        handle(UnsafeRawBufferPointer(rebasing: d[..<l]), l)
                        d = UnsafeRawBufferPointer(rebasing: d[l...])
                        continue
                    }
                    if d.count >= cap {
                        handle(UnsafeRawBufferPointer(rebasing: d[..<cap]), l)
                        rest(UnsafeRawBufferPointer(rebasing: d[cap...]))
                        skip = l - d.count
                        return .ok
                    }
                    messageLength = l
                }
                // A header or message cut by the end of this delivery.
                guard let made = ParserBuffer(budget: budget, holding: d) else { reset(); return .refused }
                buffer = made
                bufferedBytes &+= d.count
                if messageLength < 0 { return .ok }
                d = UnsafeRawBufferPointer(rebasing: d[d.count...])
                if made.count < min(messageLength, cap) { return .ok }
                continue
            }
            if messageLength < 0 {
                let n = min(headerLength - buffer!.count, d.count)
                guard buffer!.append(UnsafeRawBufferPointer(rebasing: d[..<n])) else { reset(); return .refused }
                bufferedBytes &+= n
                d = UnsafeRawBufferPointer(rebasing: d[n...])
                if buffer!.count == headerLength {
                    let l = buffer!.withUnsafeBytes { lengthOf($0) }
                    guard let l, l >= headerLength else { reset(); return .desync }
                    messageLength = l
                } else {
                    continue
                }
            } else {
                let want = min(messageLength, cap) - buffer!.count
                let n = min(want, d.count)
                guard buffer!.append(UnsafeRawBufferPointer(rebasing: d[..<n])) else { reset(); return .refused }
                bufferedBytes &+= n
                d = UnsafeRawBufferPointer(rebasing: d[n...])
            }
            if let b = buffer, b.count >= min(messageLength, cap) {
                let l = messageLength
                buffer = nil
                b.withUnsafeBytes { handle($0, l) }
                skip = l - b.count
                messageLength = -1
            }
        }
        return .ok
    }

    mutating func reset() {
        buffer = nil
        messageLength = -1
        skip = 0
    }
}

/// UTF-16LE bytes to a String (names in SMB2 and NTLMSSP), with invalid units replaced; at most `limit` units.
func utf16LE(_ bytes: UnsafeRawBufferPointer, limit: Int = 512) -> String {
    var n = min(bytes.count / 2, limit)
    while n > 0 && bytes[2 * n - 2] == 0 && bytes[2 * n - 1] == 0 { n -= 1 }
    // Share, file and pipe names are almost always ASCII: then the text is every other byte, written
    // straight into the string (no array of code units, no transcoding).
    var ascii = true
    for i in 0..<n where bytes[2 * i + 1] != 0 || bytes[2 * i] >= 0x80 {
        ascii = false
        break
    }
    if ascii {
        return String(unsafeUninitializedCapacity: n) { out in
            for i in 0..<n { out[i] = bytes[2 * i] }
            return n
        }
    }
    var units: [UInt16] = []
    units.reserveCapacity(n)
    for i in 0..<n { units.append(UInt16(bytes[2 * i]) | UInt16(bytes[2 * i + 1]) << 8) }
    return String(decoding: units, as: UTF16.self)
}

/// 8-bit text (OEM strings in NTLMSSP, SMB1 without Unicode, Kerberos GeneralString), NULs trimmed.
func latin1(_ bytes: UnsafeRawBufferPointer, limit: Int = 512) -> String {
    var s = ""
    for b in bytes.prefix(limit) {
        if b == 0 { break }
        s.unicodeScalars.append(Unicode.Scalar(b))
    }
    return s
}

/// A small bounded list of distinct strings for flow events (first `limit` kept, the rest counted).
struct BoundedStrings {
    var items: [String] = []
    var dropped = 0
    let limit: Int
    init(limit: Int) { self.limit = limit }
    mutating func insert(_ s: String) {
        if items.contains(s) { return }
        if items.count >= limit { dropped += 1; return }
        items.append(s)
    }
}
