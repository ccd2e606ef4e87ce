import CPcap
import PacketCore
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Reads one pcap or pcapng file through libpcap, with nanosecond timestamps (`fractionUnit: 1` below)
/// and an optional BPF filter.
public final class PcapFileReader: PacketSource {
    public let path: String
    public let linkType: LinkType
    /// A classic pcap file (libpcap's version 2.x; pcapng is 1.0): its record seconds are unsigned.
    let unsignedSeconds: Bool
    public private(set) var packetsRead: UInt64 = 0
    let handle: OpaquePointer
    /// The stream libpcap reads (and the decompressor behind it, if any).
    let input: CaptureInput
    let stopped = Atomic<Bool>(false)
    /// stdio's buffer for the file, ours so its size is what we ask (glibc ignores the size when stdio
    /// allocates it). Freed after `pcap_close` has closed the FILE.
    let readBuffer: UnsafeMutablePointer<CChar>
    static let readBufferSize = 1 << 16
    /// A plain pcap file's records read in blocks (`PlainPcapRecords`) until one needs libpcap, which then
    /// reads on from there; nil for other inputs and filtered reads.
    var plain: PlainPcapRecords?

    public init(path: String, filter: String? = nil) throws(CaptureError) {
        self.path = path
        var errbuf = [CChar](repeating: 0, count: Int(PCAP_ERRBUF_SIZE) + 1)
        // Our own FILE with a 64 KiB buffer: libpcap reads record by record through stdio, and the default
        // 4 KiB buffer costs a system call every few packets.
        let input = try CaptureInput(path: path)
        let file = input.file
        let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: Self.readBufferSize)
        setvbuf(file, buffer, _IOFBF, Self.readBufferSize)
        guard let h = pcap_fopen_offline_with_tstamp_precision(file, UInt32(PCAP_TSTAMP_PRECISION_NANO), &errbuf) else {
            fclose(file)
            buffer.deallocate()
            input.reap()
            let compressed = input.compression.map { " (after \($0.tool) -dc)" } ?? ""
            throw CaptureError(kind: .open, input: path, message: String(cString: errbuf) + compressed)
        }
        self.input = input
        handle = h
        readBuffer = buffer
        linkType = LinkType(rawValue: pcap_datalink(h))
        unsignedSeconds = pcap_major_version(h) == 2
        if let filter, !filter.isEmpty {
            var program = bpf_program()
            // Throwing from here runs deinit, which closes the handle.
            guard pcap_compile(h, &program, filter, 1, PCAP_NETMASK_UNKNOWN) == 0 else {
                throw CaptureError(kind: .filter, input: path, message: String(cString: pcap_geterr(h)))
            }
            defer { pcap_freecode(&program) }
            guard pcap_setfilter(h, &program) == 0 else {
                throw CaptureError(kind: .filter, input: path, message: String(cString: pcap_geterr(h)))
            }
        } else if input.compression == nil {
            plain = PlainPcapRecords(fd: fileno(file), linkType: pcap_datalink(h))
        }
    }

    deinit {
        plain?.close()
        pcap_close(handle)
        readBuffer.deallocate()
        input.reap()
    }

    /// libpcap's complaint, with the decompressor's when it failed too (the archive, not the capture, is cut).
    func readError() -> CaptureError {
        let why = input.decompressorFailure(wait: false).map { "; \($0)" } ?? ""
        return CaptureError(kind: .read, input: path, message: String(cString: pcap_geterr(handle)) + why, packetsBefore: packetsRead)
    }

    /// The end of the stream: a decompressor that failed means the capture was cut or corrupt.
    func endOfInput() throws(CaptureError) {
        guard !stopped.load(ordering: .relaxed), let problem = input.decompressorFailure() else { return }
        throw CaptureError(kind: .read, input: path, message: problem, packetsBefore: packetsRead)
    }

    /// libpcap reads on from the record `plain` stopped at (its stdio stream is moved there). A file cut
    /// below what was read is damage, as libpcap reports a record it finds cut.
    func handToLibpcap() throws(CaptureError) {
        guard let m = plain else { return }
        plain = nil
        defer { m.close() }
        fseeko(input.file, off_t(m.offset), SEEK_SET)
        if let size = m.shrunkSize() {
            throw CaptureError(kind: .read, input: path, message: "the file shrank to \(size) bytes while it was read", packetsBefore: packetsRead)
        }
    }

    public func next() throws(CaptureError) -> RawPacket? {
        if stopped.load(ordering: .relaxed) { return nil }
        if plain != nil {
            var h = pcap_pkthdr()
            if let data = plain!.next(&h) {
                packetsRead &+= 1
                return RawPacket(header: &h, data: data, linkType: linkType, fractionUnit: 1, unsignedSeconds: true)
            }
            try handToLibpcap()
        }
        var header: UnsafeMutablePointer<pcap_pkthdr>?
        var data: UnsafePointer<UInt8>?
        let rc = pcap_next_ex(handle, &header, &data)
        switch rc {
        case 1:
            guard let header, let data else { return nil }
            packetsRead &+= 1
            return RawPacket(header: header, data: data, linkType: linkType, fractionUnit: 1, unsignedSeconds: unsignedSeconds)
        case PCAP_ERROR_BREAK:
            try endOfInput()
            return nil
        default:
            // -1: the file is damaged from here on (cut record, lying length, ...).
            throw readError()
        }
    }

    public func dispatch(maxPackets: Int, to consumer: PacketConsumer) throws(CaptureError) -> Int {
        if stopped.load(ordering: .relaxed) { return 0 }
        if plain != nil {
            let consumer = Unmanaged.passUnretained(consumer)
            var h = pcap_pkthdr()
            var n = 0
            while n < maxPackets, !stopped.load(ordering: .relaxed), let data = plain!.next(&h) {
                let packet = RawPacket(header: &h, data: data, linkType: linkType, fractionUnit: 1, unsignedSeconds: true)
                n &+= 1
                packetsRead &+= 1
                consumer._withUnsafeGuaranteedRef { $0.consume(packet) }
            }
            if n > 0 || stopped.load(ordering: .relaxed) { return n }
            try handToLibpcap()
        }
        var context = DispatchContext(consumer: Unmanaged.passUnretained(consumer), linkType: linkType,
                                      unsignedSeconds: unsignedSeconds)
        let rc = withUnsafeMutablePointer(to: &context) { ctx in
            pcap_dispatch(handle, Int32(clamping: maxPackets), { user, hdr, data in
                guard let user, let hdr, let data else { return }
                let c = UnsafeMutableRawPointer(user).assumingMemoryBound(to: DispatchContext.self)
                let packet = RawPacket(header: hdr, data: data, linkType: c.pointee.linkType, fractionUnit: 1,
                                       unsignedSeconds: c.pointee.unsignedSeconds)
                c.pointee.delivered &+= 1
                c.pointee.consumer._withUnsafeGuaranteedRef { $0.consume(packet) }
            }, UnsafeMutableRawPointer(ctx).assumingMemoryBound(to: UInt8.self))
        }
        // Counted in the callback: a batch that ends in an error has still delivered its first packets.
        packetsRead &+= context.delivered
        if rc == 0 { try endOfInput() }
        if rc >= 0 { return Int(rc) }
        if rc == PCAP_ERROR_BREAK { return 0 }
        throw readError()
    }

    /// What the C callback needs. The consumer is held unretained: it outlives the `pcap_dispatch` call
    /// that uses it, and retaining it per packet would cost more than decoding the packet.
    struct DispatchContext {
        var consumer: Unmanaged<PacketConsumer>
        var linkType: LinkType
        var unsignedSeconds: Bool
        var delivered: UInt64 = 0
    }

    public func stop() {
        stopped.store(true, ordering: .relaxed)
        pcap_breakloop(handle)
    }
}

