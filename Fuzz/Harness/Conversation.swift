import PacketCore

/// One conversation between the two fuzz hosts, carved from the input, played through a `PipelineSession`.
///
/// Stream parsers are reached the way traffic reaches them: through the reassembler. So the input is not
/// one message but a script of segments (or datagrams), each with a direction, a sequence placement (in
/// order, a hole, a retransmission or overlap, or any 32-bit offset: reordering, wrap-around and the
/// 2^31 distance all come from here), flags, and a clock step (from a millisecond to days, so idle
/// timeouts, detector windows and far timestamps are reached too). A message split over segments
/// exercises every partial-head path of the stream parsers.
///
/// Layout: one header byte (bit 0: IPv6, bit 1: no handshake (mid-stream pickup), bit 2: no FIN at
/// the end), then records of `control, length (1 byte, or 2 if control bit 7), [placement/clock
/// operands], payload`. Short inputs still play (missing bytes read as zeros).
struct Conversation {
    enum Transport { case tcp, udp }

    let transport: Transport
    let serverPort: UInt16
    let clientPort: UInt16 = 40000

    init(_ transport: Transport, serverPort: UInt16) {
        self.transport = transport
        self.serverPort = serverPort
    }

    static let syn: UInt8 = 0x02, ack: UInt8 = 0x10, psh: UInt8 = 0x08, fin: UInt8 = 0x01, rst: UInt8 = 0x04

    func play(_ input: inout FuzzInput, through session: PipelineSession) {
        let header = input.u8()
        let v6 = header & 1 != 0
        var clock = Timestamp(seconds: 1_700_000_000)
        // Next sequence number each side would send (client, server), from fixed initial numbers.
        var next: [UInt32] = [1000, 5000]
        var f = FrameBuilder()

        func send(fromClient: Bool, seq: UInt32, flags: UInt8, _ payload: UnsafeRawBufferPointer) {
            f.bytes.removeAll(keepingCapacity: true)
            let (sp, dp) = fromClient ? (clientPort, serverPort) : (serverPort, clientPort)
            switch transport {
            case .tcp:
                f.ip(v6: v6, fromClient: fromClient, proto: IPProtocol.tcp, payloadLength: 20 + payload.count)
                f.tcp(sport: sp, dport: dp, seq: seq, ack: next[fromClient ? 1 : 0], flags: flags, payload: payload)
            case .udp:
                f.ip(v6: v6, fromClient: fromClient, proto: IPProtocol.udp, payloadLength: 8 + payload.count)
                f.udp(sport: sp, dport: dp, payload: payload)
            }
            session.frame(f.bytes, at: clock)
        }

        let empty = UnsafeRawBufferPointer(start: nil, count: 0)
        if transport == .tcp && header & 2 == 0 {
            send(fromClient: true, seq: next[0] &- 1, flags: Self.syn, empty)
            send(fromClient: false, seq: next[1] &- 1, flags: Self.syn | Self.ack, empty)
            send(fromClient: true, seq: next[0], flags: Self.ack, empty)
        }
        var records = 0
        while !input.isAtEnd && records < 4096 {
            records += 1
            let control = input.u8()
            let length = control & 0x80 != 0 ? Int(input.u16()) : Int(input.u8())
            let fromClient = control & 1 == 0
            let side = fromClient ? 0 : 1
            var seq = next[side]
            switch (control >> 1) & 3 {
            case 0: break
            case 1: seq &+= UInt32(input.u8()) &+ 1  // a hole in front of this segment
            case 2: seq &-= UInt32(input.u8()) &+ 1  // retransmission or overlap
            default: seq &+= input.u32()             // anywhere in sequence space
            }
            let step: Int64
            switch (control >> 3) & 3 {
            case 0: step = 1_000_000                                     // 1 ms
            case 1: step = 1_000_000_000                                 // 1 s
            case 2: step = Int64(input.u16()) &* 1_000_000_000           // up to 18 h
            default: step = Int64(Int32(bitPattern: input.u32())) &* 1_000_000  // ±24 days, backwards too
            }
            clock = Timestamp(nanoseconds: clock.nanoseconds &+ step)
            var flags = Self.ack | Self.psh
            switch (control >> 5) & 3 {
            case 1: flags |= Self.fin
            case 2: flags = Self.rst | Self.ack
            default: break
            }
            let payload = input.take(length)
            send(fromClient: fromClient, seq: seq, flags: flags, payload)
            let end = seq &+ UInt32(payload.count) &+ (flags & Self.fin != 0 ? 1 : 0)
            // Placement is relative to the furthest byte sent, so a hole stays a hole until filled.
            if Int32(bitPattern: end &- next[side]) > 0 { next[side] = end }
        }
        if transport == .tcp && header & 4 == 0 {
            send(fromClient: true, seq: next[0], flags: Self.fin | Self.ack, empty)
            send(fromClient: false, seq: next[1], flags: Self.fin | Self.ack, empty)
        }
        session.finish()
    }
}
