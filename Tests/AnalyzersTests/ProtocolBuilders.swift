@testable import Analyzers
import TestSupport
import Events
import PacketCore

/// Builders for SMB2/SMB1, NTLMSSP and DCE-RPC messages (unit-test inputs and fuzzing seeds), laid out as
/// MS-SMB2, MS-CIFS, MS-NLMP and C706 describe.
enum Build {
    static func le16(_ v: Int) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF)] }
    static func le32(_ v: Int) -> [UInt8] { le16(v & 0xFFFF) + le16(v >> 16 & 0xFFFF) }
    static func le64(_ v: UInt64) -> [UInt8] { le32(Int(v & 0xFFFF_FFFF)) + le32(Int(v >> 32)) }
    static func utf16(_ s: String) -> [UInt8] { s.utf16.flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] } }

    static func uuid(_ s: String) -> [UInt8] {
        let hex = s.replacingOccurrences(of: "-", with: "")
        var b: [UInt8] = []
        var i = hex.startIndex
        while i < hex.endIndex {
            let j = hex.index(i, offsetBy: 2)
            b.append(UInt8(hex[i..<j], radix: 16)!)
            i = j
        }
        return Array(b[0..<4].reversed()) + Array(b[4..<6].reversed()) + Array(b[6..<8].reversed()) + Array(b[8...])
    }

    static func ntlmAuthenticate(user: String, domain: String, workstation: String) -> [UInt8] {
        let d = utf16(domain), u = utf16(user), w = utf16(workstation), nt = [UInt8](repeating: 0xAB, count: 24)
        var off = 64
        func buf(_ x: [UInt8]) -> [UInt8] { defer { off += x.count }; return le16(x.count) + le16(x.count) + le32(off) }
        var m = Array("NTLMSSP".utf8) + [0] + le32(3)
        m += buf([]) + buf(nt) + buf(d) + buf(u) + buf(w) + buf([])
        m += le32(0x6208_8215)
        return m + nt + d + u + w
    }

    /// An SMB2 header (64 bytes).
    static func smb2Header(_ command: Int, message: UInt64, tree: Int = 1, response: Bool = false, status: Int = 0, next: Int = 0) -> [UInt8] {
        var h: [UInt8] = [0xFE, 0x53, 0x4D, 0x42] + le16(64) + le16(1) + le32(status) + le16(command) + le16(1)
        h += le32(response ? 1 : 0) + le32(next) + le64(message) + le32(0xFEFF) + le32(tree) + le64(0x1122) + [UInt8](repeating: 0, count: 16)
        return h
    }

    static func sessionSetup(_ blob: [UInt8], message: UInt64) -> [UInt8] {
        smb2Header(1, message: message) + le16(25) + [0, 1] + le32(0) + le32(0) + le16(64 + 24) + le16(blob.count) + le64(0) + blob
    }

    static func sessionSetupResponse(status: Int, message: UInt64) -> [UInt8] {
        smb2Header(1, message: message, response: true, status: status) + le16(9) + le16(0) + le16(72) + le16(0)
    }

    static func treeConnect(_ path: String, message: UInt64) -> [UInt8] {
        let p = utf16(path)
        return smb2Header(3, message: message, tree: 0) + le16(9) + le16(0) + le16(64 + 8) + le16(p.count) + p
    }

    static func treeConnectResponse(tree: Int, message: UInt64) -> [UInt8] {
        smb2Header(3, message: message, tree: tree, response: true) + le16(16) + [1, 0] + le32(0) + le32(0) + le32(0x1F01FF)
    }

    static func create(_ name: String, tree: Int, message: UInt64, access: Int = 0x0012_0089, disposition: Int = 1) -> [UInt8] {
        let n = utf16(name)
        var b = le16(57) + [0, 0] + le32(2) + le64(0) + le64(0) + le32(access) + le32(0x80) + le32(7) + le32(disposition) + le32(0x40)
        b += le16(64 + 56) + le16(n.count) + le32(0) + le32(0)
        return smb2Header(5, message: message, tree: tree) + b + n
    }

    static func createResponse(file: UInt64, tree: Int, message: UInt64) -> [UInt8] {
        var b = le16(89) + [0, 0] + le32(1) + [UInt8](repeating: 0, count: 32) + le64(0) + le64(0) + le32(0x80) + le32(0)
        b += le64(file) + le64(file &* 3) + le32(0) + le32(0)
        return smb2Header(5, message: message, tree: tree, response: true) + b
    }

    static func write(file: UInt64, tree: Int, message: UInt64, data: [UInt8], offset: UInt64 = 0) -> [UInt8] {
        let b = le16(49) + le16(64 + 48) + le32(data.count) + le64(offset) + le64(file) + le64(file &* 3) + le32(0) + le32(0) + le16(0) + le16(0) + le32(0)
        return smb2Header(9, message: message, tree: tree) + b + data
    }

    static func read(file: UInt64, tree: Int, message: UInt64, offset: UInt64, length: Int) -> [UInt8] {
        let b = le16(49) + [0, 0] + le32(length) + le64(offset) + le64(file) + le64(file &* 3) + le32(1) + le32(0) + le32(0) + le16(0) + le16(0) + [0]
        return smb2Header(8, message: message, tree: tree) + b
    }

    static func readResponse(tree: Int, message: UInt64, data: [UInt8]) -> [UInt8] {
        smb2Header(8, message: message, tree: tree, response: true) + le16(17) + [80, 0] + le32(data.count) + le32(0) + le32(0) + data
    }

    static func close(file: UInt64, tree: Int, message: UInt64) -> [UInt8] {
        smb2Header(6, message: message, tree: tree) + le16(24) + le16(0) + le32(0) + le64(file) + le64(file &* 3)
    }

    static func ioctlTransceive(file: UInt64, tree: Int, message: UInt64, data: [UInt8]) -> [UInt8] {
        let b = le16(57) + le16(0) + le32(0x0011_C017) + le64(file) + le64(file &* 3) + le32(64 + 56) + le32(data.count)
            + le32(0) + le32(0) + le32(0) + le32(1024) + le32(1) + le32(0)
        return smb2Header(11, message: message, tree: tree) + b + data
    }

    static func netbios(_ m: [UInt8]) -> [UInt8] { [0, UInt8(m.count >> 16 & 1), UInt8(m.count >> 8 & 0xFF), UInt8(m.count & 0xFF)] + m }

    /// Chains SMB2 messages into one compounded message (8-byte aligned NextCommand offsets).
    static func compound(_ parts: [[UInt8]]) -> [UInt8] {
        var out: [UInt8] = []
        for (i, var p) in parts.enumerated() {
            if i < parts.count - 1 {
                while p.count % 8 != 0 { p.append(0) }
                let next = le32(p.count)
                p.replaceSubrange(20..<24, with: next)
            }
            out += p
        }
        return out
    }

    static func rpcHeader(type: UInt8, length: Int, call: Int = 1, authLength: Int = 0) -> [UInt8] {
        [5, 0, type, 3, 0x10, 0, 0, 0] + le16(length) + le16(authLength) + le32(call)
    }

    static func rpcBind(_ uuidText: String, context: Int = 0, type: UInt8 = 11, auth: [UInt8] = []) -> [UInt8] {
        var body = le16(4280) + le16(4280) + le32(0) + [1, 0, 0, 0] + le16(context) + [1, 0] + uuid(uuidText) + le32(2)
        body += uuid("8a885d04-1ceb-11c9-9fe8-08002b104860") + le32(2)
        let trailer: [UInt8] = auth.isEmpty ? [] : [10, 2, 0, 0] + le32(0) + auth
        return rpcHeader(type: type, length: 16 + body.count + trailer.count, authLength: auth.count) + body + trailer
    }

    static func rpcRequest(context: Int, opnum: Int, stub: [UInt8] = [0, 0, 0, 0], call: Int = 2) -> [UInt8] {
        let body = le32(stub.count) + le16(context) + le16(opnum) + stub
        return rpcHeader(type: 0, length: 16 + body.count, call: call) + body
    }

    static func smb1TreeConnect(_ path: String, mid: Int) -> [UInt8] {
        var h: [UInt8] = [0xFF, 0x53, 0x4D, 0x42, 0x75] + le32(0) + [0x18] + le16(0xC807) + [UInt8](repeating: 0, count: 12)
        h += le16(0) + le16(0xFEFF) + le16(0x800) + le16(mid)
        let p = utf16(path) + [0, 0]
        // Bytes start at offset 43: a 1-byte password puts the Unicode path at 44, already aligned.
        let bytes: [UInt8] = [0] + p + Array("?????".utf8) + [0]
        return h + [4, 0xFF, 0] + le16(0) + le16(0x08) + le16(1) + le16(bytes.count) + bytes
    }
}

