import Events
import PacketCore

/// Counters of the SMB analyser, published with the worker's statistics.
public struct SMBCounters: Sendable, Equatable {
    public var flows: UInt64 = 0
    public var messages: UInt64 = 0
    public var encryptedMessages: UInt64 = 0
    /// NetBIOS/SMB framing that made no sense: the direction is no longer followed.
    public var desyncs: UInt64 = 0
    /// Bytes copied to assemble messages spanning segments (bounded per message).
    public var bufferedBytes: UInt64 = 0
    /// Tree, file and pending-request tables that were full (entries not tracked).
    public var tableFull: UInt64 = 0
    public init() {}
}

/// SMB2/3 over NetBIOS session framing (TCP 445 and 139), with SMB1 recognised for negotiate, session
/// setup and tree connect.
///
/// From the reassembled stream it extracts the dialect, NTLMSSP identities and the SESSION_SETUP outcome,
/// share paths, created file and pipe names, writes, and DCE-RPC over named pipes (WRITE and IOCTL
/// transceive). Compounded requests are followed through `NextCommand`. Messages spanning segments are
/// assembled up to `messageCap` bytes; a large WRITE costs only its prefix. Encrypted SMB3 (transform
/// header) is recognised and counted; its content is not visible.
public final class SMBAnalyzer: StreamConsumer {
    public let name = "smb"
    /// Strong on purpose: the detector holds no reference back, and a weakly referenced object pays the
    /// slow (side-table) reference count on every retain in the per-packet analyser loop.
    public var observer: (any RemoteAccessObserver)?
    public private(set) var counters = SMBCounters()
    /// Bytes of one message kept when it spans segments.
    public let messageCap: Int
    /// The worker's bound on message buffers (shared with its other stream parsers).
    let budget: ParserMemoryBudget

    static let statusMoreProcessing: UInt32 = 0xC000_0016
    static let statusLogonFailure: UInt32 = 0xC000_006D
    static let statusNotImplemented: UInt32 = 0xC000_0002
    static let statusInsufficientServerResources: UInt32 = 0xC000_0205

    struct OpenFile {
        var name: String
        var share: String
        var isPipe: Bool
        var wrote = false
        var rpc = DCERPCAssociation()
    }

    /// Per-flow state. A class so the dictionary entry is mutated in place.
    final class Flow {
        let generation: UInt32
        var assemblers = [MessageAssembler(), MessageAssembler()]
        var dialect: UInt16 = 0
        var smb1 = false
        var encrypted = false
        var trees: [UInt32: String] = [:]
        var pendingTrees: [(message: UInt64, path: String)] = []
        var files: [UInt64: OpenFile] = [:]
        var pendingCreates: [(message: UInt64, tree: UInt32, name: String)] = []
        var pendingAuth: AuthenticationAttempt?
        var authResults = BoundedStrings(limit: 8)
        var treePaths = BoundedStrings(limit: 16)
        var fileNames = BoundedStrings(limit: 32)
        var pipeNames = BoundedStrings(limit: 16)
        var users = BoundedStrings(limit: 8)
        var domains = BoundedStrings(limit: 4)
        var workstations = BoundedStrings(limit: 4)
        var rpc = RPCFlowFacts()
        var adminWrites = 0
        var signatures = SignatureSet()
        /// SMB1 NT_TRANSACT requests by transaction (TID, PID, UID, MID), for the TRANSACTION2_SECONDARY
        /// mismatch; the most recent 8.
        var ntTransactions: [UInt64] = []
        /// MIDs of the most recent 16 TRANSACTION2 requests (a server answering another MID changed it).
        var trans2MIDs: [UInt16] = []
        var trans2Next = 0
        /// MIDs of MS17-010 checks awaiting their answer (the most recent 4).
        var probeMIDs: [UInt16] = []
        /// File data being hashed, by file key (SMBFiles.swift); READs waiting for their response.
        var transfers: [UInt64: SMBTransfer] = [:]
        var pendingReads: [UInt64: (key: UInt64, offset: UInt64)] = [:]
        /// Per direction: READ/WRITE data still to stream past beyond the assembled prefix.
        var tails: [SMBDataTail?] = [nil, nil]
        var hashedBytes = 0
        /// File data held ahead of holes, all transfers together.
        var heldFileBytes = 0
        init(generation: UInt32) { self.generation = generation }
    }

    var flows: [Int32: Flow] = [:]

    /// 4 KiB holds every header, name, NTLMSSP message and pipe RPC bind/request start we read, while a
    /// bulk READ/WRITE copies no more than that of its 64 KiB–1 MiB body.
    /// The worker's file hashing (SMB2/3 reads and writes as `spanwatch.file`), nil when files are off.
    let files: FileHashing?

    public init(messageCap: Int = 4 << 10, budget: ParserMemoryBudget = ParserMemoryBudget(), files: FileHashing? = nil) {
        self.messageCap = messageCap
        self.budget = budget
        self.files = files
    }

    // MARK: StreamConsumer

