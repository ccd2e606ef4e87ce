import Events
import PacketCore

/// How a flow's protocol identification ended.
public enum Identification: UInt8, Sendable {
    /// No payload yet.
    case pending = 0
    /// Identified: `FlowRecord.appProtocol` holds the protocol.
    case identified = 1
    /// Payload seen from the start of the stream, and no known protocol matched.
    case unknown = 2
    /// The stream was joined mid-way (no SYN seen): an unmatched start says nothing.
    case midstream = 3
}

/// Counters of protocol identification.
public struct IdentificationCounters: Sendable, Equatable {
    public var identified: UInt64 = 0
    public var unknown: UInt64 = 0
    public var midstream: UInt64 = 0
    public var ftpDataExpectations: UInt64 = 0
    public init() {}
}

/// Content-based protocol identification for every flow: sets `network.protocol` from the first payload
/// bytes of each direction, not from the port.
///
/// TCP bytes come in order from the shared `StreamReassembler` (this is one of its consumers); a flow
/// is released as soon as it is decided, so identification costs one or two segments per connection.
/// UDP is identified per datagram (DNS, QUIC, NTP, DHCP, SIP, SNMP, mDNS, LLMNR) from the packet path,
/// where a decided flow costs two array reads. Per-flow state is two bytes and a generation per slot of
/// the flow table, allocated once.
///
/// FTP control connections are followed further (they are small) to learn the data connections that
/// `PASV`/`PORT` announce, so detectors do not take FTP data on a high port for an unknown protocol.
/// Each announcement goes to `ftpDataObserver`: the detector that judges ports keeps them, wherever it
/// runs, since with several workers the data connection is often on another worker than its control
/// connection.
public final class ProtocolIdentifier: StreamConsumer, PacketAnalyzer {
    public let name = "protocol-id"
    public private(set) var counters = IdentificationCounters()
    let capacity: Int
    let generations: UnsafeMutablePointer<UInt32>
    /// `Identification` raw value in the low 2 bits; bit 2: originator datagram tried; bit 3: responder
    /// datagram tried; bits 4–5: TCP progress (1: server spoke first and was not recognised, 2: `220` banner);
    /// bit 6: an MPTCP MP_JOIN subflow (`joinSubflow`).
    let states: UnsafeMutablePointer<UInt8>
    /// Told of each FTP data connection announced (weak: the observer usually holds this identifier).
    public weak var ftpDataObserver: (any FTPDataObserver)?

    public init(flowCapacity: Int) {
        capacity = max(16, flowCapacity)
        // Zero-filled, paged in on use (0 is no flow's generation: the flow table skips it).
        generations = ZeroFilledMemory.allocate(UInt32.self, count: capacity)
        states = ZeroFilledMemory.allocate(UInt8.self, count: capacity)
    }

    deinit {
        ZeroFilledMemory.deallocate(generations)
        ZeroFilledMemory.deallocate(states)
    }

    /// How identification of the flow in `slot` ended (`.pending` for another generation).
    public func identification(slot: Int32, generation: UInt32) -> Identification {
        let s = Int(slot)
        guard s >= 0, s < capacity, generations[s] == generation else { return .pending }
        return Identification(rawValue: states[s] & 3) ?? .pending
    }

    @inline(__always) func reset(_ s: Int, _ generation: UInt32) {
        if generations[s] != generation { generations[s] = generation; states[s] = 0 }
    }

    @inline(__always) func decide(_ s: Int, _ result: Identification, _ p: AppProtocol?, slot: Int32, flows: FlowTable) {
        states[s] = (states[s] & ~3) | result.rawValue
        switch result {
        case .identified:
            counters.identified &+= 1
            if let p, flows[slot].appProtocol == 0 { flows.setAppProtocol(p.rawValue, slot: slot) }
        case .unknown: counters.unknown &+= 1
        case .midstream: counters.midstream &+= 1
        case .pending: break
        }
    }

    // MARK: UDP, per datagram

