import Events
import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS
import PacketCore
import Synchronization

/// `syslog+udp://HOST:PORT`, `syslog+tcp://HOST:PORT`, `syslog+tls://HOST:PORT?ca=…&cert=…&key=…`.
///
/// Query items: `ca` (PEM trust roots; the system's when absent), `cert` and `key` (client certificate
/// for mutual TLS), `server_name` (the name the server's certificate must carry; the host when absent),
/// `facility` (name or 0–23, default `local0`), `hostname` (HOSTNAME field, default the host's name),
/// `queue` (events held while the collector is away, default 100000), `queue_bytes` (their bytes, default
/// 256MiB), `flush_timeout` (default 5s).
public struct SyslogOutputOptions: Equatable, Sendable, CustomStringConvertible {
    public enum Transport: String, Sendable { case udp, tcp, tls }
    public var transport: Transport
    public var host: String
    public var port: Int
    public var caFile: String?
    public var certificateFile: String?
    public var keyFile: String?
    public var serverName: String?
    public var facility: Int = 16
    public var hostname: String?
    public var queueLimit: Int = 100_000
    /// Bytes held while the collector is away (the queue's other bound).
    public var queueBytes: Int = 256 << 20
    public var flushTimeout: Double = 5

    public static let facilities = ["kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
                                    "authpriv", "ftp", "ntp", "audit", "alert", "clock",
                                    "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7"]

    public init(transport: Transport, host: String, port: Int) {
        self.transport = transport
        self.host = host
        self.port = port
    }

    init(url text: String) throws(OutputError) {
        let u = try OutputURL(text)
        guard u.scheme.hasPrefix("syslog+"), let t = Transport(rawValue: String(u.scheme.dropFirst(7))) else {
            throw .badSpec(text, reason: "expected syslog+udp://, syslog+tcp:// or syslog+tls://")
        }
        guard u.path.isEmpty else { throw .badSpec(text, reason: "syslog outputs take no path") }
        let hp = try OutputURL.hostPort(Substring(u.authority), spec: text)
        self.init(transport: t, host: hp.host, port: hp.port)
        for (k, v) in u.query {
            switch k {
            case "ca", "cert", "key", "server_name":
                guard t == .tls else { throw .badSpec(text, reason: "\(k) applies to syslog+tls:// only") }
                switch k {
                case "ca": caFile = v
                case "cert": certificateFile = v
                case "key": keyFile = v
                default: serverName = v
                }
            case "facility":
                if let n = Int(v), (0...23).contains(n) { facility = n }
                else if let i = SyslogOutputOptions.facilities.firstIndex(of: v) { facility = i }
                else { throw .badSpec(text, reason: "facility '\(v)' is not 0–23 or a name (local0…local7, daemon, …)") }
            case "hostname":
                guard !v.isEmpty, v.utf8.count <= 255, v.utf8.allSatisfy({ $0 > 32 && $0 < 127 }) else {
                    throw .badSpec(text, reason: "hostname must be 1–255 printable ASCII characters")
                }
                hostname = v
            case "queue":
                guard let n = Int(v), n >= 1, n <= 10_000_000 else { throw .badSpec(text, reason: "queue must be 1…10000000 events") }
                queueLimit = n
            case "queue_bytes":
                let n = try OutputURL.bytes(v, name: k, spec: text)
                guard n >= 64 << 10, n <= 1 << 34 else { throw .badSpec(text, reason: "queue_bytes must be 64KiB…16GiB") }
                queueBytes = Int(n)
            case "flush_timeout": flushTimeout = try OutputURL.seconds(v, name: k, spec: text)
            default: throw .badSpec(text, reason: "unknown option '\(k)'")
            }
        }
        if (certificateFile == nil) != (keyFile == nil) { throw .badSpec(text, reason: "cert and key go together") }
    }

    public var description: String {
        let h = host.contains(":") ? "[\(host)]" : host
        return "syslog+\(transport.rawValue)://\(h):\(port)"
    }
}

/// RFC 5424 syslog: the ECS JSON as MSG, over UDP (RFC 5426), TCP with octet counting (RFC 6587) or TLS (RFC 5425).
///
/// `write` formats the message on the caller's thread into a bounded queue (one lock, one copy) and wakes
/// the SwiftNIO event loop, which owns the connection: it writes whole batches, stops when the socket
/// pushes back (writability), and reconnects with exponential backoff (0.1 s doubling to 30 s) when the
/// collector goes away. Events wait in the queue meanwhile; beyond its bound they are dropped and
/// counted. Over TCP an event counts as delivered when the kernel accepted it (syslog has no
/// acknowledgement), over UDP when the datagram was sent.
public final class SyslogSink: EventSink, @unchecked Sendable {
    public let name: String
    let options: SyslogOutputOptions
    let group: MultiThreadedEventLoopGroup
    let loop: any EventLoop
    let sslContext: NIOSSLContext?
    /// `<PRI>` is per event; `1 ` … up to HOSTNAME and APP-NAME and PROCID is the same for every event.
    let headerAfterTimestamp: [UInt8]

