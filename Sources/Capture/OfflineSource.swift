import CPcap
import PacketCore
import Synchronization

/// Reads one pcap or pcapng file through libpcap, with nanosecond timestamps and an optional BPF filter.
public final class PcapFileReader: PacketSource {
    public let path: String
    public let linkType: LinkType
    public private(set) var packetsRead: UInt64 = 0
    let handle: OpaquePointer
    let stopped = Atomic<Bool>(false)

    public init(path: String, filter: String? = nil) throws(CaptureError) {
        self.path = path
        var errbuf = [CChar](repeating: 0, count: Int(PCAP_ERRBUF_SIZE) + 1)
        guard let h = pcap_open_offline_with_tstamp_precision(path, UInt32(PCAP_TSTAMP_PRECISION_NANO), &errbuf) else {
            throw CaptureError(kind: .open, input: path, message: String(cString: errbuf))
        }
        handle = h
        linkType = LinkType(rawValue: pcap_datalink(h))
        if let filter, !filter.isEmpty {
            var program = bpf_program()
            guard pcap_compile(h, &program, filter, 1, PCAP_NETMASK_UNKNOWN) == 0 else {
                let msg = String(cString: pcap_geterr(h))
                pcap_close(h)
                throw CaptureError(kind: .filter, input: path, message: msg)
            }
            defer { pcap_freecode(&program) }
            guard pcap_setfilter(h, &program) == 0 else {
                let msg = String(cString: pcap_geterr(h))
                pcap_close(h)
                throw CaptureError(kind: .filter, input: path, message: msg)
            }
        }
    }

    deinit { pcap_close(handle) }

    public func next() throws(CaptureError) -> RawPacket? {
        if stopped.load(ordering: .relaxed) { return nil }
        var header: UnsafeMutablePointer<pcap_pkthdr>?
        var data: UnsafePointer<UInt8>?
        let rc = pcap_next_ex(handle, &header, &data)
        switch rc {
        case 1:
            guard let hdr = header?.pointee, let data else { return nil }
            packetsRead &+= 1
            let caplen = Int(hdr.caplen)
            let ts = Timestamp(nanoseconds: Int64(hdr.ts.tv_sec) &* 1_000_000_000 &+ Int64(hdr.ts.tv_usec))
            return RawPacket(timestamp: ts, capturedLength: caplen, wireLength: max(Int(hdr.len), caplen), linkType: linkType,
                             bytes: UnsafeRawBufferPointer(start: data, count: caplen))
        case PCAP_ERROR_BREAK:
            return nil
        default:
            // -1: the file is damaged from here on (cut record, lying length, ...).
            throw CaptureError(kind: .read, input: path, message: String(cString: pcap_geterr(handle)), packetsBefore: packetsRead)
        }
    }

    public func stop() {
        stopped.store(true, ordering: .relaxed)
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

    public func stop() {
        stopped.store(true, ordering: .relaxed)
        for r in readers { r.stop() }
    }

    public var packetsRead: UInt64 { readers.reduce(0) { $0 + $1.packetsRead } }
}
