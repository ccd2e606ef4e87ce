import CPcap
import CSensorShims
import PacketCore
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// How one worker opens its capture handle on an interface.
public struct LiveCaptureOptions: Sendable, Equatable {
    public var interface: String
    public var snapLength: Int = 262_144
    /// Promiscuous mode: needed on a SPAN or tap port, where the frames are not addressed to this host.
    public var promiscuous: Bool = true
    /// Size of this handle's TPACKET_V3 ring. Each worker has its own ring, so the total is workers × this.
    public var bufferBytes: Int = 64 << 20
    /// Block retire timeout: how long libpcap waits before handing over a part-filled ring block. Also
    /// bounds how long a quiet worker waits before it can do its periodic work.
    public var timeoutMilliseconds: Int = 100
    /// Kernel BPF filter (minimisation: only in-scope traffic is ever copied to user space).
    public var filter: String?
    /// PACKET_FANOUT group to join (hash with defrag), or nil for a lone worker.
    public var fanoutGroup: UInt16?

    public init(interface: String) { self.interface = interface }
}

/// Kernel-side counters of one capture handle (`pcap_stats`), cumulative since the handle opened.
///
/// On Linux (TPACKET) `received` counts every packet that passed the filter, including the ones the ring
/// had no room for; `kernelDropped` counts those; `interfaceDropped` is what the driver dropped.
public struct LiveCaptureCounters: Sendable, Equatable {
    public var received: UInt64 = 0
    public var kernelDropped: UInt64 = 0
    public var interfaceDropped: UInt64 = 0
    public init() {}
    public init(received: UInt64, kernelDropped: UInt64, interfaceDropped: UInt64) {
        self.received = received
        self.kernelDropped = kernelDropped
        self.interfaceDropped = interfaceDropped
    }
}

/// One worker's live capture handle on an interface: libpcap with a TPACKET_V3 ring (PACKET_MMAP),
/// the BPF filter in the kernel, and membership of the sensor's PACKET_FANOUT group.
///
/// Several workers each open one on the same interface and join the same fanout group in hash mode with
/// the defrag flag: the kernel hashes each packet's flow symmetrically (`__skb_get_hash_symmetric`, so
/// both directions of a connection hash alike) after reassembling IP fragments, and delivers it to one
/// socket. A worker therefore sees every packet of its flows and no packet of anyone else's, and owns its
/// flow table without locks (Suricata's af-packet `cluster_flow`). `LiveCaptureTests` checks that on veth.
///
/// Opening needs CAP_NET_RAW (and CAP_NET_ADMIN for promiscuous mode on some drivers); reading does not,
/// which is why the sensor opens every handle first and drops its privileges right after.
public final class PcapLiveSource: PacketSource {
    public let options: LiveCaptureOptions
    public let linkType: LinkType
    /// Warnings libpcap gave on activation (e.g. promiscuous mode not supported), for the log.
    public private(set) var activationWarning: String?
    public private(set) var packetsRead: UInt64 = 0
    let handle: OpaquePointer
    /// Nanoseconds per unit of a record's `ts.tv_usec`: 1 when the kernel gave nanosecond precision.
    let fractionUnit: Int64
    let stopped = Atomic<Bool>(false)
    var selectableFD: Int32 = -1
    /// Kernel counters accumulated across `pcap_stats` calls (libpcap's are 32-bit on some paths).
    var lastRaw = (recv: UInt32(0), drop: UInt32(0), ifdrop: UInt32(0))
    var totals = LiveCaptureCounters()