    public func packet(_ context: PacketContext, flows: FlowTable) {
        if context.packet.ipProtocol == IPProtocol.tcp {
            // Only the originator's SYN is looked at (one branch per other TCP packet).
            guard context.fromOriginator, context.packet.tcpFlags.contains(.syn), !context.packet.tcpFlags.contains(.ack) else { return }
            let s = Int(context.slot)
            guard s < capacity, Self.isMPTCPJoin(context) else { return }
            reset(s, flows[context.slot].generation)
            states[s] |= Self.joinSubflow
            return
        }
        guard context.packet.ipProtocol == IPProtocol.udp, context.packet.payloadLength > 0 else { return }
        let s = Int(context.slot)
        guard s < capacity else { return }
        reset(s, flows.generation(slot: context.slot))
        let st = states[s]
        guard st & 3 == 0 else { return }
        let bit: UInt8 = context.fromOriginator ? 4 : 8
        guard st & bit == 0 else { return }
        states[s] |= bit
        let p = context.packet
        if let proto = ContentClassifier.classifyDatagram(context.payload, sourcePort: p.sourcePort, destinationPort: p.destinationPort) {
            decide(s, .identified, proto, slot: context.slot, flows: flows)
        } else if states[s] & 12 == 12 {
            decide(s, .unknown, nil, slot: context.slot, flows: flows)
        }
    }

    // MARK: TCP, from the reassembler

    public func wantsStream(_ flow: FlowRecord, slot: Int32, firstPayload: UnsafeRawBufferPointer, fromOriginator: Bool) -> Bool {
        let s = Int(slot)
        guard s < capacity else { return false }
        reset(s, flow.generation)
        return true
    }

    public func stream(_ data: UnsafeRawBufferPointer, fromOriginator: Bool, slot: Int32, flows: FlowTable, at time: Timestamp) -> StreamVerdict {
        let s = Int(slot)
        guard s < capacity, !data.isEmpty else { return .more }
        if states[s] & 3 != 0 {
            // Decided; only FTP control connections are still followed.
            if flows[slot].appProtocol == AppProtocol.ftp.rawValue {
                FTPDataChannels.scan(data, fromClient: fromOriginator, flow: flows[slot], at: time) { e in
                    counters.ftpDataExpectations &+= 1
                    ftpDataObserver?.ftpDataAnnounced(e, at: time)
                }
                return .more
            }
            // ISO transport: the server's Connection Confirm, then the client's first data TPDU names
            // the application (S7comm, MMS); one client segment decides either way.
            if flows[slot].appProtocol == AppProtocol.cotp.rawValue {
                guard fromOriginator else { return .more }
                refineISOTransport(data, slot: slot, flows: flows)
                return .doneWithFlow
            }
            return .doneWithFlow
        }
        let progress = (states[s] >> 4) & 3
        let flow = flows[slot]
        if fromOriginator {
            var proto: AppProtocol?
            if progress == 2 { proto = ContentClassifier.resolveFTPOrSMTP(client: data) }
            if proto == nil { proto = ContentClassifier.classifyClient(data) }
            if let proto {
                decide(s, .identified, proto, slot: slot, flows: flows)
                if proto == .cotp {
                    // The first data TPDU may follow the Connection Request in the same bytes.
                    let cr = Int(data[2]) << 8 | Int(data[3])
                    guard cr < data.count else { return .more }
                    refineISOTransport(UnsafeRawBufferPointer(rebasing: data[cr...]), slot: slot, flows: flows)
                    return .doneWithFlow
                }
                return proto == .ftp ? .more : .doneWithFlow
            }
            decide(s, startsStream(s, flow) ? .unknown : .midstream, nil, slot: slot, flows: flows)
            return .doneWithFlow
        }
        guard progress == 0 else { return .doneWithDirection }
        switch ContentClassifier.classifyServerGreeting(data) {
        case .identified(let proto):
            decide(s, .identified, proto, slot: slot, flows: flows)
            return proto == .ftp ? .more : .doneWithFlow
        case .ftpOrSMTP:
            states[s] |= 2 << 4
            return .doneWithDirection
        case .unrecognised:
            states[s] |= 1 << 4
            return .doneWithDirection
        }
    }

