#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What a response's answers carry back as data: the channel a TXT/NULL/CNAME/MX tunnel uses downstream.
///
/// Counted are the answer records of the type asked for (any type for an ANY question) that ordinary
/// clients rarely ask for (`DNSRecordType.isUnusualForClients`): a CNAME chain in front of an A answer,
/// or the SVCB parameters of an HTTPS answer, is ordinary and not counted. An A question answered by
/// aliases and no address is the exception: iodine's A mode carries its downstream in that CNAME, while
/// an ordinary chain ends in the address it was asked for. (Not AAAA or HTTPS: a chain ending without
/// one, a host without IPv6 or an HTTPS record, is everyday.) The data is what an encoder
/// controls: TXT strings without their length bytes, CNAME/MX/DNAME targets as label characters
/// (compression expanded), other types as raw RDATA. Measured in one pass over the validated records,
/// with the character counts on the stack: nothing allocates.
public struct DNSAnswerPayload: Sendable, Equatable {
    /// Payload characters in the counted answers.
    public var bytes: Int = 0
    /// Shannon entropy of those characters, bits per character.
    public var entropy: Float = 0
    /// FNV-1a of the payload characters (0 when there are none), so repeats of one answer can be told
    /// from a stream of different ones.
    public var hash: UInt64 = 0

    public init() {}
    public init(bytes: Int, entropy: Float, hash: UInt64) {
        self.bytes = bytes
        self.entropy = entropy
        self.hash = hash
    }

    public static func measure(_ m: DNSMessage, questionType: UInt16) -> DNSAnswerPayload {
        guard m.header.isResponse, m.header.answerCount > 0 else { return DNSAnswerPayload() }
        return withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 256) { counts -> DNSAnswerPayload in
            counts.initialize(repeating: 0)
            var n = 0
            var h: UInt64 = 0xcbf2_9ce4_8422_2325
            @inline(__always) func add(_ b: UInt8) {
                counts[Int(b)] &+= 1
                n &+= 1
                h = (h ^ UInt64(b)) &* 0x100_0000_01b3
            }
            let bytes = m.bytes
            let aliasesOnly = questionType == DNSRecordType.a
                && !m.records.contains { $0.section == .answer && $0.type == DNSRecordType.a }
            for rr in m.records where rr.section == .answer {
                let asked = rr.type == questionType || questionType == DNSRecordType.any
                    || (aliasesOnly && (rr.type == DNSRecordType.cname || rr.type == DNSRecordType.dname))
                guard asked, DNSRecordType.isUnusualForClients(rr.type) else { continue }
                let start = rr.rdataOffset, stop = rr.rdataOffset + rr.rdataLength
                switch rr.type {
                case DNSRecordType.txt:
                    // Validated by the parser: the character-strings end exactly at `stop`.
                    var i = start
                    while i < stop {
                        let l = Int(bytes[i])
                        var k = i + 1
                        while k < i + 1 + l && k < stop { add(bytes[k]); k += 1 }
                        i += 1 + l
                    }
                case DNSRecordType.cname, DNSRecordType.dname, DNSRecordType.mx:
                    let at = rr.type == DNSRecordType.mx ? start + 2 : start
                    _ = DNSName.walk(bytes, at: at) { label in for b in label { add(b) } }
                default:
                    for i in start..<stop { add(bytes[i]) }
                }
            }
            guard n > 0 else { return DNSAnswerPayload() }
            var sum = 0.0
            for i in 0..<256 where counts[i] > 1 { sum += Double(counts[i]) * log2(Double(counts[i])) }
            let entropy = n > 1 ? log2(Double(n)) - sum / Double(n) : 0
            return DNSAnswerPayload(bytes: n, entropy: Float(entropy), hash: h)
        }
    }
}
