/// Application protocols analysers can identify, stored in `FlowRecord.appProtocol` (one byte per flow)
/// and written as ECS `network.protocol`.
public enum AppProtocol: UInt8, Sendable, CaseIterable {
    case unknown = 0
    case dns, http, tls, ssh, smb, dceRPC, rdp, smtp, ftp, irc, kerberos, ldap, quic, ntp, winRM, netbios, dhcp, snmp, sip, mdns, llmnr
    // Appended (the raw values are stored in flow records and fact streams: never reorder).
    case cldap, oncRPC, cotp, s7comm, mms, modbus, dnp3, mysql, postgresql, redis, vnc, pop3, imap, mqtt, telnet, stun, ssdp

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
        case .cldap: return "cldap"
        case .oncRPC: return "onc_rpc"
        case .cotp: return "cotp"
        case .s7comm: return "s7comm"
        case .mms: return "mms"
        case .modbus: return "modbus"
        case .dnp3: return "dnp3"
        case .mysql: return "mysql"
        case .postgresql: return "postgresql"
        case .redis: return "redis"
        case .vnc: return "vnc"
        case .pop3: return "pop3"
        case .imap: return "imap"
        case .mqtt: return "mqtt"
        case .telnet: return "telnet"
        case .stun: return "stun"
        case .ssdp: return "ssdp"
        }
    }
}
