import Crypto
import Foundation
import PacketCore

#if canImport(Glibc)
import Glibc
#endif

/// One worker's share of a shared capture: the packets in scope it saw, in its own order, held in an
/// unnamed file in the evidence directory until the capture's last part closes and the parts are merged.
///
/// Never plaintext on disk: the stream is sealed in chunks of up to 64 KiB with ChaCha20-Poly1305 under a
/// key that exists only in this process's memory (`EvidenceCoordinator.partKey`), the nonce being the
/// part's number and the chunk's, so chunks cannot be reordered or moved between parts unnoticed. The file
/// is unlinked as soon as it is created, so a crash leaves nothing behind (a crash in between leaves a
/// `.partial`, which the next start removes and logs as it does for any).
///
/// Record: timestamp (ns, i64), wire length (u32), link type (i32), captured length (u32), then the bytes.
/// Memory: one chunk buffer while writing, one chunk and one record while merging.
final class EvidencePart {
    /// A part written to the end, handed to the coordinator.
    struct Closed {
        let worker: Int
        let id: UInt32
        let fd: Int32
        let chunks: UInt64
        let records: UInt64
    }

    static let chunkSize = 64 << 10
    static let recordHeader = 20

    let capture: SharedCapture
    let worker: Int
    let id: UInt32
    let key: SymmetricKey
    let fd: Int32
    var buffer: [UInt8] = []
    var chunks: UInt64 = 0
    var records: UInt64 = 0
    /// Link types this part claimed an IDB for.
    var linkTypes: [Int32] = []
    var closed = false

    init(capture: SharedCapture, worker: Int, id: UInt32, key: SymmetricKey, store: EvidenceStore) throws(EvidenceError) {
        self.capture = capture
        self.worker = worker
        self.id = id
        self.key = key
        fd = try store.createPartFile(name: "\(capture.reservation.fileName).w\(worker).partial")
        buffer.reserveCapacity(Self.chunkSize + Self.recordHeader)
    }

    deinit { if !closed { close(fd) } }

    /// Memory this part holds (its chunk buffer).
    var heldBytes: Int { buffer.capacity }

    /// Writes one packet unless the capture's budget is spent (then false: the capture is full).
    func write(_ s: PacketSummary, _ frame: UnsafeRawBufferPointer) throws(EvidenceError) -> Bool {
        var bytes = SharedCapture.packetBlockBytes(frame.count)
        if !linkTypes.contains(s.linkType.rawValue) {
            linkTypes.append(s.linkType.rawValue)
            bytes += capture.interfaceBlockBytes
        }
        guard capture.claim(bytes) else { return false }
        append(s.timestamp.nanoseconds)
        append(UInt32(clamping: s.wireLength))
        append(s.linkType.rawValue)
        append(UInt32(frame.count))
        var rest = frame
        while !rest.isEmpty {
            let n = min(rest.count, Self.chunkSize - buffer.count)
            buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: rest[0..<n]))
            rest = UnsafeRawBufferPointer(rebasing: rest[n...])
            if buffer.count >= Self.chunkSize { try seal() }
        }
        records &+= 1
        return true
    }

    func append<T: FixedWidthInteger>(_ v: T) {
        withUnsafeBytes(of: v.littleEndian) { buffer.append(contentsOf: $0) }
    }

    static func nonce(part: UInt32, chunk: UInt64) -> ChaChaPoly.Nonce {
        var n = [UInt8](repeating: 0, count: 12)
        withUnsafeBytes(of: part.littleEndian) { for i in 0..<4 { n[i] = $0[i] } }
        withUnsafeBytes(of: chunk.littleEndian) { for i in 0..<8 { n[4 + i] = $0[i] } }
        return try! ChaChaPoly.Nonce(data: n)
    }

    /// Seals the buffer as the next chunk: its length (u32), ciphertext and tag.
    func seal() throws(EvidenceError) {
        guard !buffer.isEmpty else { return }
        let box: ChaChaPoly.SealedBox
        do { box = try ChaChaPoly.seal(buffer, using: key, nonce: Self.nonce(part: id, chunk: chunks)) } catch {
            throw EvidenceError("evidence part: \(error)")
        }
        var out = [UInt8]()
        out.reserveCapacity(4 + buffer.count + 16)
        withUnsafeBytes(of: UInt32(buffer.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: box.ciphertext)
        out.append(contentsOf: box.tag)
        do { try out.withUnsafeBytes { try Self.writeAll(fd, $0) } } catch { throw error as? EvidenceError ?? EvidenceError("\(error)") }
        chunks &+= 1
        buffer.removeAll(keepingCapacity: true)
    }

    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) throws(EvidenceError) {
        var offset = 0
        while offset < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                throw EvidenceError("evidence part: write failed: \(String(cString: strerror(errno)))")
            }
            offset += n
        }
    }

    /// Seals what is left and hands the file over (its descriptor now belongs to the merge).
    func finish() throws(EvidenceError) -> Closed {
        try seal()
        closed = true
        buffer = []
        return Closed(worker: worker, id: id, fd: fd, chunks: chunks, records: records)
    }

    /// Gives the file up (a failure): nothing of it is kept.
    func discard() {
        guard !closed else { return }
        closed = true
        close(fd)
        buffer = []
    }
}

