import PacketCore

/// The fixed 12-byte DNS header (RFC 1035 §4.1.1) with the flag bits of RFC 2535/4035.
public struct DNSHeader: Sendable, Equatable {
    public var id: UInt16
    public var flags: UInt16
    public var questionCount: UInt16
    public var answerCount: UInt16
    public var authorityCount: UInt16
    public var additionalCount: UInt16

    @inlinable public var isResponse: Bool { flags & 0x8000 != 0 }
    @inlinable public var opcode: UInt8 { UInt8(truncatingIfNeeded: (flags >> 11) & 0xF) }
    @inlinable public var authoritative: Bool { flags & 0x0400 != 0 }
    @inlinable public var truncated: Bool { flags & 0x0200 != 0 }
    @inlinable public var recursionDesired: Bool { flags & 0x0100 != 0 }
    @inlinable public var recursionAvailable: Bool { flags & 0x0080 != 0 }
    /// The reserved Z bit (must be zero).
    @inlinable public var zBit: Bool { flags & 0x0040 != 0 }
    @inlinable public var authenticData: Bool { flags & 0x0020 != 0 }
    @inlinable public var checkingDisabled: Bool { flags & 0x0010 != 0 }
    /// The 4-bit RCODE of the header (EDNS extends it; see `DNSMessage.responseCode`).
    @inlinable public var rcode: UInt8 { UInt8(truncatingIfNeeded: flags & 0xF) }

    @inlinable public init(id: UInt16, flags: UInt16, questionCount: UInt16, answerCount: UInt16, authorityCount: UInt16, additionalCount: UInt16) {
        self.id = id
        self.flags = flags
        self.questionCount = questionCount
        self.answerCount = answerCount
        self.authorityCount = authorityCount
        self.additionalCount = additionalCount
    }
}

/// The EDNS(0) pseudo-record (OPT, RFC 6891) of a message.
public struct DNSEDNS: Sendable, Equatable {
    /// The sender's UDP payload size.
    public var udpPayloadSize: UInt16
    /// Upper 8 bits of the 12-bit extended RCODE.
    public var extendedRCode: UInt8
    public var version: UInt8
    /// DNSSEC OK.
    public var dnssecOK: Bool
    /// Offset and length of the options (code/length/value triples) in the message.
    public var optionsOffset: Int
    public var optionsLength: Int
}

/// The section a resource record was found in.
public enum DNSSection: UInt8, Sendable {
    case answer = 1, authority = 2, additional = 3
}

/// One question entry: the name stays in the message (it may be compressed), read with `DNSName`.
public struct DNSQuestion: Sendable, Equatable {
    public var nameOffset: Int
    public var type: UInt16
    public var qclass: UInt16
}

/// One resource record: header values plus where its name and RDATA sit in the message.
public struct DNSResourceRecord: Sendable, Equatable {
    public var section: DNSSection
    public var nameOffset: Int
    public var type: UInt16
    public var rrclass: UInt16
    public var ttl: UInt32
    public var rdataOffset: Int
    public var rdataLength: Int
}

/// A validated view of one DNS message over the bytes it was parsed from (no copy, nothing allocated).
///
/// `parse` walks every section once: the header and question section must be well formed or the
/// message is rejected (nil); resource records are checked one by one (names, RDATA bounds, and the
/// RDATA layout of every type the sensor renders) and the first malformed or cut-off record ends the
/// walk, leaving `isComplete == false` and `validRecordCount` at the records before it. Captures are often cut
/// by the snap length, and a passive-DNS record of the question is still worth having; hostile input can
/// therefore at worst yield fewer records, never a trap, loop or allocation. Iterators only ever
/// revisit the records `parse` validated.
public struct DNSMessage {
    public let bytes: UnsafeRawBufferPointer
    public let header: DNSHeader
    /// Offset of the first question.
    public let questionsOffset: Int
    /// Offset of the first resource record (just after the question section).
    public let recordsOffset: Int
    /// Resource records that validated, in wire order (answers, then authority, then additional).
    public let validRecordCount: Int
    /// Every record the header announced was present and valid.
    public let isComplete: Bool
    /// End of the last valid record.
    public let end: Int
    /// The OPT record, if the additional section carried one.
    public let edns: DNSEDNS?
    /// Sum of the RDATA lengths of the valid answer records (payload carried back to the client).
    public let answerDataBytes: Int

