import Foundation

/// Writes pcapng files for tests that need inputs no public capture has: one little-endian section,
/// interfaces with raw options (e.g. `if_tsresol`, `if_tsoffset`), and Enhanced Packet Blocks whose
/// 64-bit timestamps are written as given, in their interface's units.
public struct PcapngFileWriter {
    public var data = Data()

    public init() {
        block(0x0A0D_0D0A, Self.le(UInt32(0x1A2B_3C4D)) + Self.le(UInt16(1)) + Self.le(UInt16(0)) + Self.le(Int64(-1)))
    }

    public static func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    static func padded(_ b: [UInt8]) -> [UInt8] { b + [UInt8](repeating: 0, count: (4 - b.count % 4) % 4) }

    mutating func block(_ type: UInt32, _ body: [UInt8]) {
        let length = UInt32(12 + body.count)
        data.append(contentsOf: Self.le(type) + Self.le(length) + body + Self.le(length))
    }

    /// An interface of `linkType` (1: Ethernet); options as (code, value): (9, [9]) is `if_tsresol` 10⁻⁹,
    /// (9, [0]) whole seconds, (14, le(Int64 s)) `if_tsoffset`.
    public mutating func interface(linkType: UInt16 = 1, options: [(UInt16, [UInt8])] = []) {
        var body = Self.le(linkType) + Self.le(UInt16(0)) + Self.le(UInt32(0))
        for (code, value) in options { body += Self.le(code) + Self.le(UInt16(value.count)) + Self.padded(value) }
        body += [0, 0, 0, 0]
        block(1, body)
    }

    /// An Enhanced Packet Block on `interface` (its index in the order interfaces were added).
    public mutating func packet(interface: UInt32, timestamp: UInt64, _ frame: [UInt8]) {
        let body = Self.le(interface) + Self.le(UInt32(timestamp >> 32)) + Self.le(UInt32(timestamp & 0xFFFF_FFFF))
            + Self.le(UInt32(frame.count)) + Self.le(UInt32(frame.count)) + Self.padded(frame)
        block(6, body)
    }

    public func write(to path: String) throws { try data.write(to: URL(fileURLWithPath: path)) }
}
