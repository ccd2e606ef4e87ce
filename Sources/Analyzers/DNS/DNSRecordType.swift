/// Record types, classes, response codes and opcodes by number, with their mnemonic names for events.
///
/// Types the sensor does not know by name are kept as numbers and written `TYPE<n>` (RFC 3597 §5).
public enum DNSRecordType {
    public static let a: UInt16 = 1
    public static let ns: UInt16 = 2
    public static let cname: UInt16 = 5
    public static let soa: UInt16 = 6
    public static let null: UInt16 = 10
    public static let ptr: UInt16 = 12
    public static let hinfo: UInt16 = 13
    public static let mx: UInt16 = 15
    public static let txt: UInt16 = 16
    public static let aaaa: UInt16 = 28
    public static let srv: UInt16 = 33
    public static let naptr: UInt16 = 35
    public static let dname: UInt16 = 39
    public static let opt: UInt16 = 41
    public static let ds: UInt16 = 43
    public static let rrsig: UInt16 = 46
    public static let nsec: UInt16 = 47
    public static let dnskey: UInt16 = 48
    public static let nsec3: UInt16 = 50
    public static let svcb: UInt16 = 64
    public static let https: UInt16 = 65
    public static let any: UInt16 = 255
    public static let caa: UInt16 = 257

    /// The mnemonic, or nil for a type without one here (write it as `TYPE<n>`).
    public static func name(_ t: UInt16) -> StaticString? {
        switch t {
        case 1: return "A"
        case 2: return "NS"
        case 5: return "CNAME"
        case 6: return "SOA"
        case 10: return "NULL"
        case 12: return "PTR"
        case 13: return "HINFO"
        case 15: return "MX"
        case 16: return "TXT"
        case 28: return "AAAA"
        case 33: return "SRV"
        case 35: return "NAPTR"
        case 39: return "DNAME"
        case 41: return "OPT"
        case 43: return "DS"
        case 46: return "RRSIG"
        case 47: return "NSEC"
        case 48: return "DNSKEY"
        case 50: return "NSEC3"
        case 64: return "SVCB"
        case 65: return "HTTPS"
        case 99: return "SPF"
        case 251: return "IXFR"
        case 252: return "AXFR"
        case 255: return "ANY"
        case 257: return "CAA"
        default: return nil
        }
    }

    /// Appends the mnemonic or `TYPE<n>`.
    public static func appendName(_ t: UInt16, to out: inout [UInt8]) {
        if let n = name(t) {
            n.withUTF8Buffer { out.append(contentsOf: $0) }
        } else {
            out.append(contentsOf: [0x54, 0x59, 0x50, 0x45])  // "TYPE"
            DNSText.appendDecimal(UInt64(t), to: &out)
        }
    }

    /// Types whose use in ordinary client lookups is rare enough to stand out in a tunnel score
    /// (everything except A, AAAA, PTR, HTTPS/SVCB, SRV, SOA, NS, DS/DNSKEY and the EDNS pseudo-type).
    public static func isUnusualForClients(_ t: UInt16) -> Bool {
        switch t {
        case a, aaaa, ptr, https, svcb, srv, soa, ns, ds, dnskey, opt: return false
        default: return true
        }
    }
}

public enum DNSClass {
    public static func name(_ c: UInt16) -> StaticString? {
        switch c & 0x7FFF {  // mDNS uses the top bit for unicast-response / cache-flush
        case 1: return "IN"
        case 3: return "CH"
        case 4: return "HS"
        case 254: return "NONE"
        case 255: return "ANY"
        default: return nil
        }
    }

    public static func appendName(_ c: UInt16, to out: inout [UInt8]) {
        if let n = name(c) {
            n.withUTF8Buffer { out.append(contentsOf: $0) }
        } else {
            out.append(contentsOf: [0x43, 0x4C, 0x41, 0x53, 0x53])  // "CLASS"
            DNSText.appendDecimal(UInt64(c), to: &out)
        }
    }
}

public enum DNSResponseCode {
    /// ECS `dns.response_code` names (RFC 6895 §2.3).
    public static func name(_ r: UInt16) -> StaticString? {
        switch r {
        case 0: return "NOERROR"
        case 1: return "FORMERR"
        case 2: return "SERVFAIL"
        case 3: return "NXDOMAIN"
        case 4: return "NOTIMP"
        case 5: return "REFUSED"
        case 6: return "YXDOMAIN"
        case 7: return "YXRRSET"
        case 8: return "NXRRSET"
        case 9: return "NOTAUTH"
        case 10: return "NOTZONE"
        case 16: return "BADVERS"
        case 17: return "BADKEY"
        case 18: return "BADTIME"
        case 19: return "BADMODE"
        case 20: return "BADNAME"
        case 21: return "BADALG"
        case 22: return "BADTRUNC"
        case 23: return "BADCOOKIE"
        default: return nil
        }
    }

    public static let nxdomain: UInt16 = 3
}

public enum DNSOpcode {
    public static func name(_ o: UInt8) -> StaticString? {
        switch o {
        case 0: return "QUERY"
        case 1: return "IQUERY"
        case 2: return "STATUS"
        case 4: return "NOTIFY"
        case 5: return "UPDATE"
        case 6: return "DSO"
        default: return nil
        }
    }
}