/// Several capture files read as one stream in timestamp order, as `mergecap` would merge them.
///
/// Each file keeps one packet pending (a view into that file's libpcap buffer); the earliest goes next.
/// A file that fails mid-way stops contributing and its error is kept for the end-of-run report, so the
/// other files and every packet before the damage are still processed.
public final class MergedFileSource: PacketSource {
    public let readers: [PcapFileReader]
    var pending: [RawPacket?]
    var primed = false
    var lastIndex = -1
    public private(set) var errors: [CaptureError] = []
    let stopped = Atomic<Bool>(false)

    /// Opens every file first, so a missing or unreadable input is reported before any processing.
    public init(paths: [String], filter: String? = nil) throws(CaptureError) {
        var rs: [PcapFileReader] = []
        for p in paths { rs.append(try PcapFileReader(path: p, filter: filter)) }
        readers = rs
        pending = Array(repeating: nil, count: rs.count)
    }

    func advance(_ i: Int) {
        do {
            pending[i] = try readers[i].next()
        } catch {
            pending[i] = nil
            errors.append(error)
        }
    }

    public func next() throws(CaptureError) -> RawPacket? {
        if stopped.load(ordering: .relaxed) { return nil }
        if !primed {
            for i in readers.indices { advance(i) }
            primed = true
        } else if lastIndex >= 0 {
            advance(lastIndex)
        }
        var best = -1
        for i in pending.indices {
            guard let p = pending[i] else { continue }
            if best < 0 || p.timestamp < pending[best]!.timestamp { best = i }
        }
        lastIndex = best
        return best >= 0 ? pending[best] : nil
    }

    /// One file needs no merging: libpcap's batch dispatch straight through.
    public func dispatch(maxPackets: Int, to consumer: PacketConsumer) throws(CaptureError) -> Int {
        if readers.count == 1 {
            do {
                return try readers[0].dispatch(maxPackets: maxPackets, to: consumer)
            } catch {
                errors.append(error)
                return 0
            }
        }
        var n = 0
        while n < maxPackets, let p = try next() {
            consumer.consume(p)
            n += 1
        }
        return n
    }

    public func stop() {
        stopped.store(true, ordering: .relaxed)
        for r in readers { r.stop() }
    }

    /// Whether `stop()` was called (a shutdown signal during a replay).
    public var wasStopped: Bool { stopped.load(ordering: .relaxed) }

    public var packetsRead: UInt64 { readers.reduce(0) { $0 + $1.packetsRead } }
}
