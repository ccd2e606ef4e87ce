/// Somewhere text renderers (addresses, timestamps, Community IDs) append bytes to: a `[UInt8]`, or the
/// event writer's raw buffer. Renderers are generic over it so the event path writes straight into its
/// buffer without an intermediate array.
public protocol ByteOutput {
    mutating func append(_ byte: UInt8)
    mutating func append(bytes: UnsafeRawBufferPointer)
}

extension Array: ByteOutput where Element == UInt8 {
    @inlinable public mutating func append(bytes: UnsafeRawBufferPointer) { append(contentsOf: bytes) }
}
