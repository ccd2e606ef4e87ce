import Events
import PacketCore

/// The hashes of one SMB2/3 open file's data as it is written and read, in file-offset order.
///
/// A class kept beside the flow's `OpenFile` so the digest states are updated in place. Each direction
/// hashes from offset 0 while the operations arrive contiguous; a write or read that does not continue
/// where the previous one ended (a gap, out-of-order I/O, a file opened before the capture) marks that
/// direction's file incomplete and hashing goes on from there, so the digests are of the bytes seen.
final class SMBTransfer {
    let name: String
    let share: String
    /// Which side sent the CREATE (the client), so writes are uploads from its point of view.
    let clientIsOriginator: Bool
    var written: FileHasher?
    var writeNext: UInt64 = 0
    var read: FileHasher?
    var readNext: UInt64 = 0

    init(name: String, share: String, clientIsOriginator: Bool) {
        self.name = name
        self.share = share
        self.clientIsOriginator = clientIsOriginator
    }
}

/// Where the data of a READ response or WRITE request beyond the assembled prefix goes as it streams by.
struct SMBDataTail {
    let transfer: SMBTransfer
    let isWrite: Bool
    var remaining: Int
}

extension SMBAnalyzer {
    /// What one transfer's state costs against the parser budget (object, two digest sets).
    static let transferCost = 768

    /// The transfer for an open file, made on first data (charged to the budget; nil when refused).
    func transfer(_ f: Flow, key: UInt64, clientIsOriginator: Bool) -> SMBTransfer? {
        if let t = f.transfers[key] { return t }
        guard let file = f.files[key], !file.isPipe, f.transfers.count < 64, budget.charge(Self.transferCost) else { return nil }
        let t = SMBTransfer(name: file.name, share: file.share, clientIsOriginator: clientIsOriginator)
        f.transfers[key] = t
        return t
    }

    /// Data of a WRITE (`isWrite`) or READ at `offset`: the part in `available`, `total` bytes in all; the
    /// rest streams through `tail` later.
    func fileData(_ available: UnsafeRawBufferPointer, total: Int, offset: UInt64, transfer t: SMBTransfer, isWrite: Bool,
                  flow f: Flow, direction d: Int, time: Timestamp) {
        guard let files else { return }
        if isWrite {
            if t.written == nil { t.written = FileHasher(algorithms: files.configuration.hashes); if offset != 0 { t.written!.incomplete = true } }
            else if offset != t.writeNext { t.written!.incomplete = true }
            t.writeNext = offset &+ UInt64(total)
            _ = files.hash(available, into: &t.written!, flowBytes: &f.hashedBytes, at: time)
        } else {
            if t.read == nil { t.read = FileHasher(algorithms: files.configuration.hashes); if offset != 0 { t.read!.incomplete = true } }
            else if offset != t.readNext { t.read!.incomplete = true }
            t.readNext = offset &+ UInt64(total)
            _ = files.hash(available, into: &t.read!, flowBytes: &f.hashedBytes, at: time)
        }
        let left = total - available.count
        f.tails[d] = left > 0 ? SMBDataTail(transfer: t, isWrite: isWrite, remaining: left) : nil
    }

    /// Bytes of a message beyond its assembled prefix.
    func tail(_ bytes: UnsafeRawBufferPointer, flow f: Flow, direction d: Int, time: Timestamp) {
        guard let files, var tail = f.tails[d] else { return }
        let n = min(tail.remaining, bytes.count)
        let part = UnsafeRawBufferPointer(rebasing: bytes[..<n])
        if tail.isWrite {
            if tail.transfer.written != nil { _ = files.hash(part, into: &tail.transfer.written!, flowBytes: &f.hashedBytes, at: time) }
        } else {
            if tail.transfer.read != nil { _ = files.hash(part, into: &tail.transfer.read!, flowBytes: &f.hashedBytes, at: time) }
        }
        tail.remaining -= n
        f.tails[d] = tail.remaining > 0 ? tail : nil
    }

    /// A direction lost bytes: the data being streamed is incomplete.
    func tailLost(_ f: Flow, direction d: Int) {
        guard let tail = f.tails[d] else { return }
        if tail.isWrite { tail.transfer.written?.incomplete = true } else { tail.transfer.read?.incomplete = true }
        f.tails[d] = nil
    }

    /// The file was closed (or the flow ended): its written and read data become `sensor.file` events.
    func finishTransfer(_ f: Flow, key: UInt64, record: FlowRecord, time: Timestamp) {
        guard let t = f.transfers.removeValue(forKey: key) else { return }
        budget.release(Self.transferCost)
        for d in 0..<2 where f.tails[d]?.transfer === t { tailLost(f, direction: d) }
        guard let files else { return }
        for (hasher, isWrite) in [(t.written, true), (t.read, false)] {
            guard let h = hasher, h.size > 0 else { continue }
            let d = h.finish()
            let upload = isWrite == t.clientIsOriginator
            files.report(d, source: .smb, upload: upload, flow: record, at: time, fileFields: { w in
                guard !t.name.isEmpty else { return }
                w.field("path", t.name)
                if let slash = t.name.lastIndex(of: "\\") { w.field("name", String(t.name[t.name.index(after: slash)...])) } else { w.field("name", t.name) }
            }, sensorFields: { w in
                w.field("operation", isWrite ? "write" : "read")
                if !t.share.isEmpty { w.field("share", t.share) }
            })
        }
    }
}