    public func wantsStream(_ flow: FlowRecord, slot: Int32, firstPayload: UnsafeRawBufferPointer, fromOriginator: Bool) -> Bool {
        let r = flow.responderPort, o = flow.originatorPort
        let byPort = r == 445 || r == 139 || o == 445 || o == 139
        let byContent = firstPayload.count >= 8 && firstPayload[0] == 0 && firstPayload[5] == 0x53 && firstPayload[6] == 0x4D
            && firstPayload[7] == 0x42 && (firstPayload[4] == 0xFE || firstPayload[4] == 0xFF || firstPayload[4] == 0xFD)
        guard byPort || byContent else { return false }
        flows[slot] = Flow(generation: flow.generation)
        counters.flows &+= 1
        return true
    }

    public func stream(_ data: UnsafeRawBufferPointer, fromOriginator: Bool, slot: Int32, flows table: FlowTable, at time: Timestamp) -> StreamVerdict {
        guard let f = flows[slot] else { return .doneWithFlow }
        let record = table[slot]
        guard record.generation == f.generation else { return .doneWithFlow }
        let d = fromOriginator ? 0 : 1
        let before = f.assemblers[d].bufferedBytes
        let outcome = f.assemblers[d].feed(data, headerLength: 4, cap: messageCap, budget: budget, lengthOf: { h in
            // NetBIOS session service: type, 7 reserved bits + 17-bit length.
            guard h[0] == 0x00 || h[0] == 0x81 || h[0] == 0x82 || h[0] == 0x83 || h[0] == 0x84 || h[0] == 0x85, h[1] & 0xFE == 0 else { return nil }
            return 4 + (Int(h[1] & 1) << 16 | Int(h[2]) << 8 | Int(h[3]))
        }, handle: { msg, _ in
            guard msg[0] == 0x00, msg.count > 4 else { return }
            self.frame(UnsafeRawBufferPointer(rebasing: msg[4...]), flow: f, record: record, slot: slot, fromOriginator: fromOriginator, table: table, time: time)
        }, rest: { bytes in
            if f.tails[d] != nil { self.tail(bytes, flow: f, direction: d, time: time) }
        })
        counters.bufferedBytes &+= UInt64(f.assemblers[d].bufferedBytes &- before)
        switch outcome {
        case .ok: return .more
        case .desync:
            counters.desyncs &+= 1
            return .doneWithDirection
        case .refused: return .doneWithDirection
        }
    }

    public func gap(fromOriginator: Bool, slot: Int32, flows: FlowTable, at time: Timestamp) {
        flows_reset(slot, direction: fromOriginator ? 0 : 1)
    }

    func flows_reset(_ slot: Int32, direction: Int) {
        flows[slot]?.assemblers[direction].reset()
        if let f = flows[slot] { tailLost(f, direction: direction) }
    }

    public func streamEnded(_ flow: FlowRecord, slot: Int32) {
        guard let f = flows[slot], f.generation == flow.generation else { return }
        if let a = f.pendingAuth {
            observer?.observe(.authentication(a), on: SessionEndpoints(flow), at: flow.lastSeen)
        }
        for key in f.transfers.keys.sorted() { finishTransfer(f, key: key, record: flow, time: flow.lastSeen) }
        // The flow's fields were written before this call (contributeStreamFields); drop the state.
        flows[slot] = nil
    }

    // MARK: SMB messages

    func endpoints(_ record: FlowRecord, requestFromOriginator: Bool) -> SessionEndpoints {
        requestFromOriginator
            ? SessionEndpoints(client: record.originator, server: record.responder, serverPort: record.responderPort)
            : SessionEndpoints(client: record.responder, server: record.originator, serverPort: record.originatorPort)
    }

    /// One NetBIOS session message: an SMB1, SMB2 (possibly compounded) or SMB3 transform message.
    func frame(_ m: UnsafeRawBufferPointer, flow f: Flow, record: FlowRecord, slot: Int32, fromOriginator: Bool, table: FlowTable, time: Timestamp) {
        guard m.count >= 4, m[1] == 0x53, m[2] == 0x4D, m[3] == 0x42 else { return }
        if record.appProtocol == 0 { table.setAppProtocol(AppProtocol.smb.rawValue, slot: slot) }
        counters.messages &+= 1
        switch m[0] {
        case 0xFE:
            var offset = 0
            var chained = 0
            while offset < m.count && chained < 32 {
                let msg = UnsafeRawBufferPointer(rebasing: m[offset...])
                var c = ByteCursor(msg, offset: 20)
                let next = Int(c.u32le() ?? 0)
                let end = next > 0 && next <= msg.count ? next : msg.count
                smb2(UnsafeRawBufferPointer(rebasing: msg[..<end]), flow: f, record: record, fromOriginator: fromOriginator, time: time)
                guard next >= 64 else { break }
                offset += next
                chained += 1
            }
        case 0xFD, 0xFC:
            if m[0] == 0xFC, compressionOverflows(m) {
                let serverIsResponder = record.responderPort == 445 || record.responderPort == 139
                signature(.smbCompressionOverflow, flow: f, ep: endpoints(record, requestFromOriginator: serverIsResponder), time: time)
            }
            counters.encryptedMessages &+= 1
            if !f.encrypted {
                f.encrypted = true
                // Whoever sends the first transform header, the server is the side on port 445/139.
                let serverIsResponder = record.responderPort == 445 || record.responderPort == 139
                observer?.observe(.encryptedSMB, on: endpoints(record, requestFromOriginator: serverIsResponder), at: time)
            }
        case 0xFF:
            smb1(m, flow: f, record: record, fromOriginator: fromOriginator, time: time)
        default:
            break
        }
    }

