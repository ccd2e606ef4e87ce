import PacketCore

/// Presentation text of RDATA for passive-DNS events, appended to a reused byte buffer.
///
/// Only records that `DNSMessage.parse` validated reach here, so layouts are known to fit; the reads
/// still go through `ByteCursor`/`DNSName` and stop quietly on anything unexpected.
public enum DNSText {
    static let hex: [UInt8] = Array("0123456789abcdef".utf8)

    public static func appendDecimal(_ v: UInt64, to out: inout [UInt8]) {
        if v < 10 { out.append(0x30 + UInt8(v)); return }
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)
        withUnsafeMutableBytes(of: &digits) { t in
            var n = 0
            var x = v
            while x > 0 { t[n] = 0x30 + UInt8(x % 10); x /= 10; n += 1 }
            while n > 0 { n -= 1; out.append(t[n]) }
        }
    }

    public static func appendHex(_ b: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        for x in b { out.append(hex[Int(x >> 4)]); out.append(hex[Int(x & 15)]) }
    }

    /// Appends a name from the message; false when it does not decode.
    @discardableResult
    public static func appendName(_ message: UnsafeRawBufferPointer, at offset: Int, to out: inout [UInt8]) -> Int? {
        var end: Int?
        withUnsafeTemporaryAllocation(byteCount: DNSName.maxTextLength, alignment: 1) { buf in
            if let r = DNSName.read(message, at: offset, into: buf) {
                out.append(contentsOf: UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(buf)[..<r.length]))
                end = r.end
            }
        }
        return end
    }

    public static func appendIPv4(_ b: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        for i in 0..<4 {
            if i > 0 { out.append(0x2E) }
            appendDecimal(UInt64(b[i]), to: &out)
        }
    }

    public static func ipAddress(_ b: UnsafeRawBufferPointer) -> IPAddress? {
        if b.count == 4 { return IPAddress.load(b, at: 0, ipv6: false) }
        if b.count == 16 { return IPAddress.load(b, at: 0, ipv6: true) }
        return nil
    }

    /// The RDATA of `rr` as text: addresses, names, `pref name` (MX), `prio weight port target` (SRV),
    /// the SOA fields, TXT strings joined by spaces, SVCB/HTTPS `prio target key=value…`, and
    /// RFC 3597 `\# len hex` for everything else (NULL included).
    public static func appendRData(_ rr: DNSResourceRecord, in message: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        let start = rr.rdataOffset, len = rr.rdataLength
        guard start >= 0, len >= 0, start + len <= message.count else { return }
        let rdata = UnsafeRawBufferPointer(rebasing: message[start..<(start + len)])
        var c = ByteCursor(rdata)
        switch rr.type {
        case DNSRecordType.a where len == 4, DNSRecordType.aaaa where len == 16:
            ipAddress(rdata)?.append(to: &out)
        case DNSRecordType.cname, DNSRecordType.ns, DNSRecordType.ptr, DNSRecordType.dname:
            appendName(message, at: start, to: &out)
        case DNSRecordType.mx where len >= 3:
            appendDecimal(UInt64(c.u16() ?? 0), to: &out)
            out.append(0x20)
            appendName(message, at: start + 2, to: &out)
        case DNSRecordType.srv where len >= 7:
            for _ in 0..<3 { appendDecimal(UInt64(c.u16() ?? 0), to: &out); out.append(0x20) }
            appendName(message, at: start + 6, to: &out)
        case DNSRecordType.soa:
            guard let m = appendName(message, at: start, to: &out) else { return }
            out.append(0x20)
            guard let r = appendName(message, at: m, to: &out) else { return }
            var t = ByteCursor(message, offset: r)
            for _ in 0..<5 {
                guard let v = t.u32() else { return }
                out.append(0x20)
                appendDecimal(UInt64(v), to: &out)
            }
        case DNSRecordType.txt:
            var first = true
            while let l = c.u8(), let s = c.take(Int(l)) {
                if !first { out.append(0x20) }
                first = false
                out.append(contentsOf: s)
            }
        case DNSRecordType.svcb where len >= 3, DNSRecordType.https where len >= 3:
            appendSVCB(rr, in: message, to: &out)
        default:
            // RFC 3597 generic form.
            out.append(contentsOf: [0x5C, 0x23, 0x20])  // "\# "
            appendDecimal(UInt64(len), to: &out)
            if len > 0 { out.append(0x20); appendHex(rdata, to: &out) }
        }
    }

    static func appendSVCB(_ rr: DNSResourceRecord, in message: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        let start = rr.rdataOffset, stop = rr.rdataOffset + rr.rdataLength
        var c = ByteCursor(UnsafeRawBufferPointer(rebasing: message[..<stop]), offset: start)
        guard let prio = c.u16() else { return }
        appendDecimal(UInt64(prio), to: &out)
        out.append(0x20)
        guard let e = appendName(message, at: c.offset, to: &out), e <= stop else { return }
        c.offset = e
        while let key = c.u16(), let l = c.u16(), let v = c.take(Int(l)) {
            out.append(0x20)
            var vc = ByteCursor(v)
            switch key {
            case 1:  // alpn: length-prefixed ids, comma separated
                out.append(contentsOf: Array("alpn=".utf8))
                var first = true
                while let n = vc.u8(), let id = vc.take(Int(n)) {
                    if !first { out.append(0x2C) }
                    first = false
                    out.append(contentsOf: id)
                }
            case 2: out.append(contentsOf: Array("no-default-alpn".utf8))
            case 3:
                out.append(contentsOf: Array("port=".utf8))
                appendDecimal(UInt64(vc.u16() ?? 0), to: &out)
            case 4, 6:
                out.append(contentsOf: Array((key == 4 ? "ipv4hint=" : "ipv6hint=").utf8))
                let size = key == 4 ? 4 : 16
                var first = true
                while let a = vc.take(size), let ip = ipAddress(a) {
                    if !first { out.append(0x2C) }
                    first = false
                    ip.append(to: &out)
                }
            default:
                out.append(contentsOf: Array("key".utf8))
                appendDecimal(UInt64(key), to: &out)
                out.append(0x3D)
                appendHex(v, to: &out)
            }
        }
    }
}
