import PacketCore

/// Timestamp resolution declared in every Interface Description Block (`if_tsresol`) and used for
/// every Enhanced Packet Block of the file, so readers never guess.
public enum TimestampResolution: String, Sendable {
    case nanoseconds = "ns"
    case microseconds = "us"

    /// `if_tsresol` value: 10^-9 or 10^-6.
    var tsresol: UInt8 { self == .nanoseconds ? 9 : 6 }
    var divisor: Int64 { self == .nanoseconds ? 1 : 1000 }
}

/// Builds pcapng blocks (little-endian section) into a reused byte buffer that the caller passes on
/// (to the age stream). Only the blocks evidence needs: SHB, IDB, EPB, with comment options.
///
/// Each distinct link type gets its own interface (a replay may merge files of different link types);
/// its IDB is written the first time a packet of that type is.
public struct PcapngWriter {
    public let resolution: TimestampResolution
    public let snapLength: UInt32
    public private(set) var buffer: [UInt8] = []
    var interfaces: [Int32] = []
    let interfaceComments: [String]

    let interfaceDescription: String
    let captureFilter: String?

    /// `captureFilter` is written as `if_filter` (a libpcap filter string) and shown by tshark as the
    /// interface's capture filter; `interfaceDescription` as `if_description`.
    public init(resolution: TimestampResolution, snapLength: Int, interfaceDescription: String = "sensor evidence",
                captureFilter: String? = nil, interfaceComments: [String]) {
        self.resolution = resolution
        self.snapLength = UInt32(clamping: snapLength)
        self.interfaceDescription = interfaceDescription
        self.captureFilter = captureFilter
        self.interfaceComments = interfaceComments
        buffer.reserveCapacity(70_000)
    }

    /// Takes the bytes built so far (the caller writes them out) and keeps the capacity.
    public mutating func drain(_ body: (UnsafeRawBufferPointer) throws -> Void) rethrows {
        try buffer.withUnsafeBytes { try body($0) }
        buffer.removeAll(keepingCapacity: true)
    }

    // MARK: Blocks

    /// Section Header Block with `shb_comment`s, `shb_os` and `shb_userappl`.
    public mutating func sectionHeader(comments: [String], os: String, application: String) {
        block(type: 0x0A0D_0D0A) { w in
            w.u32(0x1A2B_3C4D)
            w.u16(1); w.u16(0)
            w.u64(UInt64.max) // section length unknown (streamed)
            for c in comments { w.option(1, Array(c.utf8)) }
            w.option(3, Array(os.utf8))
            w.option(4, Array(application.utf8))
            w.endOfOptions()
        }
    }

    /// The interface index for `linkType`, writing its IDB first if it is new.
    public mutating func interface(for linkType: LinkType) -> UInt32 {
        if let i = interfaces.firstIndex(of: linkType.rawValue) { return UInt32(i) }
        interfaces.append(linkType.rawValue)
        let linktype = UInt16(truncatingIfNeeded: Self.linktype(fromDLT: linkType.rawValue))
        let snap = snapLength, tsresol = resolution.tsresol, comments = interfaceComments
        let description = interfaceDescription, filter = captureFilter
        block(type: 1) { w in
            w.u16(linktype); w.u16(0)
            w.u32(snap)
            w.option(2, Array("sensor-evidence".utf8)) // if_name
            w.option(3, Array(description.utf8))    // if_description
            w.option(9, [tsresol])                  // if_tsresol
            if let filter { w.option(11, [0] + Array(filter.utf8)) } // if_filter: libpcap filter string
            for c in comments { w.option(1, Array(c.utf8)) }
            w.endOfOptions()
        }
        return UInt32(interfaces.count - 1)
    }

    /// Enhanced Packet Block. `captured` is already cut to the snap length; `comment` becomes `opt_comment`.
    public mutating func packet(timestamp: Timestamp, wireLength: Int, captured: UnsafeRawBufferPointer,
                                linkType: LinkType, comment: String? = nil) {
        let ifIndex = interface(for: linkType)
        let units = UInt64(bitPattern: timestamp.nanoseconds / resolution.divisor)
        let comment = comment
        block(type: 6) { w in
            w.u32(ifIndex)
            w.u32(UInt32(truncatingIfNeeded: units >> 32))
            w.u32(UInt32(truncatingIfNeeded: units))
            w.u32(UInt32(captured.count))
            w.u32(UInt32(clamping: wireLength))
            w.bytes.append(contentsOf: captured)
            w.pad()
            if let comment {
                w.option(1, Array(comment.utf8))
                w.endOfOptions()
            }
        }
    }

    /// libpcap DLT values that differ from the pcap/pcapng LINKTYPE numbers on Linux.
    static func linktype(fromDLT dlt: Int32) -> Int32 {
        switch dlt {
        case 12, 14: return 101 // DLT_RAW → LINKTYPE_RAW
        default: return dlt
        }
    }

    // MARK: Encoding

    mutating func block(type: UInt32, _ body: (inout BlockWriter) -> Void) {
        var w = BlockWriter(bytes: buffer)
        buffer = []
        let start = w.bytes.count
        w.u32(type)
        w.u32(0) // total length, patched below
        body(&w)
        let total = UInt32(w.bytes.count - start + 4)
        w.u32(total)
        withUnsafeBytes(of: total.littleEndian) { t in
            for i in 0..<4 { w.bytes[start + 4 + i] = t[i] }
        }
        buffer = w.bytes
    }

    struct BlockWriter {
        var bytes: [UInt8]
        mutating func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
        mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
        mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
        mutating func pad() { while bytes.count % 4 != 0 { bytes.append(0) } }
        mutating func option(_ code: UInt16, _ value: [UInt8]) {
            // Option values are limited to 65535 bytes; longer comments are cut (the custody log has them whole).
            let v = value.prefix(65532)
            u16(code); u16(UInt16(v.count))
            bytes.append(contentsOf: v)
            pad()
        }
        mutating func endOfOptions() { u16(0); u16(0) }
    }
}