    func smb2(_ msg: UnsafeRawBufferPointer, flow f: Flow, record: FlowRecord, fromOriginator: Bool, time: Timestamp) {
        var c = ByteCursor(msg, offset: 4)
        guard let size = c.u16le(), size == 64, c.skip(2), let status = c.u32le(), let command = c.u16le(), c.skip(2),
              let flags = c.u32le(), c.skip(4), let messageID = c.u64le() else { return }
        let isResponse = flags & 0x1 != 0
        var tree: UInt32 = 0
        if flags & 0x2 == 0 {
            var t = ByteCursor(msg, offset: 36)
            tree = t.u32le() ?? 0
        }
        let requestFromOriginator = isResponse ? !fromOriginator : fromOriginator
        let ep = endpoints(record, requestFromOriginator: requestFromOriginator)
        var b = ByteCursor(msg, offset: 64)
        switch (command, isResponse) {
        case (0, true):  // NEGOTIATE
            if b.skip(4), let dialect = b.u16le(), dialect != 0x02FF { f.dialect = dialect }
        case (1, false):  // SESSION_SETUP request
            guard b.skip(12), let off = b.u16le(), let len = b.u16le(),
                  let blob = ByteCursor(msg).slice(at: Int(off), count: min(Int(len), max(0, msg.count - Int(off)))) else { return }
            authenticate(blob, flow: f)
        case (1, true):
            guard status != SMBAnalyzer.statusMoreProcessing, var a = f.pendingAuth else { return }
            a.success = status == 0
            a.status = status
            f.pendingAuth = nil
            f.authResults.insert(status == 0 ? "success" : SMBAnalyzer.statusName(status))
            observer?.observe(.authentication(a), on: ep, at: time)
        case (3, false):  // TREE_CONNECT
            guard b.skip(4), let off = b.u16le(), let len = b.u16le(),
                  let p = ByteCursor(msg).slice(at: Int(off), count: Int(len)) else { return }
            let path = utf16LE(p)
            f.treePaths.insert(path)
            if f.pendingTrees.count < 16 { f.pendingTrees.append((messageID, path)) } else { counters.tableFull &+= 1 }
            observer?.observe(.treeConnect(path: path), on: ep, at: time)
        case (3, true):
            guard let i = f.pendingTrees.firstIndex(where: { $0.message == messageID }) else { return }
            let path = f.pendingTrees.remove(at: i).path
            if status == 0 {
                if f.trees.count < 64 { f.trees[tree] = SMBAnalyzer.shareName(path) } else { counters.tableFull &+= 1 }
            }
        case (5, false):  // CREATE
            guard b.skip(24), let access = b.u32le(), b.skip(8), let disposition = b.u32le(), b.skip(4),
                  let off = b.u16le(), let len = b.u16le() else { return }
            let name = len == 0 ? "" : (ByteCursor(msg).slice(at: Int(off), count: Int(len)).map { utf16LE($0) } ?? "")
            let share = f.trees[tree] ?? ""
            // Midstream (tree connect not seen): well-known pipe names still identify a pipe.
            let isPipe = share == "IPC$" || (share.isEmpty && SMBAnalyzer.isWellKnownPipe(name))
            if isPipe { f.pipeNames.insert(name) } else if !name.isEmpty { f.fileNames.insert(name) }
            if f.pendingCreates.count < 32 { f.pendingCreates.append((messageID, tree, name)) } else { counters.tableFull &+= 1 }
            // Write access (FILE_WRITE_DATA, FILE_APPEND_DATA, GENERIC_WRITE, GENERIC_ALL) with a disposition
            // that creates or overwrites (SUPERSEDE, CREATE, OPEN_IF, OVERWRITE, OVERWRITE_IF).
            let writes = access & 0x5000_0006 != 0 && [0, 2, 3, 4, 5].contains(disposition)
            observer?.observe(.open(share: share, name: name, isPipe: isPipe, writeAccess: writes && !isPipe), on: ep, at: time)
        case (5, true):
            guard let i = f.pendingCreates.firstIndex(where: { $0.message == messageID }) else { return }
            let p = f.pendingCreates.remove(at: i)
            guard status == 0, b.skip(64), let persistent = b.u64le(), let volatile = b.u64le() else { return }
            let share = f.trees[p.tree] ?? ""
            if f.files.count >= 256 { counters.tableFull &+= 1; return }
            f.files[persistent ^ volatile] = OpenFile(name: p.name, share: share,
                                                      isPipe: share == "IPC$" || (share.isEmpty && SMBAnalyzer.isWellKnownPipe(p.name)))
        case (6, false):  // CLOSE
            guard b.skip(8), let persistent = b.u64le(), let volatile = b.u64le() else { return }
            f.files[persistent ^ volatile] = nil
            finishTransfer(f, key: persistent ^ volatile, record: record, time: time)
        case (8, false):  // READ
            guard files != nil, b.skip(4), let len = b.u32le(), let offset = b.u64le(), let persistent = b.u64le(), let volatile = b.u64le(),
                  len > 0, let file = f.files[persistent ^ volatile], !file.isPipe else { return }
            if f.pendingReads.count < 64 { f.pendingReads[messageID] = (persistent ^ volatile, offset) } else { counters.tableFull &+= 1 }
        case (8, true):
            guard let p = f.pendingReads.removeValue(forKey: messageID), status == 0, b.skip(2), let off = b.u8(), b.skip(1),
                  let len = b.u32le(), len > 0, Int(off) <= msg.count,
                  let t = transfer(f, key: p.key, clientIsOriginator: !fromOriginator) else { return }
            let available = UnsafeRawBufferPointer(rebasing: msg[Int(off)..<min(msg.count, Int(off) &+ Int(len))])
            fileData(available, total: Int(len), offset: p.offset, transfer: t, isWrite: false, flow: f, direction: fromOriginator ? 0 : 1, time: time)
        case (9, false):  // WRITE
            guard b.skip(2), let off = b.u16le(), let len = b.u32le() else { return }
            let writeOffset = b.u64le()
            guard let persistent = b.u64le(), let volatile = b.u64le() else { return }
            let key = persistent ^ volatile
            guard var file = f.files[key] else {
                // Handle opened before the capture started: a pipe if the data is DCE-RPC.
                if let data = ByteCursor(msg).slice(at: Int(off), count: min(Int(len), max(0, msg.count - Int(off)))),
                   DCERPC.header(data) != nil, f.files.count < 256 {
                    var file = OpenFile(name: "", share: f.trees[tree] ?? "", isPipe: true)
                    pipeData(data, file: &file, flow: f, ep: ep, time: time)
                    f.files[key] = file
                }
                return
            }
            if !file.isPipe && file.share.isEmpty && !file.wrote,
               let data = ByteCursor(msg).slice(at: Int(off), count: min(Int(len), max(0, msg.count - Int(off)))),
               let h = DCERPC.header(data), h.type == DCERPC.PacketType.bind.rawValue {
                file.isPipe = true  // a pipe opened on a tree whose connect was not seen
            }
            if file.isPipe {
                if let data = ByteCursor(msg).slice(at: Int(off), count: min(Int(len), max(0, msg.count - Int(off)))) {
                    pipeData(data, file: &file, flow: f, ep: ep, time: time)
                }
            } else {
                if !file.wrote {
                    file.wrote = true
                    if SMBAnalyzer.isAdminShare(file.share) { f.adminWrites += 1 }
                    observer?.observe(.write(share: file.share, name: file.name), on: ep, at: time)
                }
                if files != nil, len > 0, Int(off) <= msg.count, let offset = writeOffset, let t = transfer(f, key: key, clientIsOriginator: fromOriginator) {
                    let available = UnsafeRawBufferPointer(rebasing: msg[Int(off)..<min(msg.count, Int(off) &+ Int(len))])
                    fileData(available, total: Int(len), offset: offset, transfer: t, isWrite: true, flow: f, direction: fromOriginator ? 0 : 1, time: time)
                }
            }
            f.files[key] = file
        case (11, false):  // IOCTL
            guard b.skip(4), let ctl = b.u32le(), let persistent = b.u64le(), let volatile = b.u64le(),
                  let off = b.u32le(), let len = b.u32le(), ctl == 0x0011_C017 else { return }
            guard let data = ByteCursor(msg).slice(at: Int(off), count: min(Int(len), max(0, msg.count - Int(off)))) else { return }
            let key = persistent ^ volatile
            var file = f.files[key] ?? OpenFile(name: "", share: f.trees[tree] ?? "", isPipe: true)
            pipeData(data, file: &file, flow: f, ep: ep, time: time)
            if f.files[key] != nil || f.files.count < 256 { f.files[key] = file }
        default:
            break
        }
    }