/// Records the facts analysers report.
final class FactRecorder: RemoteAccessObserver {
    var facts: [(RemoteAccessFact, SessionEndpoints)] = []
    func observe(_ fact: RemoteAccessFact, on endpoints: SessionEndpoints, at time: Timestamp) { facts.append((fact, endpoints)) }
    var list: [RemoteAccessFact] { facts.map(\.0) }
}

/// A flow table with one TCP flow client→server:445 for feeding stream consumers directly.
struct StreamHarness {
    let table = FlowTable(configuration: { var c = FlowTableConfiguration(); c.capacity = 1024; return c }())
    var slot: Int32 = 0
    var record: FlowRecord { table[slot] }

    init(serverPort: UInt16 = 445, clientPort: UInt16 = 50000) {
        var p = DecodedPacket()
        p.timestamp = Timestamp(nanoseconds: 1_000_000_000)
        p.ipVersion = 4
        p.ipProtocol = IPProtocol.tcp
        p.source = IPAddress("10.0.0.1")!
        p.destination = IPAddress("10.0.0.2")!
        p.sourcePort = clientPort
        p.destinationPort = serverPort
        p.hasPorts = true
        p.tcpFlags = [.syn]
        slot = table.update(p) { _, _, _ in }.slot
    }

    @discardableResult
    func feed(_ consumer: StreamConsumer, _ bytes: [UInt8], fromClient: Bool = true) -> StreamVerdict {
        bytes.withUnsafeBytes { consumer.stream($0, fromOriginator: fromClient, slot: slot, flows: table, at: Timestamp(nanoseconds: 2_000_000_000)) }
    }