    /// Most questions a message may announce before it is treated as hostile (real traffic carries one).
    public static let maxQuestions = 64

    /// Parses and validates a message; nil when the header or question section is malformed.
    public static func parse(_ bytes: UnsafeRawBufferPointer) -> DNSMessage? {
        var c = ByteCursor(bytes)
        guard let id = c.u16(), let flags = c.u16(), let qd = c.u16(), let an = c.u16(), let ns = c.u16(), let ar = c.u16() else { return nil }
        let header = DNSHeader(id: id, flags: flags, questionCount: qd, answerCount: an, authorityCount: ns, additionalCount: ar)
        guard Int(qd) <= maxQuestions else { return nil }
        let questionsOffset = c.offset
        for _ in 0..<Int(qd) {
            guard let end = DNSName.skip(bytes, at: c.offset) else { return nil }
            c.offset = end
            guard c.skip(4) else { return nil }
        }
        let recordsOffset = c.offset
        var valid = 0
        var edns: DNSEDNS?
        var answerBytes = 0
        var end = c.offset
        let total = Int(an) + Int(ns) + Int(ar)
        var complete = true
        while valid < total {
            guard let rr = readRecord(bytes, at: c.offset, index: valid, answers: Int(an), authority: Int(ns)),
                  validateRData(bytes, rr) else {
                complete = false
                break
            }
            // The OPT pseudo-record: the first one in the additional section with the root as owner
            // (RFC 6891 §6.1.1). An OPT anywhere else is kept as an ordinary (opaque) record, as
            // Wireshark shows it, rather than failing the message.
            if rr.type == DNSRecordType.opt && rr.section == .additional && edns == nil && bytes[rr.nameOffset] == 0 {
                edns = DNSEDNS(udpPayloadSize: rr.rrclass, extendedRCode: UInt8(truncatingIfNeeded: rr.ttl >> 24),
                               version: UInt8(truncatingIfNeeded: rr.ttl >> 16), dnssecOK: rr.ttl & 0x8000 != 0,
                               optionsOffset: rr.rdataOffset, optionsLength: rr.rdataLength)
            }
            if rr.section == .answer { answerBytes += rr.rdataLength }
            c.offset = rr.rdataOffset + rr.rdataLength
            end = c.offset
            valid += 1
        }
        return DNSMessage(bytes: bytes, header: header, questionsOffset: questionsOffset, recordsOffset: recordsOffset,
                          validRecordCount: valid, isComplete: complete, end: end, edns: edns, answerDataBytes: answerBytes)
    }

    /// The full response code: the header's 4 bits extended by EDNS's upper 8 (RFC 6891 §6.1.3).
    public var responseCode: UInt16 {
        UInt16(header.rcode) | (UInt16(edns?.extendedRCode ?? 0) << 4)
    }

    /// Reads one record header at `offset`; the section follows from its index.
    static func readRecord(_ bytes: UnsafeRawBufferPointer, at offset: Int, index: Int, answers: Int, authority: Int) -> DNSResourceRecord? {
        guard let nameEnd = DNSName.skip(bytes, at: offset) else { return nil }
        var c = ByteCursor(bytes, offset: nameEnd)
        guard let type = c.u16(), let cls = c.u16(), let ttl = c.u32(), let len = c.u16(), c.has(Int(len)) else { return nil }
        let section: DNSSection = index < answers ? .answer : (index < answers + authority ? .authority : .additional)
        return DNSResourceRecord(section: section, nameOffset: offset, type: type, rrclass: cls, ttl: ttl,
                                 rdataOffset: c.offset, rdataLength: Int(len))
    }