    /// DCE-RPC PDUs written by the client into a named pipe.
    func pipeData(_ data: UnsafeRawBufferPointer, file: inout OpenFile, flow f: Flow, ep: SessionEndpoints, time: Timestamp) {
        var offset = 0
        var count = 0
        while offset < data.count && count < 16 {
            let rest = UnsafeRawBufferPointer(rebasing: data[offset...])
            guard let h = DCERPC.header(rest) else { return }
            let pdu = UnsafeRawBufferPointer(rebasing: rest[..<min(h.fragmentLength, rest.count)])
            let pipe = file.name
            file.rpc.clientPDU(pdu) { event in
                switch event {
                case .bind(let iface):
                    f.rpc.bind(iface)
                    observer?.observe(.rpcBind(iface), on: ep, at: time)
                case .call(let iface, let opnum):
                    f.rpc.call(iface, opnum)
                    observer?.observe(.rpcCall(interface: iface, opnum: opnum, pipe: pipe), on: ep, at: time)
                case .activation, .wmiProcessCreate:
                    break
                case .signature(let sig):
                    signature(sig, flow: f, ep: ep, time: time)
                case .inferredCall(let iface, let opnum):
                    f.rpc.inferred(iface, opnum)
                    observer?.observe(.rpcCallInferred(interface: iface, opnum: opnum), on: ep, at: time)
                case .ntlm(let auth):
                    if let a = NTLMSSP.authenticate(in: auth), !a.anonymous {
                        f.rpc.users.insert(a.user)
                        observer?.observe(.authentication(AuthenticationAttempt(method: .ntlm, user: a.user, domain: a.domain, workstation: a.workstation, success: nil, status: 0)), on: ep, at: time)
                    }
                }
            }
            offset += h.fragmentLength
            count += 1
        }
    }