    /// State bit: the SYN carried MPTCP MP_JOIN, so this subflow continues a connection whose start
    /// (and protocol) is on another subflow.
    static let joinSubflow: UInt8 = 0x40

    /// The stream's first bytes are its application's first bytes: the SYN was seen and opened a new
    /// connection, not an MPTCP subflow joining one.
    @inline(__always) func startsStream(_ s: Int, _ flow: FlowRecord) -> Bool {
        flow.originatorFlags.contains(.syn) && states[s] & Self.joinSubflow == 0
    }

    /// Whether a SYN's TCP options hold MPTCP (kind 30) with subtype MP_JOIN (1), RFC 8684 §3.2.
    static func isMPTCPJoin(_ context: PacketContext) -> Bool {
        let start = context.packet.transportOffset &+ 20, end = context.packet.payloadOffset
        guard start <= end, end <= context.frame.count else { return false }
        let b = context.frame
        var i = start
        while i < end {
            let kind = b[i]
            if kind == 0 { return false }
            if kind == 1 { i += 1; continue }
            guard i + 1 < end else { return false }
            let len = Int(b[i + 1])
            guard len >= 2, i + len <= end else { return false }
            if kind == 30, len >= 3, b[i + 2] >> 4 == 1 { return true }
            i += len
        }
        return false
    }

    /// Names the application of an ISO-on-TCP session from its first data TPDU (COTP stays otherwise).
    func refineISOTransport(_ data: UnsafeRawBufferPointer, slot: Int32, flows: FlowTable) {
        if let app = ContentClassifier.isoTransportApplication(data) { flows.setAppProtocol(app.rawValue, slot: slot) }
    }

    public func gap(fromOriginator: Bool, slot: Int32, flows: FlowTable, at time: Timestamp) {}

    public func streamEnded(_ flow: FlowRecord, slot: Int32) {
        let s = Int(slot)
        guard s < capacity, generations[s] == flow.generation, states[s] & 3 == 0 else { return }
        // Only the server spoke (or only a banner came): undecided, judged as unknown if it began at a SYN.
        if (states[s] >> 4) & 3 != 0 {
            states[s] = (states[s] & ~3) | (startsStream(s, flow) ? Identification.unknown : .midstream).rawValue
        }
    }
}

/// Hears of the FTP data connections announced on control connections.
public protocol FTPDataObserver: AnyObject {
    /// `channel` was announced at packet time `time`.
    func ftpDataAnnounced(_ channel: FTPDataChannels.Expected, at time: Timestamp)
}

/// Data connections announced on FTP control connections (`227`/`229` replies, `PORT`/`EPRT` commands),
/// remembered so the connection that follows is known to be FTP data: the parser of the control lines,
/// and the table a detector keeps of what was announced.
///
/// A connection is FTP data when it starts within `lifetime` of the announcement. The detector asks at
/// the flow's end (and at each active-timeout report), which for a long transfer is long after that
/// window, so an entry is kept for `retention` after its window closes (bounded: a ring of `capacity`
/// entries, the oldest overwritten first).
public struct FTPDataChannels: Sendable {
    public struct Expected: Sendable, Equatable {
        /// The data connection's responder and port (the server in passive mode, the client in active).
        public var host: IPAddress
        public var port: UInt16
        /// The latest start of the data connection.
        public var until: Timestamp
        public init(host: IPAddress, port: UInt16, until: Timestamp) {
            self.host = host
            self.port = port
            self.until = until
        }
    }
    public static let capacity = 1024
    public static let lifetime = Timestamp.Duration.seconds(120)
    public static let retention = Timestamp.Duration.seconds(86_400)
    var ring: [Expected] = []
    var next = 0

    public init() {}

    /// A saved table (a `sensor aggregate` checkpoint): nil when it is not one `add` could have made.
    public init?(ring: [Expected], next: Int) {
        guard ring.count <= FTPDataChannels.capacity, next >= 0, next < FTPDataChannels.capacity,
              next == 0 || ring.count == FTPDataChannels.capacity else { return nil }
        self.ring = ring
        self.next = next
    }