    func start(_ consumer: StreamConsumer, first: [UInt8]) -> Bool {
        first.withUnsafeBytes { consumer.wantsStream(record, slot: slot, firstPayload: $0, fromOriginator: true) }
    }
}

/// Fuzzing helpers on the suite's one seeded PRNG (TestSupport), so failures reproduce.
extension SeededRandom {
    /// A uniform integer in 0..<n (cheap enough for million-iteration loops in debug builds).
    mutating func below(_ n: Int) -> Int { n <= 1 ? 0 : Int(next() % UInt64(n)) }
    mutating func byte() -> UInt8 { UInt8(truncatingIfNeeded: next()) }

    /// Writes a mutation of `seed` into `m` (reused, so the loop does not allocate): byte flips, random
    /// bytes, truncation, extension, length-field damage or swaps.
    mutating func mutate(_ seed: [UInt8], into m: inout [UInt8]) {
        m.removeAll(keepingCapacity: true)
        m.append(contentsOf: seed)
        for _ in 0...below(4) {
            switch below(6) {
            case 0 where !m.isEmpty: m[below(m.count)] ^= UInt8(1 << below(8))
            case 1 where !m.isEmpty: m[below(m.count)] = byte()
            case 2: m.removeLast(below(m.count + 1))
            case 3: for _ in 0...below(16) { m.append(byte()) }
            case 4 where m.count >= 2:
                let i = below(m.count - 1)
                let special: (UInt8, UInt8, UInt8, UInt8) = (0x00, 0xFF, 0x7F, 0x80)
                m[i] = withUnsafeBytes(of: special) { $0[below(4)] }
                m[i + 1] = withUnsafeBytes(of: special) { $0[below(4)] }
            default: if !m.isEmpty { m.swapAt(below(m.count), below(m.count)) }
            }
        }
    }

    mutating func mutate(_ seed: [UInt8]) -> [UInt8] {
        var m: [UInt8] = []
        mutate(seed, into: &m)
        return m
    }
}