    /// A SESSION_SETUP security blob from the client: remember the NTLMSSP AUTHENTICATE identity.
    func authenticate(_ blob: UnsafeRawBufferPointer, flow f: Flow) {
        guard let a = NTLMSSP.authenticate(in: blob) else { return }
        if !a.user.isEmpty { f.users.insert(a.user) }
        if !a.domain.isEmpty { f.domains.insert(a.domain) }
        if !a.workstation.isEmpty { f.workstations.insert(a.workstation) }
        guard !a.anonymous else { return }
        f.pendingAuth = AuthenticationAttempt(method: .ntlm, user: a.user, domain: a.domain, workstation: a.workstation, success: nil, status: 0)
    }

    /// SMB1: negotiate, session setup (NTLMSSP in extended security) and tree connect are recognised;
    /// NT_CREATE_ANDX, WRITE_ANDX and TRANSACTION (TransactNmPipe) are followed far enough to see file
    /// and pipe names and DCE-RPC over pipes (older tools and hosts still speak SMB1).
    func smb1(_ m: UnsafeRawBufferPointer, flow f: Flow, record: FlowRecord, fromOriginator: Bool, time: Timestamp) {
        var c = ByteCursor(m, offset: 4)
        guard let command = c.u8(), let status = c.u32le(), let flags = c.u8(), let flags2 = c.u16le() else { return }
        var hc = ByteCursor(m, offset: 24)
        guard let tid = hc.u16le(), let pid = hc.u16le(), let uid = hc.u16le(), let mid = hc.u16le() else { return }
        let transaction = UInt64(tid) << 48 | UInt64(pid) << 32 | UInt64(uid) << 16 | UInt64(mid)
        f.smb1 = true
        let isResponse = flags & 0x80 != 0
        let unicode = flags2 & 0x8000 != 0
        let ep = endpoints(record, requestFromOriginator: isResponse ? !fromOriginator : fromOriginator)
        var b = ByteCursor(m, offset: 32)
        guard let wordCount = b.u8() else { return }
        let wordsStart = b.offset
        guard b.skip(Int(wordCount) * 2), let byteCount = b.u16le() else { return }
        let bytesStart = b.offset
        let bytesEnd = min(m.count, bytesStart + Int(byteCount))
        var w = ByteCursor(m, offset: wordsStart)
        /// A NUL-terminated name at `start` (Unicode names are 2-byte aligned from the header).
        func name(at start: Int) -> String {
            var s = start
            if unicode && s % 2 == 1 { s += 1 }
            guard s < bytesEnd else { return "" }
            let rest = UnsafeRawBufferPointer(rebasing: m[s..<bytesEnd])
            if unicode {
                var n = 0
                while n + 1 < rest.count && !(rest[n] == 0 && rest[n + 1] == 0) { n += 2 }
                return utf16LE(UnsafeRawBufferPointer(rebasing: rest[..<n]))
            }
            return latin1(rest)
        }
        let key = 1 << 63 | UInt64(tid) << 16
        switch (command, isResponse) {
        case (0x73, false):
            if let data = ByteCursor(m).slice(at: bytesStart, count: bytesEnd - bytesStart) { authenticate(data, flow: f) }
        case (0x73, true):
            guard status != SMBAnalyzer.statusMoreProcessing, var a = f.pendingAuth else { return }
            a.success = status == 0
            a.status = status
            f.pendingAuth = nil
            f.authResults.insert(status == 0 ? "success" : SMBAnalyzer.statusName(status))
            observer?.observe(.authentication(a), on: ep, at: time)
        case (0x75, false):
            guard wordCount == 4, w.skip(6), let passwordLength = w.u16le() else { return }
            let path = name(at: bytesStart + Int(passwordLength))
            f.treePaths.insert(path)
            if f.pendingTrees.count < 16 { f.pendingTrees.append((UInt64(mid), path)) } else { counters.tableFull &+= 1 }
            observer?.observe(.treeConnect(path: path), on: ep, at: time)
        case (0x75, true):
            guard let i = f.pendingTrees.firstIndex(where: { $0.message == UInt64(mid) }) else { return }
            let path = f.pendingTrees.remove(at: i).path
            if status == 0 && f.trees.count < 64 { f.trees[UInt32(tid) | 1 << 31] = SMBAnalyzer.shareName(path) }
        case (0xA2, false):  // NT_CREATE_ANDX
            guard wordCount >= 24, w.skip(5), w.skip(2), w.skip(8), let access = w.u32le(), w.skip(16),
                  let disposition = w.u32le() else { return }
            let fileName = name(at: bytesStart).trimmingLeadingBackslash
            let share = f.trees[UInt32(tid) | 1 << 31] ?? ""
            let isPipe = share == "IPC$" || (share.isEmpty && SMBAnalyzer.isWellKnownPipe(fileName))
            if isPipe { f.pipeNames.insert(fileName) } else if !fileName.isEmpty { f.fileNames.insert(fileName) }
            if f.pendingCreates.count < 32 { f.pendingCreates.append((UInt64(mid), UInt32(tid) | 1 << 31, fileName)) } else { counters.tableFull &+= 1 }
            // SMB1 dispositions: SUPERSEDE 0, OPEN 1, CREATE 2, OPEN_IF 3, OVERWRITE 4, OVERWRITE_IF 5.
            let writes = access & 0x5000_0006 != 0 && [0, 2, 3, 4, 5].contains(disposition)
            observer?.observe(.open(share: share, name: fileName, isPipe: isPipe, writeAccess: writes && !isPipe), on: ep, at: time)
        case (0xA2, true):
            guard let i = f.pendingCreates.firstIndex(where: { $0.message == UInt64(mid) }) else { return }
            let p = f.pendingCreates.remove(at: i)
            guard status == 0, w.skip(5), let fid = w.u16le(), f.files.count < 256 else { return }
            let share = f.trees[p.tree] ?? ""
            f.files[key | UInt64(fid)] = OpenFile(name: p.name, share: share,
                                                  isPipe: share == "IPC$" || (share.isEmpty && SMBAnalyzer.isWellKnownPipe(p.name)))
        case (0x2F, false):  // WRITE_ANDX
            guard wordCount >= 12, w.skip(4), let fid = w.u16le(), w.skip(14), let length = w.u16le(), let offset = w.u16le(),
                  let data = ByteCursor(m).slice(at: Int(offset), count: min(Int(length), max(0, m.count - Int(offset)))) else { return }
            smb1Write(data, key: key | UInt64(fid), tree: UInt32(tid) | 1 << 31, flow: f, ep: ep, time: time)
        case (0x25, false):  // TRANSACTION: TransactNmPipe carries DCE-RPC; PeekNamedPipe on FID 0 is the MS17-010 check
            guard wordCount >= 16, w.skip(18), w.skip(4), let count = w.u16le(), let offset = w.u16le(), let setupCount = w.u8(),
                  setupCount >= 2, w.skip(1), let function = w.u16le(), let fid = w.u16le() else { return }
            if function == 0x23 && fid == 0 {
                if f.probeMIDs.count >= 4 { f.probeMIDs.removeFirst() }
                f.probeMIDs.append(mid)
                signature(.ms17010Probe, flow: f, ep: ep, time: time)
            }
            guard function == 0x26,
                  let data = ByteCursor(m).slice(at: Int(offset), count: min(Int(count), max(0, m.count - Int(offset)))) else { return }
            smb1Write(data, key: key | UInt64(fid), tree: UInt32(tid) | 1 << 31, flow: f, ep: ep, time: time)
        case (0x25, true):
            if status == SMBAnalyzer.statusInsufficientServerResources && f.probeMIDs.contains(mid) {
                signature(.ms17010Vulnerable, flow: f, ep: ep, time: time)
            }
        case (0xA0, false):  // NT_TRANSACT: MaxSetupCount, Reserved1, TotalParameterCount, TotalDataCount, …, Function
            guard wordCount >= 19, w.skip(7), let totalData = w.u32le(), w.skip(24), w.skip(1), let function = w.u16le() else { return }
            if !f.ntTransactions.contains(transaction) {
                if f.ntTransactions.count >= 8 { f.ntTransactions.removeFirst() }
                f.ntTransactions.append(transaction)
            }
            // Functions 1–8 are defined (MS-CIFS 2.2.7); nothing legitimate announces 64 KiB of data with another.
            if totalData >= 0x10000 && !(1...8).contains(function) { signature(.smbOversizedNTTransact, flow: f, ep: ep, time: time) }
        case (0x33, false):  // TRANSACTION2_SECONDARY: must continue a TRANSACTION2, never an NT_TRANSACT
            if f.ntTransactions.contains(transaction) { signature(.smbTransactionMismatch, flow: f, ep: ep, time: time) }
        case (0x32, false):  // TRANSACTION2: the subcommand is Setup[0] after 13 parameter words
            if f.trans2MIDs.count < 16 { f.trans2MIDs.append(mid) } else { f.trans2MIDs[f.trans2Next] = mid }
            f.trans2Next = (f.trans2Next + 1) % 16
            guard wordCount >= 15, w.skip(26), let setupCount = w.u8(), setupCount >= 1, w.skip(1), let sub = w.u16le() else { return }
            if sub == 0x000E { signature(.doublePulsarRequest, flow: f, ep: ep, time: time) }
        case (0x32, true):
            // DoublePulsar answers with the request's MID plus 0x10 (0x51 success, 0x52 bad key, 0x53 …): a
            // MID no client request carried. Midstream (no request seen), only with its NOT_IMPLEMENTED status.
            guard (0x51...0x53).contains(mid), !f.trans2MIDs.contains(mid) else { return }
            if !f.trans2MIDs.isEmpty || status == SMBAnalyzer.statusNotImplemented {
                signature(.doublePulsarReply, flow: f, ep: ep, time: time)
            }
        default:
            break
        }
    }

