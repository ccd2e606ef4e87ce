import Events
import PacketCore

/// The hashes of one SMB2/3 open file's data as it is written and read, in file-offset order.
///
/// A class kept beside the flow's `OpenFile` so the digest states are updated in place. Clients keep
/// several reads (and writes) in flight and servers complete them in any order, so data ahead of the
/// hashed prefix is held, within bounds charged to the parser budget, until the hole before it fills.
/// A hole that does not fill within them (a capture gap, a file opened before the capture, a read of part
/// of a file) marks that direction incomplete and hashing goes on in offset order, so the digests are of
/// the bytes seen.
final class SMBTransfer {
    let name: String
    let share: String
    /// Which side sent the CREATE (the client), so writes are uploads from its point of view.
    let clientIsOriginator: Bool
    var written: SMBFileStream?
    var read: SMBFileStream?

    init(name: String, share: String, clientIsOriginator: Bool) {
        self.name = name
        self.share = share
        self.clientIsOriginator = clientIsOriginator
    }

    func stream(isWrite: Bool) -> SMBFileStream? { isWrite ? written : read }

    /// The direction's state, moved out (not copied) so it can be changed in place and put back.
    func take(isWrite: Bool) -> SMBFileStream? {
        if isWrite { defer { written = nil }; return written }
        defer { read = nil }
        return read
    }
}

/// One direction of a transfer (the data written, or the data read), hashed in file-offset order.
struct SMBFileStream {
    var hasher: FileHasher
    /// The file offset the hash has reached.
    var next: UInt64 = 0
    /// Data beyond `next`, sorted by offset, each run contiguous.
    var held: [(offset: UInt64, data: ParserBuffer)] = []
    var heldBytes = 0
}

/// Where the data of a READ response or WRITE request beyond the assembled prefix goes as it streams by.
struct SMBDataTail {
    let transfer: SMBTransfer
    let isWrite: Bool
    /// The file offset of the next byte.
    var offset: UInt64
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

    /// Data held ahead of a hole, per direction of a transfer and per flow: enough for the reads a client
    /// keeps in flight (up to 1 MiB each); past it the hole is given up on.
    static let heldPerStream = 4 << 20
    static let heldPerFlow = 8 << 20

    /// Data of a WRITE (`isWrite`) or READ at `offset`: the part in `available`, `total` bytes in all; the
    /// rest streams through `tail` later.
    func fileData(_ available: UnsafeRawBufferPointer, total: Int, offset: UInt64, transfer t: SMBTransfer, isWrite: Bool,
                  flow f: Flow, direction d: Int, time: Timestamp) {
        guard files != nil else { return }
        absorb(available, at: offset, transfer: t, isWrite: isWrite, flow: f, time: time)
        let left = total - available.count
        f.tails[d] = left > 0 ? SMBDataTail(transfer: t, isWrite: isWrite, offset: offset &+ UInt64(available.count), remaining: left) : nil
    }

    /// Bytes of a message beyond its assembled prefix.
    func tail(_ bytes: UnsafeRawBufferPointer, flow f: Flow, direction d: Int, time: Timestamp) {
        guard files != nil, var tail = f.tails[d] else { return }
        let n = min(tail.remaining, bytes.count)
        absorb(UnsafeRawBufferPointer(rebasing: bytes[..<n]), at: tail.offset, transfer: tail.transfer, isWrite: tail.isWrite, flow: f, time: time)
        tail.offset &+= UInt64(n)
        tail.remaining -= n
        f.tails[d] = tail.remaining > 0 ? tail : nil
    }

    /// A direction lost bytes: the data being streamed is incomplete. When it was the data the hash was
    /// waiting for, the hash moves past the lost part (what was held beyond it can then go in).
    func tailLost(_ f: Flow, direction d: Int) {
        guard let tail = f.tails[d] else { return }
        f.tails[d] = nil
        guard var s = tail.transfer.take(isWrite: tail.isWrite) else { return }
        s.hasher.incomplete = true
        if tail.offset == s.next { s.next = tail.offset &+ UInt64(tail.remaining) }
        store(s, in: tail.transfer, isWrite: tail.isWrite)
    }