    /// What `init(ring:next:)` restores.
    public var saved: (ring: [Expected], next: Int) { (ring, next) }

    /// Whether a connection to `host:port` that started at `start` was announced on an FTP control connection.
    public func isExpected(host: IPAddress, port: UInt16, at start: Timestamp) -> Bool {
        ring.contains { $0.host == host && $0.port == port && start <= $0.until }
    }

    public mutating func add(_ e: Expected) {
        if ring.count < FTPDataChannels.capacity { ring.append(e) } else { ring[next] = e; next = (next + 1) % FTPDataChannels.capacity }
    }

    /// Drops entries whose window closed more than `retention` before `now`.
    public mutating func expire(_ now: Timestamp) {
        guard !ring.isEmpty, ring.count < FTPDataChannels.capacity else { return }
        ring.removeAll { $0.until + FTPDataChannels.retention < now }
    }

    /// Looks for passive-mode replies (server) or active-mode commands (client) in control bytes and
    /// hands each announced data connection to `announce`.
    static func scan(_ data: UnsafeRawBufferPointer, fromClient: Bool, flow: FlowRecord, at time: Timestamp, announce: (Expected) -> Void) {
        let until = time + FTPDataChannels.lifetime
        func add(_ host: IPAddress, _ port: UInt16, until: Timestamp) { announce(Expected(host: host, port: port, until: until)) }
        var start = 0
        for i in 0..<data.count where data[i] == 10 {
            let line = UnsafeRawBufferPointer(rebasing: data[start..<i])
            start = i + 1
            if fromClient {
                if ContentClassifier.startsCI(line, "PORT "), let port = FTPDataChannels.commaPort(line) {
                    add(flow.originator, port, until: until)
                } else if ContentClassifier.startsCI(line, "EPRT "), let port = FTPDataChannels.delimitedPort(line, field: 3) {
                    add(flow.originator, port, until: until)
                }
            } else {
                if ContentClassifier.starts(line, "227"), let port = FTPDataChannels.commaPort(line) {
                    add(flow.responder, port, until: until)
                } else if ContentClassifier.starts(line, "229"), let port = FTPDataChannels.delimitedPort(line, field: 3) {
                    add(flow.responder, port, until: until)
                }
            }
        }
    }

    /// The port of `h1,h2,h3,h4,p1,p2`: the first run of six comma-separated numbers.
    static func commaPort(_ line: UnsafeRawBufferPointer) -> UInt16? {
        var fields: [Int] = []
        var cur = -1
        for c in line {
            if c >= 0x30 && c <= 0x39 {
                cur = min(256, (cur < 0 ? 0 : cur) * 10 + Int(c - 48))
            } else if c == 0x2c && cur >= 0 {
                fields.append(cur); cur = -1
            } else {
                if cur >= 0 { fields.append(cur) }
                cur = -1
                if fields.count >= 6 { break }
                fields.removeAll(keepingCapacity: true)
            }
        }
        if cur >= 0 { fields.append(cur) }
        guard fields.count == 6, fields.allSatisfy({ $0 <= 255 }) else { return nil }
        let port = fields[4] * 256 + fields[5]
        return port > 0 ? UInt16(port) : nil
    }

    /// The port in `(|||port|)` (EPSV reply) or `|1|addr|port|` (EPRT): the `field`-th `|`-separated field.
    static func delimitedPort(_ line: UnsafeRawBufferPointer, field: Int) -> UInt16? {
        guard let first = line.firstIndex(of: 0x7c) else { return nil }
        var idx = 0
        var value = 0
        var digits = 0
        for c in line[(first + 1)...] {
            if c == 0x7c {
                idx += 1
                if idx == field { return digits > 0 && value > 0 && value <= 65535 ? UInt16(value) : nil }
                value = 0; digits = 0
            } else if idx == field - 1, c >= 0x30, c <= 0x39 {
                value = value * 10 + Int(c - 48); digits += 1
                if value > 65535 { return nil }
            }
        }
        return nil
    }
}