    func smb1Write(_ data: UnsafeRawBufferPointer, key: UInt64, tree: UInt32, flow f: Flow, ep: SessionEndpoints, time: Timestamp) {
        var file = f.files[key] ?? OpenFile(name: "", share: f.trees[tree] ?? "", isPipe: DCERPC.header(data) != nil)
        if file.isPipe {
            pipeData(data, file: &file, flow: f, ep: ep, time: time)
        } else if !file.wrote {
            file.wrote = true
            if SMBAnalyzer.isAdminShare(file.share) { f.adminWrites += 1 }
            observer?.observe(.write(share: file.share, name: file.name), on: ep, at: time)
        }
        if f.files[key] != nil || f.files.count < 256 { f.files[key] = file } else { counters.tableFull &+= 1 }
    }

    /// An unchained compression transform header (MS-SMB2 2.2.42.1) whose OriginalCompressedSegmentSize
    /// plus Offset overflows 32 bits, or whose original size exceeds 16 MiB (twice the largest negotiated
    /// read/write): the integer overflow of SMBGhost.
    func compressionOverflows(_ m: UnsafeRawBufferPointer) -> Bool {
        var c = ByteCursor(m, offset: 4)
        guard let original = c.u32le(), c.skip(2), let flags = c.u16le(), let offset = c.u32le(), flags & 1 == 0 else { return false }
        return UInt64(original) + UInt64(offset) > 0xFFFF_FFFF || original > 16 << 20
    }