    struct Queue {
        /// Formatted messages back to back; `lengths` splits them.
        var bytes: [UInt8] = []
        var lengths: [Int] = []
        /// Whether each queued message is an alert (counted apart when it is lost).
        var alerts: [Bool] = []
        var wakeScheduled = false
        var closed = false
        var stats = SinkStatistics()
        /// The connection's last error, for the output monitor's log (the event loop owns `lastError`).
        var failure: String?
    }
    let queue = Mutex(Queue())

    // Owned by the event loop.
    private var channel: (any Channel)?
    /// A TLS connection whose handshake has not finished: nothing is written to it yet, so events
    /// for an untrusted server stay queued (and are counted as dropped at close, not as sent).
    private var handshaking: (any Channel)?
    private var connecting = false
    private var backoff: TimeAmount = .milliseconds(100)
    private var inFlight = 0
    private var shuttingDown = false
    private var lastError: String?

    public init(options: SyslogOutputOptions) throws {
        self.options = options
        self.name = options.description
        if options.transport == .tls {
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.minimumTLSVersion = .tlsv12
            do {
                if let ca = options.caFile { tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(ca)) }
                if let cert = options.certificateFile, let key = options.keyFile {
                    tls.certificateChain = try NIOSSLCertificate.fromPEMFile(cert).map { .certificate($0) }
                    tls.privateKey = .privateKey(try NIOSSLPrivateKey(file: key, format: .pem))
                }
                sslContext = try NIOSSLContext(configuration: tls)
            } catch {
                throw OutputError.open(spec: options.description, reason: "TLS setup: \(error)")
            }
        } else {
            sslContext = nil
        }
        var h: [UInt8] = []
        h.append(32)
        let host = options.hostname ?? ObserverInfo.systemHostname()
        h.append(contentsOf: SyslogSink.printable(host, max: 255))
        h.append(contentsOf: " sensor ".utf8)
        h.append(contentsOf: String(getpid()).utf8)
        h.append(32)
        headerAfterTimestamp = h
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        loop = group.next()
        loop.execute { self.connect() }
    }

    deinit { try? close() }

    /// PRI severity for an event: ordinary events are informational; alerts notice (low) to critical.
    public static func syslogSeverity(_ eventSeverity: Int) -> Int {
        switch eventSeverity {
        case ...0: return 6
        case 1: return 5
        case 2: return 4
        case 3: return 3
        default: return 2
        }
    }

    /// Bytes 33–126 only (RFC 5424 PRINTUSASCII), cut to `max`; `-` when nothing is left.
    static func printable(_ s: String, max: Int) -> [UInt8] {
        let b = Array(s.utf8.filter { $0 > 32 && $0 < 127 }.prefix(max))
        return b.isEmpty ? [45] : b
    }

    // MARK: Packet path

    public func write(_ json: UnsafeRawBufferPointer, metadata: EventMetadata) {
        let wake: Bool = queue.withLock { q in
            q.stats.accepted &+= 1
            guard !q.closed, q.lengths.count < options.queueLimit, q.bytes.count + json.count < options.queueBytes else {
                q.stats.dropped &+= 1
                if metadata.kind == .alert { q.stats.droppedAlerts &+= 1 }
                return false
            }
            let start = q.bytes.count
            let pri = options.facility * 8 + SyslogSink.syslogSeverity(metadata.severity)
            q.bytes.append(60)
            appendDecimal(pri, to: &q.bytes)
            q.bytes.append(62); q.bytes.append(49); q.bytes.append(32)  // ">1 "
            RFC3339.append(metadata.timestamp, to: &q.bytes)
            q.bytes.append(contentsOf: headerAfterTimestamp)
            // MSGID: the dataset (printable ASCII, at most 32 characters).
            metadata.dataset.withUTF8Buffer { d in
                var n = 0
                for c in d where c > 32 && c < 127 && n < 32 { q.bytes.append(c); n += 1 }
                if n == 0 { q.bytes.append(45) }
            }
            q.bytes.append(contentsOf: [32, 45, 32])  // no STRUCTURED-DATA
            q.bytes.append(contentsOf: json)
            q.lengths.append(q.bytes.count - start)
            q.alerts.append(metadata.kind == .alert)
            if q.wakeScheduled { return false }
            q.wakeScheduled = true
            return true
        }
        if wake { loop.execute { self.drain() } }
    }

    // MARK: Event loop

    private func connect() {
        guard channel == nil, !connecting, !shuttingDown else { return }
        connecting = true
        let future: EventLoopFuture<any Channel>
        switch options.transport {
        case .udp:
            future = DatagramBootstrap(group: loop)
                .channelOption(.socketOption(.so_reuseaddr), value: 1)
                .channelInitializer { ch in ch.pipeline.addHandler(ConnectionWatcher(sink: self, isDatagram: true)) }
                .connect(host: options.host, port: options.port)
        case .tcp, .tls:
            let ssl = sslContext
            let serverName = options.serverName ?? (IPAddress(options.host) == nil ? options.host : nil)
            future = ClientBootstrap(group: loop)
                .connectTimeout(.seconds(5))
                .channelOption(.socketOption(.so_keepalive), value: 1)
                .channelOption(.writeBufferWaterMark, value: .init(low: 256 << 10, high: 1 << 20))
                .channelInitializer { ch in
                    do {
                        if let ssl {
                            try ch.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: ssl, serverHostname: serverName))
                        }
                        try ch.pipeline.syncOperations.addHandler(ConnectionWatcher(sink: self, isDatagram: false))
                        return ch.eventLoop.makeSucceededVoidFuture()
                    } catch {
                        return ch.eventLoop.makeFailedFuture(error)
                    }
                }
                .connect(host: options.host, port: options.port)
        }
        future.whenComplete { result in
            self.connecting = false
            switch result {
            case .success(let ch):
                if self.options.transport == .tls {
                    self.handshaking = ch
                } else {
                    self.channelReady(ch)
                }
            case .failure(let error):
                self.lastError = "\(error)"
                self.queue.withLock { $0.failure = "\(error)" }
                self.scheduleReconnect()
            }
        }
    }

    /// The connection can carry events (after the TLS handshake, for TLS).
    fileprivate func channelReady(_ ch: any Channel) {
        if handshaking === ch { handshaking = nil }
        guard ch.isActive, !shuttingDown else { return }
        channel = ch
        backoff = .milliseconds(100)
        drain()
    }

    private func scheduleReconnect() {
        guard !shuttingDown else { return }
        let delay = backoff
        backoff = min(backoff * 2, .seconds(30))
        loop.scheduleTask(in: delay) { self.connect() }
    }

    /// The connection went away: queued events wait for the next one.
    fileprivate func connectionLost(_ ch: any Channel, error: (any Error)?) {
        guard channel === ch || handshaking === ch else { return }
        if let error {
            lastError = "\(error)"
            queue.withLock { $0.failure = "\(error)" }
        }
        channel = nil
        handshaking = nil
        scheduleReconnect()
    }

    /// Writes everything queued while the channel takes it.
    ///
    /// The wake flag stays set while the connection is away or pushing back: the connection's arrival
    /// (`connect`) or its writability (`ConnectionWatcher`) drains again, so `write` does not schedule
    /// a task per event meanwhile.
    fileprivate func drain() {
        guard let ch = channel, ch.isActive else {
            if channel == nil { connect() }
            return
        }
        while ch.isWritable {
            let (bytes, lengths, alerts): ([UInt8], [Int], [Bool]) = queue.withLock { q in
                let taken = (q.bytes, q.lengths, q.alerts)
                q.bytes = []
                q.bytes.reserveCapacity(min(taken.0.count, 1 << 20))
                q.lengths = []
                q.alerts = []
                if taken.1.isEmpty { q.wakeScheduled = false }
                return taken
            }
            guard !lengths.isEmpty else { return }
            send(bytes, lengths, alerts, on: ch)
        }
    }

    /// Sends one batch; what the transport refuses is lost (syslog cannot retry it) and counted as dropped.
    private func send(_ bytes: [UInt8], _ lengths: [Int], _ alerts: [Bool], on ch: any Channel) {
        let count = lengths.count
        inFlight += count
        switch options.transport {
        case .udp:
            // One datagram per event (RFC 5426); each counts on its own.
            var off = 0
            var futures: [EventLoopFuture<Void>] = []
            futures.reserveCapacity(count)
            var lostAlerts: UInt64 = 0
            var sentAlerts: [Bool] = []
            sentAlerts.reserveCapacity(count)
            for (i, len) in lengths.enumerated() {
                defer { off += len }
                // The largest UDP payload over IPv4; a larger event cannot go out in one datagram.
                if len > 65_507 { if alerts[i] { lostAlerts += 1 }; continue }
                var buf = ch.allocator.buffer(capacity: len)
                bytes.withUnsafeBytes { buf.writeBytes(UnsafeRawBufferPointer(rebasing: $0[off..<off + len])) }
                futures.append(ch.write(buf))
                sentAlerts.append(alerts[i])
            }
            ch.flush()
            let oversizedAlerts = lostAlerts, sentFlags = sentAlerts
            EventLoopFuture.whenAllComplete(futures, on: loop).whenSuccess { results in
                self.inFlight -= count
                var lostAlerts = oversizedAlerts
                var sent = 0
                for (i, r) in results.enumerated() {
                    if case .success = r { sent += 1 } else if sentFlags[i] { lostAlerts += 1 }
                }
                let lost = UInt64(count - sent)
                self.queue.withLock { q in
                    q.stats.delivered &+= UInt64(sent)
                    q.stats.failed &+= lost
                    q.stats.dropped &+= lost
                    q.stats.droppedAlerts &+= lostAlerts
                }
            }
        case .tcp, .tls:
            // RFC 6587 octet counting: "LEN SP MSG", one buffer per batch.
            var buf = ch.allocator.buffer(capacity: bytes.count + count * 8)
            var off = 0
            var digits: [UInt8] = []
            for len in lengths {
                digits.removeAll(keepingCapacity: true)
                appendDecimal(len, to: &digits)
                buf.writeBytes(digits)
                buf.writeInteger(UInt8(32))
                bytes.withUnsafeBytes { buf.writeBytes(UnsafeRawBufferPointer(rebasing: $0[off..<off + len])) }
                off += len
            }
            ch.writeAndFlush(buf).whenComplete { result in
                self.inFlight -= count
                self.queue.withLock { q in
                    if case .success = result { q.stats.delivered &+= UInt64(count); return }
                    q.stats.failed &+= UInt64(count)
                    q.stats.dropped &+= UInt64(count)
                    q.stats.droppedAlerts &+= UInt64(alerts.reduce(0) { $1 ? $0 + 1 : $0 })
                    if case .failure(let e) = result { q.failure = "\(e)" }
                }
            }
        }
    }

    // MARK: Lifecycle

    public func flush() throws {
        // The event loop drains continuously; nothing to wait for on the packet path.
    }

    /// Waits up to `flushTimeout` for the queue to go out, then closes the connection.
    public func close() throws {
        let first: Bool = queue.withLock { q in
            if q.closed { return false }
            q.closed = true
            return true
        }
        guard first else { return }
        let deadline = ContinuousClock.now + .milliseconds(Int(options.flushTimeout * 1000))
        while ContinuousClock.now < deadline {
            let pending = queue.withLock { $0.lengths.count }
            let flying = try? loop.submit { self.inFlight }.wait()
            if pending == 0 && (flying ?? 0) == 0 { break }
            if pending > 0 { loop.execute { self.drain() } }
            usleep(10_000)
        }
        let closed: EventLoopFuture<Void> = loop.flatSubmit {
            self.shuttingDown = true
            let ch = self.channel
            self.channel = nil
            self.handshaking?.close(promise: nil)
            self.handshaking = nil
            return ch?.close() ?? self.loop.makeSucceededVoidFuture()
        }
        try? closed.wait()
        let why = (try? loop.submit { self.lastError }.wait()) ?? nil
        let lost: Int = queue.withLock { q in
            let n = q.lengths.count
            q.stats.dropped &+= UInt64(n)
            q.stats.droppedAlerts &+= UInt64(q.alerts.reduce(0) { $1 ? $0 + 1 : $0 })
            q.lengths = []
            q.alerts = []
            q.bytes = []
            return n
        }
        try? group.syncShutdownGracefully()
        if lost > 0 {
            throw OutputError.write(spec: name, reason: "\(lost) events not delivered within flush_timeout: \(why ?? "collector unreachable")")
        }
    }

    public var statistics: SinkStatistics { queue.withLock { $0.stats } }

    public var failureReason: String? { queue.withLock { $0.failure } }
}

/// Tells the sink when its connection closes or can take more bytes.
private final class ConnectionWatcher: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = NIOAny
    let sink: SyslogSink
    let isDatagram: Bool
    init(sink: SyslogSink, isDatagram: Bool) { self.sink = sink; self.isDatagram = isDatagram }

    func channelInactive(context: ChannelHandlerContext) {
        sink.connectionLost(context.channel, error: nil)
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let tls = event as? TLSUserEvent, case .handshakeCompleted = tls { sink.channelReady(context.channel) }
        context.fireUserInboundEventTriggered(event)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { sink.drain() }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // UDP: a refused datagram (no collector yet) is not a reason to close; TCP/TLS errors close.
        if isDatagram { return }
        sink.connectionLost(context.channel, error: error)
        context.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // A collector sends nothing back; ignore whatever arrives.
    }
}

func appendDecimal(_ v: Int, to out: inout [UInt8]) {
    if v >= 10 { appendDecimal(v / 10, to: &out) }
    out.append(UInt8(48 + v % 10))
}
