import CPcap
#if canImport(Glibc)
import Glibc
#endif

/// The records of a classic pcap file, read in large blocks and handed out in place.
///
/// Why: libpcap reads a savefile record by record through stdio: two `fread` calls per packet, and every
/// byte copied from stdio's buffer into libpcap's after the kernel copied it into stdio's. Here the file
/// is read in half-megabyte blocks into one buffer (small enough to stay in cache while its records are
/// processed) and each record is used where it lies.
///
/// Only what libpcap reads plainly is read here: a native-byte-order 2.4 file (microsecond or
/// nanosecond magic) and records whose captured length is within the file's snapshot length and 256 KiB
/// and whose fraction of a second is below one second. At the first record that is anything else, or a
/// cut one, or the end of the file (`next` returns nil), the caller hands the rest of the file to libpcap
/// from `offset`, so damaged and unusual files get libpcap's own handling and messages.
struct PlainPcapRecords {
    let fd: Int32
    let buffer: UnsafeMutableRawPointer
    /// Unread bytes are `buffer[start..<end]`; `fileOffset` is the file offset of `buffer[end]`.
    private var start = 0, end = 0
    private var fileOffset = 24
    let nanoseconds: Bool
    let maxCaptured: UInt32

    /// Room for the largest record read here (256 KiB and its header) and many small ones.
    static let capacity = 512 << 10

    /// The file offset of the next record.
    var offset: Int { fileOffset &- (end &- start) }

    /// A reader of `fd` when it is a regular file in a format read here, else nil.
    init?(fd: Int32, linkType: Int32) {
        // libpcap rewrites the headers of Linux USB captures; those stay with it.
        guard linkType != DLT_USB_LINUX, linkType != DLT_USB_LINUX_MMAPPED else { return nil }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { return nil }
        var h = (UInt32(0), UInt16(0), UInt16(0), Int32(0), UInt32(0), UInt32(0), UInt32(0))
        guard withUnsafeMutableBytes(of: &h, { pread(fd, $0.baseAddress!, 24, 0) }) == 24 else { return nil }
        let (magic, major, minor, _, _, snaplen, _) = h
        guard magic == 0xA1B2_C3D4 || magic == 0xA1B2_3C4D, major == 2, minor == 4 else { return nil }
        self.fd = fd
        buffer = .allocate(byteCount: Self.capacity, alignment: 64)
        nanoseconds = magic == 0xA1B2_3C4D
        let limit: UInt32 = 262_144
        maxCaptured = snaplen == 0 ? limit : min(snaplen, limit)
    }

    func close() { buffer.deallocate() }

    /// The file's size when it no longer holds all that was read of it: it was cut while being read, and
    /// libpcap, reading on from `offset` (at or past its new end), would take the lost records for a
    /// clean end.
    func shrunkSize() -> Int? {
        var st = stat()
        guard fstat(fd, &st) == 0, Int(st.st_size) < fileOffset else { return nil }
        return Int(st.st_size)
    }

    /// The next record (its header in `header`, nanoseconds in `tv_usec` as libpcap gives them at
    /// nanosecond precision), or nil when libpcap is to read on from `offset`. The bytes returned stay
    /// valid until the following call.
    @inline(__always)
    mutating func next(_ header: inout pcap_pkthdr) -> UnsafePointer<UInt8>? {
        if end &- start < 16 {
            refill()
            guard end &- start >= 16 else { return nil }
        }
        let r = UnsafeRawPointer(buffer + start)
        let seconds = r.loadUnaligned(as: UInt32.self)
        let fraction = r.loadUnaligned(fromByteOffset: 4, as: UInt32.self)
        let captured = r.loadUnaligned(fromByteOffset: 8, as: UInt32.self)
        let wire = r.loadUnaligned(fromByteOffset: 12, as: UInt32.self)
        guard fraction < (nanoseconds ? 1_000_000_000 : 1_000_000), captured <= maxCaptured else { return nil }
        let length = 16 &+ Int(captured)
        if end &- start < length {
            refill()
            guard end &- start >= length else { return nil }
        }
        // Unsigned, as the format defines them (to 2106); `RawPacket` reads libpcap's records the same way.
        header.ts.tv_sec = Int(seconds)
        header.ts.tv_usec = nanoseconds ? Int(fraction) : Int(fraction) &* 1000
        header.caplen = captured
        header.len = wire
        let data = UnsafePointer((buffer + start + 16).assumingMemoryBound(to: UInt8.self))
        start &+= length
        return data
    }

    /// Moves the unread bytes to the front and fills the buffer behind them.
    @inline(never)
    mutating func refill() {
        let left = end &- start
        if left > 0 && start > 0 { memmove(buffer, buffer + start, left) }
        start = 0
        end = left
        while end < Self.capacity {
            let n = pread(fd, buffer + end, Self.capacity - end, off_t(fileOffset))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return }
            end &+= n
            fileOffset &+= n
        }
    }
}