    /// Reports an exploitation signature once per flow.
    func signature(_ s: ExploitSignature, flow f: Flow, ep: SessionEndpoints, time: Timestamp) {
        guard f.signatures.insert(s) else { return }
        observer?.observe(.exploit(s), on: ep, at: time)
    }

    // MARK: Flow fields

    public func contributeStreamFields(_ flow: FlowRecord, slot: Int32, into w: inout JSONWriter) {
        guard let f = flows[slot], f.generation == flow.generation else { return }
        w.beginObject("smb")
        if f.dialect != 0 { w.field("version", SMBAnalyzer.dialectName(f.dialect)) } else if f.smb1 { w.field("version", "1") }
        if f.encrypted { w.field("encrypted", true) }
        writeList("trees", f.treePaths, &w)
        writeList("files", f.fileNames, &w)
        writeList("pipes", f.pipeNames, &w)
        writeList("users", f.users, &w)
        writeList("domains", f.domains, &w)
        writeList("workstations", f.workstations, &w)
        writeList("auth_results", f.authResults, &w)
        if f.adminWrites > 0 { w.field("admin_share_writes", f.adminWrites) }
        if !f.signatures.isEmpty {
            w.beginArray("exploit_signatures")
            for n in f.signatures.names { w.element(n) }
            w.endArray()
        }
        w.endObject()
        f.rpc.write(into: &w, signatures: SignatureSet())
    }

    // MARK: Names

    /// `\\host\ADMIN$` → `ADMIN$` (upper case, so `c$` and `C$` compare equal).
    public static func shareName(_ path: String) -> String {
        let last = path.split(separator: "\\", omittingEmptySubsequences: true).last.map(String.init) ?? path
        return last.uppercased()
    }

    static let wellKnownPipes: Set<String> = ["svcctl", "atsvc", "srvsvc", "wkssvc", "winreg", "samr", "lsarpc", "lsass",
                                              "netlogon", "eventlog", "drsuapi", "epmapper", "spoolss", "ntsvcs", "psexesvc",
                                              "browser", "protected_storage", "efsrpc", "initshutdown", "remcom_communicaton"]