    /// File data at `offset`: hashed if it continues the hashed prefix (then whatever it un-holds), held if
    /// it lies beyond a hole and the bounds allow, else the hole is given up on and hashing goes on in order.
    func absorb(_ data: UnsafeRawBufferPointer, at offset: UInt64, transfer t: SMBTransfer, isWrite: Bool, flow f: Flow, time: Timestamp) {
        guard let files, !data.isEmpty else { return }
        var s = t.take(isWrite: isWrite) ?? SMBFileStream(hasher: FileHasher(algorithms: files.configuration.hashes))
        if offset > s.next {
            if hold(data, at: offset, in: &s, flow: f) {
                store(s, in: t, isWrite: isWrite)
                return
            }
            files.counters.holesGivenUp &+= 1
            release(&s, flow: f, files: files, time: time)
            if offset > s.next { s.hasher.incomplete = true; s.next = offset }
        }
        hashFrom(data, at: offset, into: &s, flow: f, files: files, time: time)
        drain(&s, flow: f, files: files, time: time)
        store(s, in: t, isWrite: isWrite)
    }

    func store(_ s: SMBFileStream, in t: SMBTransfer, isWrite: Bool) {
        if isWrite { t.written = s } else { t.read = s }
    }

    /// Hashes the part of `data` (at `offset` ≤ `s.next`) not hashed yet: a re-read or a retransmitted
    /// write of bytes already in the hash adds nothing.
    func hashFrom(_ data: UnsafeRawBufferPointer, at offset: UInt64, into s: inout SMBFileStream, flow f: Flow, files: FileHashing, time: Timestamp) {
        let skip = s.next &- offset
        guard skip < UInt64(data.count) else { return }
        let fresh = UnsafeRawBufferPointer(rebasing: data[Int(skip)...])
        _ = files.hash(fresh, into: &s.hasher, flowBytes: &f.hashedBytes, at: time)
        s.next &+= UInt64(fresh.count)
    }

    /// Keeps `data` until the hole before it fills; false when a bound refuses it (nothing kept).
    func hold(_ data: UnsafeRawBufferPointer, at offset: UInt64, in s: inout SMBFileStream, flow f: Flow) -> Bool {
        guard s.heldBytes + data.count <= Self.heldPerStream, f.heldFileBytes + data.count <= Self.heldPerFlow else { return false }
        // The rest of a message that is being held continues its run.
        if let i = s.held.firstIndex(where: { $0.offset &+ UInt64($0.data.count) == offset }) {
            guard s.held[i].data.append(data) else { return false }
        } else {
            guard s.held.count < 64, let run = ParserBuffer(budget: budget, holding: data) else { return false }
            let i = s.held.firstIndex(where: { $0.offset > offset }) ?? s.held.endIndex
            s.held.insert((offset, run), at: i)
        }
        s.heldBytes += data.count
        f.heldFileBytes += data.count
        files?.counters.heldChunks &+= 1
        return true
    }

    /// Hashes the held runs the hashed prefix has reached.
    func drain(_ s: inout SMBFileStream, flow f: Flow, files: FileHashing, time: Timestamp) {
        while let first = s.held.first, first.offset <= s.next {
            s.held.removeFirst()
            s.heldBytes -= first.data.count
            f.heldFileBytes -= first.data.count
            first.data.withUnsafeBytes { hashFrom($0, at: first.offset, into: &s, flow: f, files: files, time: time) }
        }
    }

    /// Hashes every held run in offset order, the holes between them marked: the hole is given up on.
    func release(_ s: inout SMBFileStream, flow f: Flow, files: FileHashing, time: Timestamp) {
        while let first = s.held.first {
            if first.offset > s.next { s.hasher.incomplete = true; s.next = first.offset }
            drain(&s, flow: f, files: files, time: time)
        }
    }

    /// The file was closed (or the flow ended): its written and read data become `spanwatch.file` events.
    func finishTransfer(_ f: Flow, key: UInt64, record: FlowRecord, time: Timestamp) {
        guard let t = f.transfers.removeValue(forKey: key) else { return }
        budget.release(Self.transferCost)
        for d in 0..<2 where f.tails[d]?.transfer === t { tailLost(f, direction: d) }
        guard let files else { return }
        for isWrite in [true, false] {
            guard var s = t.take(isWrite: isWrite) else { continue }
            release(&s, flow: f, files: files, time: time)
            guard s.hasher.size > 0 else { continue }
            let d = s.hasher.finish()
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
