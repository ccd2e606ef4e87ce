import Analyzers
import Detectors
import PacketCore

extension HostFactCodec {
    /// Whether `decode(encode(fact))` gives back `fact` unchanged: no string cut, no figure clamped or
    /// refused, no label left out. Such a fact is handed to an inline stage as it is (nothing written or
    /// read); any other goes through its record, so the detectors decide on what a record carries either
    /// way. The limits are `encode`'s and `decode`'s, field by field (a property test holds them together).
    public static func carriesWhole(_ fact: HostFact) -> Bool {
        switch fact {
        case .clockStarted, .tick, .tcpFlowStarted, .tcpAccepted, .flowElsewhere, .ftpDataAnnounced:
            return true
        case .flowEnded(_, _, let labels):
            return carriesWhole(labels)
        case .remoteAccess(let f, _, _):
            return carriesWhole(f)
        case .dnsMessage(let f):
            return carriesWhole(f)
        case .httpRequest(let q):
            return figure64.contains(q.bytes) && fits(q.host)
        case .udpRequest(let q):
            return figure32.contains(q.bytes) && fits(q.serverName)
        }
    }

    @inline(__always) static func fits(_ s: String) -> Bool { s.utf8.count <= HostFactWriter.maxString }
    @inline(__always) static func fits(_ s: String?) -> Bool { s.map(fits) ?? true }

    static func carriesWhole(_ l: FlowLabels) -> Bool {
        guard fits(l.serverName), fits(l.httpHost) else { return false }
        // ALPN, JA3 and JA4 are carried for a ClientHello without SNI only (all the bare-IP rule reads).
        guard l.hasClientHello && l.serverName == nil else { return l.alpn.isEmpty && l.ja3 == nil && l.ja4 == nil }
        return l.alpn.count <= HostFactWriter.maxALPN && l.alpn.allSatisfy { $0.utf8.count <= HostFactWriter.maxALPNEntry } && fits(l.ja3) && fits(l.ja4)
    }

    /// An interface travels as its UUID: its name must be the one the UUID gives.
    static func carriesWhole(_ i: RPCInterface) -> Bool { fits(i.uuid) && i == RPCInterface(uuid: i.uuid) }

    static func carriesWhole(_ f: RemoteAccessFact) -> Bool {
        switch f {
        case .treeConnect(let path): return fits(path)
        case .open(let share, let name, _, _), .write(let share, let name): return fits(share) && fits(name)
        case .authentication(let a): return fits(a.user) && fits(a.domain) && fits(a.workstation)
        case .rpcBind(let i): return carriesWhole(i)
        case .rpcCall(let i, _, let pipe): return (i.map(carriesWhole) ?? true) && fits(pipe)
        case .dcomActivation(let className): return fits(className)
        case .wmiProcessCreate, .encryptedSMB, .kerberosServer, .exploit: return true
        case .rpcCallInferred(let i, _): return carriesWhole(i)
        }
    }

    /// The record carries the name whole and offsets and counts in 32 bits; the reader lower-cases the
    /// name itself and refuses offsets past it and entropies outside 0…8.
    static func carriesWhole(_ f: DNSMessageFacts) -> Bool {
        let n = f.name.count
        guard n <= maxDNSName, f.lowercaseName.count == n,
              offset32.contains(f.registeredDomainStart), f.registeredDomainStart <= n,
              offset32.contains(f.publicSuffixStart), f.publicSuffixStart <= n,
              figure32.contains(f.messageLength), figure32.contains(f.answerCount), figure32.contains(f.answerDataBytes),
              payloadBytes.contains(f.answerPayload.bytes), entropyBits.contains(f.answerPayload.entropy) else { return false }
        for i in 0..<n {
            let b = f.name[i]
            guard f.lowercaseName[i] == (b >= 0x41 && b <= 0x5A ? b | 0x20 : b) else { return false }
        }
        return true
    }
}
