import PacketCore

/// Domain names in DNS messages (RFC 1035 §3.1, §4.1.4), possibly compressed.
///
/// Compression pointers are hostile-input territory: a pointer may only point strictly backwards of
/// the label it replaces (so every jump makes progress toward offset 0 and no loop can form), at most
/// `maxJumps` pointers are followed, and the uncompressed name may not exceed 255 bytes. The
/// extended label types (0x40, 0x80) are obsolete and rejected. Nothing here allocates: text goes
/// into a caller's fixed buffer of `maxTextLength` bytes.
public enum DNSName {
    /// Longest name on the wire, uncompressed (RFC 1035 §3.1).
    public static let maxWireLength = 255
    /// Longest presentation text: labels joined by dots, without a trailing dot.
    public static let maxTextLength = 254
    /// Compression pointers followed per name, a bound well above any real message's nesting.
    public static let maxJumps = 32

    /// The offset just after the name's bytes at `offset` (after its terminating zero or first pointer),
    /// or nil when the name is malformed anywhere along its compression chain.
    @inlinable
    public static func skip(_ message: UnsafeRawBufferPointer, at offset: Int) -> Int? {
        walk(message, at: offset) { _ in }
    }

    /// Writes the name as text (`www.example.com`; the root is `.`) into `out`, returning the offset after
    /// the name in the message and the text length, or nil when malformed. `out` must hold `maxTextLength` bytes.
    @inlinable
    public static func read(_ message: UnsafeRawBufferPointer, at offset: Int, into out: UnsafeMutableRawBufferPointer,
                            lowercase: Bool = false) -> (end: Int, length: Int)? {
        var n = 0
        guard let end = walk(message, at: offset, label: { label in
            if n > 0 { out[n] = 0x2E; n += 1 }
            for b in label {
                out[n] = lowercase && b >= 0x41 && b <= 0x5A ? b | 0x20 : b
                n += 1
            }
        }) else { return nil }
        if n == 0 { out[0] = 0x2E; n = 1 }
        return (end, n)
    }

    /// Follows a name, calling `label` with each label's bytes. Returns the offset after the name.
    @inlinable
    static func walk(_ message: UnsafeRawBufferPointer, at offset: Int, label: (UnsafeRawBufferPointer) -> Void) -> Int? {
        var pos = offset
        var end = -1
        var jumps = 0
        var wire = 1  // the terminating root label
        // Pointers must point before the start of the label run they replace.
        var limit = offset
        let count = message.count
        while true {
            guard pos >= 0, pos < count else { return nil }
            let len = Int(message[pos])
            switch len & 0xC0 {
            case 0x00:
                if len == 0 { return end >= 0 ? end : pos + 1 }
                guard pos + 1 + len <= count else { return nil }
                wire += len + 1
                guard wire <= maxWireLength else { return nil }
                label(UnsafeRawBufferPointer(rebasing: message[(pos + 1)..<(pos + 1 + len)]))
                pos += 1 + len
            case 0xC0:
                guard pos + 1 < count else { return nil }
                let target = (len & 0x3F) << 8 | Int(message[pos + 1])
                guard target < limit, jumps < maxJumps else { return nil }
                jumps += 1
                if end < 0 { end = pos + 2 }
                limit = target
                pos = target
            default:
                return nil
            }
        }
    }
}
