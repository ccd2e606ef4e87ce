import PacketCore

/// The Community IDs of recently written flows, direct-mapped by the flow key's hash.
///
/// The events of one flow come close together (each HTTP transaction and file of a keep-alive
/// connection, a DNS exchange and its flow record), and the SHA-1 behind an id costs more than writing
/// the rest of the `network` object. One per emitter (one thread); a fixed table, no allocation after start.
final class CommunityIDCache {
    /// `1:` and 28 characters of base64 (a SHA-1 digest).
    static let idLength = 30
    static let slots = 256

    struct Entry {
        var key: FlowKey?
        var id: (UInt64, UInt64, UInt64, UInt64)
    }

    /// A Community ID being rendered into an entry.
    struct Rendered: ByteOutput {
        var bytes: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        var count = 0
        mutating func append(_ byte: UInt8) {
            guard count < 32 else { return }
            withUnsafeMutableBytes(of: &bytes) { $0[count] = byte }
            count &+= 1
        }
        mutating func append(bytes b: UnsafeRawBufferPointer) { for c in b { append(c) } }
    }

    let communityID: CommunityID
    let entries: UnsafeMutablePointer<Entry>

    init(_ communityID: CommunityID) {
        self.communityID = communityID
        entries = .allocate(capacity: Self.slots)
        entries.initialize(repeating: Entry(key: nil, id: (0, 0, 0, 0)), count: Self.slots)
    }

    deinit { entries.deallocate() }

    /// Appends the Community ID of `key` (as `CommunityID.append` writes it).
    func append(_ key: FlowKey, to w: inout JSONWriter) {
        let e = entries + Int(truncatingIfNeeded: key.hashValue64 & UInt64(Self.slots - 1))
        if e.pointee.key != key {
            var r = Rendered()
            communityID.append(key, to: &r)
            e.pointee = Entry(key: r.count == Self.idLength ? key : nil, id: r.bytes)
            guard r.count == Self.idLength else {
                withUnsafeBytes(of: r.bytes) { w.append(bytes: UnsafeRawBufferPointer(rebasing: $0[..<min(r.count, 32)])) }
                return
            }
        }
        withUnsafeBytes(of: e.pointee.id) { w.append(bytes: UnsafeRawBufferPointer(rebasing: $0[..<Self.idLength])) }
    }
}
