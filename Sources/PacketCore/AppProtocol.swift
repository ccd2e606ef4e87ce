/// Application protocols analysers can identify, stored in `FlowRecord.appProtocol` (one byte per flow)
/// and written as ECS `network.protocol`.
public enum AppProtocol: UInt8, Sendable, CaseIterable {
    case unknown = 0
    case dns, http, tls, ssh, smb, dceRPC, rdp, smtp, ftp, irc, kerberos, ldap, quic, ntp, winRM, netbios, dhcp, snmp, sip, mdns, llmnr

    /// ECS `network.protocol` value (lower case, as ECS asks).
    public var name: StaticString {
        switch self {
        case .unknown: return "unknown"
        case .dns: return "dns"
        case .http: return "http"
        case .tls: return "tls"
        case .ssh: return "ssh"
        case .smb: return "smb"
        case .dceRPC: return "dce_rpc"
        case .rdp: return "rdp"
        case .smtp: return "smtp"
        case .ftp: return "ftp"
        case .irc: return "irc"
        case .kerberos: return "kerberos"
        case .ldap: return "ldap"
        case .quic: return "quic"
        case .ntp: return "ntp"
        case .winRM: return "winrm"
        case .netbios: return "netbios"
        case .dhcp: return "dhcp"
        case .snmp: return "snmp"
        case .sip: return "sip"
        case .mdns: return "mdns"
        case .llmnr: return "llmnr"
        }
    }
}