    public init(options: LiveCaptureOptions) throws(CaptureError) {
        self.options = options
        let name = options.interface
        var errbuf = [CChar](repeating: 0, count: Int(PCAP_ERRBUF_SIZE) + 1)
        guard let h = pcap_create(name, &errbuf) else {
            throw CaptureError(kind: .open, input: name, message: String(cString: errbuf))
        }
        func fail(_ what: String, _ rc: Int32 = 0) -> CaptureError {
            var msg = String(cString: pcap_geterr(h))
            if msg.isEmpty || rc == PCAP_ERROR_PERM_DENIED || rc == PCAP_ERROR_NO_SUCH_DEVICE {
                msg = String(cString: pcap_statustostr(rc)) + (msg.isEmpty ? "" : " (\(msg))")
            }
            if rc == PCAP_ERROR_PERM_DENIED { msg += "; capturing needs CAP_NET_RAW (see Deploy/sensor.service)" }
            pcap_close(h)
            return CaptureError(kind: .open, input: name, message: "\(what): \(msg)")
        }
        var rc = pcap_set_snaplen(h, Int32(options.snapLength))
        guard rc == 0 else { throw fail("set_snaplen", rc) }
        rc = pcap_set_promisc(h, options.promiscuous ? 1 : 0)
        guard rc == 0 else { throw fail("set_promisc", rc) }
        rc = pcap_set_timeout(h, Int32(options.timeoutMilliseconds))
        guard rc == 0 else { throw fail("set_timeout", rc) }
        rc = pcap_set_buffer_size(h, Int32(clamping: options.bufferBytes))
        guard rc == 0 else { throw fail("set_buffer_size", rc) }
        // Immediate mode off: the kernel hands over whole ring blocks (one wakeup per block, not per packet).
        rc = pcap_set_immediate_mode(h, 0)
        guard rc == 0 else { throw fail("set_immediate_mode", rc) }
        fractionUnit = pcap_set_tstamp_precision(h, Int32(PCAP_TSTAMP_PRECISION_NANO)) == 0 ? 1 : 1000
        rc = pcap_activate(h)
        if rc < 0 { throw fail("activate", rc) }
        if rc > 0 { activationWarning = String(cString: pcap_statustostr(rc)) + ": " + String(cString: pcap_geterr(h)) }
        handle = h
        linkType = LinkType(rawValue: pcap_datalink(h))
        // From here on `self` is fully initialised: a throw runs `deinit`, which closes the handle.
        if pcap_setnonblock(h, 1, &errbuf) != 0 {
            throw CaptureError(kind: .open, input: name, message: "setnonblock: \(String(cString: errbuf))")
        }
        selectableFD = pcap_get_selectable_fd(h)

        // Between activation and joining the fanout group this socket receives every packet on the
        // interface; the other workers get those same packets once they join, so keeping them would
        // duplicate flows. Reject everything until `beginCapture()`, which drains what arrived before.
        if let group = options.fanoutGroup {
                // The real filter is installed in `beginCapture()`; compile it now so a typo fails at start.
                if let f = options.filter, !f.isEmpty {
                    var program = bpf_program()
                    guard pcap_compile(h, &program, f, 1, PCAP_NETMASK_UNKNOWN) == 0 else {
                        throw CaptureError(kind: .filter, input: name, message: String(cString: pcap_geterr(h)))
                    }
                    pcap_freecode(&program)
                }
                try Self.setFilter(h, "less 0", input: name)
                let err = csensor_join_fanout(pcap_fileno(h), group, 1)
                guard err == 0 else {
                    throw CaptureError(kind: .open, input: name,
                                       message: "PACKET_FANOUT join (group \(group)): \(String(cString: strerror(err)))")
                }
        } else {
            try Self.setFilter(h, options.filter ?? "", input: name)
        }
    }

    /// Starts delivering packets: discards what the socket held from before it joined the fanout group,
    /// then installs the real filter. Call once every worker has joined, and at least one ring timeout
    /// after the last join so any part-filled block from before has been retired to user space.
    public func beginCapture() throws(CaptureError) {
        guard options.fanoutGroup != nil else { return }
        while pcap_dispatch(handle, -1, { _, _, _ in }, nil) > 0 {}
        try Self.setFilter(handle, options.filter ?? "", input: options.interface)
    }

    static func setFilter(_ h: OpaquePointer, _ expression: String, input: String) throws(CaptureError) {
        var program = bpf_program()
        guard pcap_compile(h, &program, expression, 1, PCAP_NETMASK_UNKNOWN) == 0 else {
            throw CaptureError(kind: .filter, input: input, message: String(cString: pcap_geterr(h)))
        }
        defer { pcap_freecode(&program) }
        guard pcap_setfilter(h, &program) == 0 else {
            throw CaptureError(kind: .filter, input: input, message: String(cString: pcap_geterr(h)))
        }
    }

    deinit { pcap_close(handle) }

    /// One packet at a time: the next packet, `.idle` when nothing arrived within the timeout, `.end` after
    /// `stop()`. Workers use the batch `dispatchOrIdle`; this is for tools and tests.
    ///
    /// The handle is non-blocking and the wait is our own `poll` on its descriptor: with TPACKET_V3
    /// libpcap itself waits without a timeout (the kernel's block retire timer is meant to wake it), and
    /// an empty block is never retired, so a quiet worker would never get to its periodic work.
    @inline(__always)
    public func read() throws(CaptureError) -> SourceRead {
        while true {
            if stopped.load(ordering: .relaxed) { return .end }
            var header: UnsafeMutablePointer<pcap_pkthdr>?
            var data: UnsafePointer<UInt8>?
            let rc = pcap_next_ex(handle, &header, &data)
            if rc == 1, let header, let data {
                packetsRead &+= 1
                return .packet(RawPacket(header: header, data: data, linkType: linkType, fractionUnit: fractionUnit))
            }
            switch rc {
            case 0, 1:
                if try !waitReadable() { return stopped.load(ordering: .relaxed) ? .end : .idle }
            case PCAP_ERROR_BREAK:
                return .end
            default:
                // The interface went away or the socket failed: the worker ends and reports it.
                throw CaptureError(kind: .read, input: options.interface, message: String(cString: pcap_geterr(handle)),
                                   packetsBefore: packetsRead)
            }
        }
    }