    /// Checks the RDATA layout of the types the sensor renders; other types are opaque bytes.
    static func validateRData(_ bytes: UnsafeRawBufferPointer, _ rr: DNSResourceRecord) -> Bool {
        let start = rr.rdataOffset, len = rr.rdataLength, stop = start + len
        switch rr.type {
        case DNSRecordType.a: return len == 4
        case DNSRecordType.aaaa: return len == 16
        case DNSRecordType.cname, DNSRecordType.ns, DNSRecordType.ptr, DNSRecordType.dname:
            guard let e = DNSName.skip(bytes, at: start) else { return false }
            return e == stop
        case DNSRecordType.mx:
            guard len >= 3, let e = DNSName.skip(bytes, at: start + 2) else { return false }
            return e == stop
        case DNSRecordType.srv:
            guard len >= 7, let e = DNSName.skip(bytes, at: start + 6) else { return false }
            return e == stop
        case DNSRecordType.soa:
            guard let m = DNSName.skip(bytes, at: start), m < stop, let r = DNSName.skip(bytes, at: m) else { return false }
            return r + 20 == stop
        case DNSRecordType.txt:
            var i = start
            while i < stop { i += 1 + Int(bytes[i]) }
            return i == stop
        case DNSRecordType.svcb, DNSRecordType.https:
            guard len >= 3, let e = DNSName.skip(bytes, at: start + 2), e <= stop else { return false }
            var c = ByteCursor(UnsafeRawBufferPointer(rebasing: bytes[..<stop]), offset: e)
            while !c.isAtEnd {
                guard c.u16() != nil, let l = c.u16(), c.skip(Int(l)) else { return false }
            }
            return true
        case DNSRecordType.opt:
            var c = ByteCursor(UnsafeRawBufferPointer(rebasing: bytes[..<stop]), offset: start)
            while !c.isAtEnd {
                guard c.u16() != nil, let l = c.u16(), c.skip(Int(l)) else { return false }
            }
            return true
        default:
            return true
        }
    }

    // MARK: Iteration

    /// The questions, in order.
    public var questions: DNSQuestionSequence { DNSQuestionSequence(bytes: bytes, offset: questionsOffset, count: Int(header.questionCount)) }

    /// The first question, if any (nearly every message has exactly one).
    public var firstQuestion: DNSQuestion? {
        guard header.questionCount > 0 else { return nil }
        var it = questions.makeIterator()
        return it.next()
    }

    /// Every valid resource record (answers, authority, additional), in wire order.
    public var records: DNSRecordSequence {
        DNSRecordSequence(bytes: bytes, offset: recordsOffset, count: validRecordCount,
                          answers: Int(header.answerCount), authority: Int(header.authorityCount))
    }
}

public struct DNSQuestionSequence: Sequence, IteratorProtocol {
    let bytes: UnsafeRawBufferPointer
    var offset: Int
    var count: Int

    public mutating func next() -> DNSQuestion? {
        guard count > 0, let e = DNSName.skip(bytes, at: offset) else { return nil }
        var c = ByteCursor(bytes, offset: e)
        guard let t = c.u16(), let k = c.u16() else { return nil }
        let q = DNSQuestion(nameOffset: offset, type: t, qclass: k)
        offset = c.offset
        count -= 1
        return q
    }
}

public struct DNSRecordSequence: Sequence, IteratorProtocol {
    let bytes: UnsafeRawBufferPointer
    var offset: Int
    let count: Int
    let answers: Int
    let authority: Int
    var index = 0

    public mutating func next() -> DNSResourceRecord? {
        guard index < count, let rr = DNSMessage.readRecord(bytes, at: offset, index: index, answers: answers, authority: authority) else { return nil }
        offset = rr.rdataOffset + rr.rdataLength
        index += 1
        return rr
    }
}
