/// The fuzzer's bytes, read front to back.
///
/// Reads past the end give zeros (or an empty buffer) instead of failing, so every input, however short,
/// is a complete scenario: libFuzzer then spends its time on what the bytes mean, not on their framing.
struct FuzzInput {
    let bytes: UnsafeRawBufferPointer
    var offset = 0

    init(_ data: UnsafePointer<UInt8>, _ size: Int) {
        bytes = UnsafeRawBufferPointer(start: data, count: size)
    }

    var isAtEnd: Bool { offset >= bytes.count }
    var remaining: Int { bytes.count - offset }

    mutating func u8() -> UInt8 {
        guard offset < bytes.count else { return 0 }
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func u16() -> UInt16 { UInt16(u8()) << 8 | UInt16(u8()) }
    mutating func u32() -> UInt32 { UInt32(u16()) << 16 | UInt32(u16()) }

    /// Up to `n` bytes (fewer at the end of the input).
    mutating func take(_ n: Int) -> UnsafeRawBufferPointer {
        let n = min(max(n, 0), remaining)
        defer { offset += n }
        return UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + n)])
    }

    /// Everything not read yet.
    mutating func rest() -> UnsafeRawBufferPointer { take(remaining) }

    /// The rest as text (invalid UTF-8 repaired, as a file read would be).
    mutating func restAsText() -> String { String(decoding: rest(), as: UTF8.self) }
}