/// Reads a closed part back in order, authenticating every chunk; a part cut short or altered is an error.
struct EvidencePartReader {
    struct Record {
        var timestamp: Int64
        var wireLength: Int
        var linkType: LinkType
        var bytes: ArraySlice<UInt8>
    }

    let part: EvidencePart.Closed
    let key: SymmetricKey
    var offset: off_t = 0
    var chunk: UInt64 = 0
    var records: UInt64 = 0
    var plain: [UInt8] = []
    var position = 0

    init(_ part: EvidencePart.Closed, key: SymmetricKey) {
        self.part = part
        self.key = key
    }

    /// The next record; nil at the end (after checking every record the writer wrote was read).
    mutating func next() throws(EvidenceError) -> Record? {
        guard try fill(EvidencePart.recordHeader) else {
            guard records == part.records, position == plain.count else {
                throw EvidenceError("evidence part \(part.id) of worker \(part.worker) ends early (\(records) of \(part.records) packets)")
            }
            return nil
        }
        func field<T: FixedWidthInteger>(_ at: Int, _: T.Type) -> T {
            plain.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: position + at, as: T.self)) }
        }
        let ts = field(0, Int64.self)
        let wire = field(8, UInt32.self)
        let link = field(12, Int32.self)
        let length = Int(field(16, UInt32.self))
        guard length <= 1 << 24, try fill(EvidencePart.recordHeader + length) else {
            throw EvidenceError("evidence part \(part.id) of worker \(part.worker): record cut short")
        }
        let start = position + EvidencePart.recordHeader
        position = start + length
        records &+= 1
        return Record(timestamp: ts, wireLength: Int(wire), linkType: LinkType(rawValue: link), bytes: plain[start..<start + length])
    }

    /// Makes `n` bytes available from `position`; false at the end of the part with none left.
    mutating func fill(_ n: Int) throws(EvidenceError) -> Bool {
        while plain.count - position < n {
            if position > 0 {
                plain.removeSubrange(0..<position)
                position = 0
            }
            guard chunk < part.chunks else {
                if plain.isEmpty { return false }
                throw EvidenceError("evidence part \(part.id) of worker \(part.worker): record cut short")
            }
            var lengthBytes = [UInt8](repeating: 0, count: 4)
            try read(into: &lengthBytes)
            let length = Int(lengthBytes.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self)) })
            guard length <= EvidencePart.chunkSize + 1 << 20 else { throw EvidenceError("evidence part \(part.id): bad chunk length") }
            var sealed = [UInt8](repeating: 0, count: length + 16)
            try read(into: &sealed)
            do {
                let box = try ChaChaPoly.SealedBox(nonce: EvidencePart.nonce(part: part.id, chunk: chunk),
                                                   ciphertext: sealed[0..<length], tag: sealed[length...])
                plain.append(contentsOf: try ChaChaPoly.open(box, using: key))
            } catch {
                throw EvidenceError("evidence part \(part.id) of worker \(part.worker): chunk \(chunk) does not authenticate")
            }
            chunk &+= 1
        }
        return true
    }

    mutating func read(into bytes: inout [UInt8]) throws(EvidenceError) {
        var done = 0
        let count = bytes.count
        while done < count {
            let n = bytes.withUnsafeMutableBytes { pread(part.fd, $0.baseAddress! + done, count - done, offset) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { throw EvidenceError("evidence part \(part.id): read failed: \(n < 0 ? String(cString: strerror(errno)) : "end of file")") }
            done += n
            offset += off_t(n)
        }
    }
}

extension EvidencePart {
    /// Writes the scope's packets of `ring` from the capture's lookback start to its end (read per frame:
    /// an extension made meanwhile counts); returns how many. Stops when the capture is full.
    func writeLookback(_ ring: LookbackRing) throws(EvidenceError) -> UInt64 {
        let from = capture.lookbackFrom, scope = capture.scope
        var written: UInt64 = 0
        var full = false
        do {
            try ring.forEach { f in
                guard !full, f.timestamp >= from, f.timestamp.nanoseconds <= capture.endNanoseconds.load(ordering: .acquiring),
                      let s = EvidenceManager.summary(of: f), scope.matches(s) else { return }
                if try write(s, f.bytes) { written &+= 1 } else { full = true }
            }
        } catch let e as EvidenceError {
            throw e
        } catch {
            throw EvidenceError("\(error)")
        }
        return written
    }
}