    /// Pipe names seen when the share is unknown (capture started after the tree connect).
    static func isWellKnownPipe(_ name: String) -> Bool {
        let n = name.lowercased()
        return wellKnownPipes.contains(n.hasPrefix("\\") ? String(n.dropFirst()) : n) || isRemoteExecutionPipe(name)
    }

    /// Pipes remote-execution tools create for the launched process's I/O: PsExec's `PSEXESVC` and
    /// `PSEXESVC-<host>-<pid>-stdin/-stdout/-stderr`, RemCom's `RemCom_communicaton`, and the
    /// `-stdin`/`-stdout`/`-stderr` pattern of their clones.
    public static func isRemoteExecutionPipe(_ name: String) -> Bool {
        let n = name.lowercased()
        return n.hasPrefix("psexesvc") || n.hasPrefix("remcom") || n.hasPrefix("csexec") || n.hasPrefix("paexec")
            || n.hasSuffix("-stdin") || n.hasSuffix("-stdout") || n.hasSuffix("-stderr")
    }

    /// Administrative shares: `ADMIN$` and drive shares (`C$`). `IPC$` is not one (null sessions use it).
    public static func isAdminShare(_ share: String) -> Bool {
        let s = share.uppercased()
        if s == "ADMIN$" { return true }
        let u = Array(s.utf8)
        return u.count == 2 && u[1] == 0x24 && u[0] >= 0x41 && u[0] <= 0x5A
    }

    static func dialectName(_ d: UInt16) -> String {
        switch d {
        case 0x0202: return "2.0.2"
        case 0x0210: return "2.1"
        case 0x0300: return "3.0"
        case 0x0302: return "3.0.2"
        case 0x0311: return "3.1.1"
        default: return "0x" + String(d, radix: 16)
        }
    }

    static func statusName(_ s: UInt32) -> String {
        switch s {
        case 0xC000_006D: return "STATUS_LOGON_FAILURE"
        case 0xC000_0022: return "STATUS_ACCESS_DENIED"
        case 0xC000_006E: return "STATUS_ACCOUNT_RESTRICTION"
        case 0xC000_0072: return "STATUS_ACCOUNT_DISABLED"
        case 0xC000_0234: return "STATUS_ACCOUNT_LOCKED_OUT"
        case 0xC000_0071: return "STATUS_PASSWORD_EXPIRED"
        case 0xC000_0064: return "STATUS_NO_SUCH_USER"
        default: return "0x" + String(s, radix: 16)
        }
    }
}

func writeList(_ key: StaticString, _ list: BoundedStrings, _ w: inout JSONWriter) {
    guard !list.items.isEmpty else { return }
    w.beginArray(key)
    for s in list.items { w.element(s) }
    w.endArray()
}

/// DCE-RPC facts of one flow for its flow event (`dce_rpc.*`), bounded.
struct RPCFlowFacts {
    var interfaces = BoundedStrings(limit: 16)
    var uuids = BoundedStrings(limit: 16)
    var operations = BoundedStrings(limit: 32)
    var opnums: [UInt16] = []
    var users = BoundedStrings(limit: 4)
    /// DCOM classes activated (`MMC20.Application`, `WbemLevel1Login`) and WMI classes used.
    var activations = BoundedStrings(limit: 4)

    mutating func bind(_ i: RPCInterface) {
        uuids.insert(i.uuid)
        interfaces.insert(i.name ?? i.uuid)
    }

    mutating func call(_ i: RPCInterface?, _ opnum: UInt16) {
        if !opnums.contains(opnum) && opnums.count < 32 { opnums.append(opnum) }
        if let i { operations.insert(i.operationName(opnum)) }
    }

    /// A call whose interface was inferred from its stub (bind unseen): named with an `inferred:` prefix.
    mutating func inferred(_ i: RPCInterface, _ opnum: UInt16) {
        operations.insert("inferred:" + i.operationName(opnum))
    }

    var isEmpty: Bool { uuids.items.isEmpty && opnums.isEmpty && users.items.isEmpty && activations.items.isEmpty }

    func write(into w: inout JSONWriter, signatures: SignatureSet) {
        guard !isEmpty || !signatures.isEmpty else { return }
        w.beginObject("dce_rpc")
        writeList("interfaces", interfaces, &w)
        writeList("bind_uuids", uuids, &w)
        if !opnums.isEmpty {
            w.beginArray("opnums")
            for o in opnums { w.element(Int64(o)) }
            w.endArray()
        }
        writeList("operations", operations, &w)
        writeList("users", users, &w)
        writeList("dcom_classes", activations, &w)
        if !signatures.isEmpty {
            w.beginArray("exploit_signatures")
            for n in signatures.names { w.element(n) }
            w.endArray()
        }
        w.endObject()
    }
}

extension String {
    /// `\\svcctl` → `svcctl` (SMB1 names carry a leading backslash, SMB2 names do not).
    var trimmingLeadingBackslash: String { hasPrefix("\\") ? String(dropFirst()) : self }
}
