import Foundation
import TestSupport

/// Hand-built captures for the output tests: Ethernet/IPv4 frames with TCP or UDP, at chosen times.
enum SyntheticTraffic {
    static let epoch: UInt32 = 1_714_564_800  // 2024-05-01T12:00:00Z

    static func ipv4(_ a: [UInt8]) -> [UInt8] { a }

    /// One Ethernet/IPv4 frame; `l4` is the TCP or UDP header plus payload.
    static func frame(src: [UInt8], dst: [UInt8], proto: UInt8, l4: [UInt8]) -> [UInt8] {
        var f: [UInt8] = [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00]
        let total = 20 + l4.count
        var ip: [UInt8] = [0x45, 0, UInt8(total >> 8), UInt8(total & 0xff), 0, 1, 0x40, 0, 64, proto, 0, 0] + src + dst
        var sum: UInt32 = 0
        for i in stride(from: 0, to: 20, by: 2) { sum += UInt32(ip[i]) << 8 | UInt32(ip[i + 1]) }
        while sum > 0xffff { sum = (sum & 0xffff) + (sum >> 16) }
        let c = ~UInt16(sum)
        ip[10] = UInt8(c >> 8); ip[11] = UInt8(c & 0xff)
        f += ip
        f += l4
        return f
    }

    static func tcp(sport: UInt16, dport: UInt16, seq: UInt32, ack: UInt32, flags: UInt8, payload: [UInt8] = []) -> [UInt8] {
        func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xff), UInt8(v >> 8 & 0xff), UInt8(v & 0xff)] }
        return [UInt8(sport >> 8), UInt8(sport & 0xff), UInt8(dport >> 8), UInt8(dport & 0xff)] + be32(seq) + be32(ack)
            + [0x50, flags, 0xff, 0xff, 0, 0, 0, 0] + payload
    }

    static func udp(sport: UInt16, dport: UInt16, payload: [UInt8]) -> [UInt8] {
        let n = 8 + payload.count
        return [UInt8(sport >> 8), UInt8(sport & 0xff), UInt8(dport >> 8), UInt8(dport & 0xff), UInt8(n >> 8), UInt8(n & 0xff), 0, 0] + payload
    }

    /// `connections` TCP sessions from 10.0.0.5 to 198.51.100.7:8443, one every `every` seconds exactly,
    /// each with the same 120 bytes up and 300 down: a beacon as regular as a beacon can be.
    static func regularBeacon(connections: Int, every: UInt32) -> PcapFileWriter {
        var w = PcapFileWriter()
        let c: [UInt8] = [10, 0, 0, 5], s: [UInt8] = [198, 51, 100, 7]
        for i in 0..<connections {
            let t = epoch + UInt32(i) * every
            let sport = UInt16(40000 + i)
            let up = [UInt8](repeating: 0x41, count: 120), down = [UInt8](repeating: 0x42, count: 300)
            var us: UInt32 = 0
            func send(_ fromClient: Bool, _ seg: [UInt8]) {
                us += 1000
                w.record(seconds: t, micros: us, bytes: frame(src: fromClient ? c : s, dst: fromClient ? s : c, proto: 6, l4: seg))
            }
            send(true, tcp(sport: sport, dport: 8443, seq: 1000, ack: 0, flags: 0x02))
            send(false, tcp(sport: 8443, dport: sport, seq: 5000, ack: 1001, flags: 0x12))
            send(true, tcp(sport: sport, dport: 8443, seq: 1001, ack: 5001, flags: 0x10))
            send(true, tcp(sport: sport, dport: 8443, seq: 1001, ack: 5001, flags: 0x18, payload: up))
            send(false, tcp(sport: 8443, dport: sport, seq: 5001, ack: 1121, flags: 0x18, payload: down))
            send(true, tcp(sport: sport, dport: 8443, seq: 1121, ack: 5301, flags: 0x11))
            send(false, tcp(sport: 8443, dport: sport, seq: 5301, ack: 1122, flags: 0x11))
            send(true, tcp(sport: sport, dport: 8443, seq: 1122, ack: 5302, flags: 0x10))
        }
        return w
    }

    /// A DNS query (A, `name`) and its answer from 192.0.2.53, at `seconds` after `epoch`.
    static func dnsExchange(_ w: inout PcapFileWriter, at seconds: UInt32, id: UInt16, name: String, sport: UInt16) {
        var q: [UInt8] = [UInt8(id >> 8), UInt8(id & 0xff), 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]
        for label in name.split(separator: ".") { q.append(UInt8(label.utf8.count)); q += Array(label.utf8) }
        q += [0, 0, 1, 0, 1]
        var a = q
        a[2] = 0x81; a[3] = 0x80; a[7] = 1
        a += [0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4, 203, 0, 113, 10]
        let c: [UInt8] = [10, 0, 0, 5], s: [UInt8] = [192, 0, 2, 53]
        w.record(seconds: epoch + seconds, micros: 0, bytes: frame(src: c, dst: s, proto: 17, l4: udp(sport: sport, dport: 53, payload: q)))
        w.record(seconds: epoch + seconds, micros: 20_000, bytes: frame(src: s, dst: c, proto: 17, l4: udp(sport: 53, dport: sport, payload: a)))
    }
}
