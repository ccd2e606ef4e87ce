/// A bounds-checked reader over raw bytes (libpcap's buffer, or a reassembled stream), for every
/// protocol parser in the sensor.
///
/// Like swift-nio's `ByteBuffer` reads, every read returns nil on short input instead of trapping, and
/// nothing is copied: slices share the underlying memory. Parsers of hostile input use only this.
public struct ByteCursor {
    public let bytes: UnsafeRawBufferPointer
    public var offset: Int

    @inlinable public init(_ bytes: UnsafeRawBufferPointer, offset: Int = 0) {
        self.bytes = bytes
        self.offset = offset
    }

    @inlinable public var remaining: Int { bytes.count - offset }
    @inlinable public var isAtEnd: Bool { offset >= bytes.count }

    @inlinable public func has(_ n: Int) -> Bool { n >= 0 && offset <= bytes.count - n }

    @inlinable public mutating func skip(_ n: Int) -> Bool {
        guard has(n) else { return false }
        offset += n
        return true
    }

    @inlinable public mutating func u8() -> UInt8? {
        guard has(1) else { return nil }
        defer { offset += 1 }
        return bytes[offset]
    }

    @inlinable public mutating func u16() -> UInt16? {
        guard has(2) else { return nil }
        defer { offset += 2 }
        return bytes.loadUnaligned(fromByteOffset: offset, as: UInt16.self).bigEndian
    }

    @inlinable public mutating func u32() -> UInt32? {
        guard has(4) else { return nil }
        defer { offset += 4 }
        return bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self).bigEndian
    }

    @inlinable public mutating func u64() -> UInt64? {
        guard has(8) else { return nil }
        defer { offset += 8 }
        return bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self).bigEndian
    }

    @inlinable public mutating func u16le() -> UInt16? {
        guard has(2) else { return nil }
        defer { offset += 2 }
        return bytes.loadUnaligned(fromByteOffset: offset, as: UInt16.self).littleEndian
    }

    @inlinable public mutating func u32le() -> UInt32? {
        guard has(4) else { return nil }
        defer { offset += 4 }
        return bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self).littleEndian
    }

    @inlinable public mutating func u64le() -> UInt64? {
        guard has(8) else { return nil }
        defer { offset += 8 }
        return bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self).littleEndian
    }

    /// The next `n` bytes as a view (no copy), advancing past them.
    @inlinable public mutating func take(_ n: Int) -> UnsafeRawBufferPointer? {
        guard has(n) else { return nil }
        defer { offset += n }
        return UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + n)])
    }

    /// Peeks without advancing.
    @inlinable public func peek(at relative: Int = 0) -> UInt8? {
        let i = offset + relative
        guard relative >= 0, i < bytes.count else { return nil }
        return bytes[i]
    }

    /// A view of `n` bytes at an absolute offset (for formats with absolute pointers, e.g. DNS names,
    /// SMB2 buffer offsets), or nil when out of range.
    @inlinable public func slice(at absolute: Int, count n: Int) -> UnsafeRawBufferPointer? {
        guard absolute >= 0, n >= 0, absolute <= bytes.count - n else { return nil }
        return UnsafeRawBufferPointer(rebasing: bytes[absolute..<(absolute + n)])
    }
}