    /// Waits up to the timeout for the ring to have a block for us. False on timeout.
    @inline(never)
    func waitReadable() throws(CaptureError) -> Bool {
        var p = pollfd(fd: selectableFD, events: Int16(POLLIN), revents: 0)
        let n = poll(&p, 1, Int32(options.timeoutMilliseconds))
        if n < 0 && errno != EINTR {
            throw CaptureError(kind: .read, input: options.interface, message: "poll: \(String(cString: strerror(errno)))",
                               packetsBefore: packetsRead)
        }
        if n > 0 && p.revents & Int16(POLLERR | POLLNVAL) != 0 {
            // pcap_next_ex reports the socket error (e.g. ENETDOWN) on the next call.
            return true
        }
        return n > 0
    }

    public func next() throws(CaptureError) -> RawPacket? {
        while true {
            switch try read() {
            case .packet(let p): return p
            case .idle: continue
            case .end: return nil
            }
        }
    }

    /// A batch straight from the ring (`pcap_dispatch`: one C callback per packet, no copy), `.idle` when
    /// nothing arrived within the timeout, `.end` after `stop()`.
    public func dispatchOrIdle(maxPackets: Int, to consumer: PacketConsumer) throws(CaptureError) -> DispatchResult {
        while true {
            if stopped.load(ordering: .relaxed) { return .end }
            var context = LiveDispatchContext(consumer: Unmanaged.passUnretained(consumer), linkType: linkType,
                                              fractionUnit: fractionUnit)
            let rc = withUnsafeMutablePointer(to: &context) { ctx in
                pcap_dispatch(handle, Int32(clamping: maxPackets), { user, hdr, data in
                    guard let user, let hdr, let data else { return }
                    let c = UnsafeMutableRawPointer(user).assumingMemoryBound(to: LiveDispatchContext.self)
                    let packet = RawPacket(header: hdr, data: data, linkType: c.pointee.linkType, fractionUnit: c.pointee.fractionUnit)
                    c.pointee.consumer._withUnsafeGuaranteedRef { $0.consume(packet) }
                }, UnsafeMutableRawPointer(ctx).assumingMemoryBound(to: UInt8.self))
            }
            if rc > 0 {
                packetsRead &+= UInt64(rc)
                return .delivered(Int(rc))
            }
            if rc == PCAP_ERROR_BREAK { return .end }
            if rc < 0 {
                throw CaptureError(kind: .read, input: options.interface, message: String(cString: pcap_geterr(handle)),
                                   packetsBefore: packetsRead)
            }
            if try !waitReadable() { return stopped.load(ordering: .relaxed) ? .end : .idle }
        }
    }

    public func dispatch(maxPackets: Int, to consumer: PacketConsumer) throws(CaptureError) -> Int {
        while true {
            switch try dispatchOrIdle(maxPackets: maxPackets, to: consumer) {
            case .delivered(let n): return n
            case .idle: continue
            case .end: return 0
            }
        }
    }

    /// What the C callback needs; the consumer is held unretained (it outlives the `pcap_dispatch` call).
    struct LiveDispatchContext {
        var consumer: Unmanaged<PacketConsumer>
        var linkType: LinkType
        var fractionUnit: Int64
    }

    /// Ends a blocked read soon (`pcap_breakloop` wakes libpcap's poll). Safe from any thread.
    public func stop() {
        stopped.store(true, ordering: .relaxed)
        pcap_breakloop(handle)
    }

    /// The kernel's counters for this handle, cumulative. Call from the worker's own thread.
    ///
    /// libpcap's counters are 32-bit and wrap on a busy link; each call adds the difference since the last.
    public func statistics() -> LiveCaptureCounters? {
        var s = pcap_stat()
        guard pcap_stats(handle, &s) == 0 else { return nil }
        totals.received &+= UInt64(s.ps_recv &- lastRaw.recv)
        totals.kernelDropped &+= UInt64(s.ps_drop &- lastRaw.drop)
        totals.interfaceDropped &+= UInt64(s.ps_ifdrop &- lastRaw.ifdrop)
        lastRaw = (s.ps_recv, s.ps_drop, s.ps_ifdrop)
        return totals
    }
}

/// What one `PcapLiveSource.read()` gave.
public enum SourceRead {
    case packet(RawPacket)
    /// Nothing arrived within the timeout; not the end.
    case idle
    case end
}

/// Pins the calling thread to one CPU (`pthread_setaffinity_np`).
public enum ThreadAffinity {
    public static var cpuCount: Int { Int(csensor_cpu_count()) }

    /// Returns nil on success, else the reason.
    public static func pinCurrentThread(to cpu: Int) -> String? {
        let err = csensor_pin_thread_to_cpu(Int32(cpu))
        return err == 0 ? nil : String(cString: strerror(err))
    }
}
