/// A DCE-RPC interface as the analysers name it: its UUID (canonical text form) and, for the interfaces
/// lateral movement uses, a short name and operation names per opnum.
public struct RPCInterface: Sendable, Hashable {
    public var uuid: String
    /// e.g. `svcctl`, `ITaskSchedulerService`; nil for interfaces not in the table.
    public var name: String?

    public init(uuid: String) {
        self.uuid = uuid
        self.name = RPCInterface.known[uuid]?.name
    }

    /// `svcctl.RCreateServiceW`, or `svcctl.opnum_99`, or `<uuid>.opnum_3`.
    public func operationName(_ opnum: UInt16) -> String {
        let base = name ?? uuid
        if let op = RPCInterface.known[uuid]?.operations[opnum] { return "\(base).\(op)" }
        return "\(base).opnum_\(opnum)"
    }

    /// What a call means for lateral movement (the detector's vocabulary).
    public enum Effect: Sendable, Equatable {
        case serviceCreateOrStart
        case atJob
        case scheduledTask
        case wmiExec
        case replication        // DRSGetNCChanges: DCSync when not from a DC
        case replicaTopology    // DRSReplicaAdd/Del/Modify: DCShadow's push when not from a DC
        case secureChannelSetup // Netlogon ReqChallenge/Authenticate: Zerologon repeats them thousands of times
        case machinePasswordSet // Netlogon ServerPasswordSet2: Zerologon's reset after a burst
        case logClear
        case shareEnumeration
    }

    public func effect(of opnum: UInt16) -> Effect? {
        switch (name, opnum) {
        case ("svcctl", 11), ("svcctl", 12), ("svcctl", 19), ("svcctl", 23), ("svcctl", 24), ("svcctl", 31),
             ("svcctl", 44), ("svcctl", 45):
            return .serviceCreateOrStart
        case ("atsvc", 0): return .atJob
        case ("ITaskSchedulerService", 1), ("ITaskSchedulerService", 12): return .scheduledTask
        case ("IWbemServices", 24), ("IWbemServices", 25): return .wmiExec
        case ("drsuapi", 3): return .replication
        case ("drsuapi", 5), ("drsuapi", 6), ("drsuapi", 7): return .replicaTopology
        case ("netlogon", 4), ("netlogon", 5), ("netlogon", 15), ("netlogon", 26): return .secureChannelSetup
        case ("netlogon", 30): return .machinePasswordSet
        case ("eventlog", 0), ("eventlog", 12), ("IEventService", 6): return .logClear
        case ("srvsvc", 15): return .shareEnumeration
        default: return nil
        }
    }

    struct Known {
        var name: String
        var operations: [UInt16: String]
    }

    /// Interfaces and operations from the Microsoft protocol specifications (MS-SCMR, MS-TSCH, MS-WMI,
    /// MS-DCOM, MS-DRSR, MS-EVEN, MS-EVEN6, MS-RRP, MS-SAMR, MS-LSAD/LSAT, MS-SRVS, MS-NRPC, C706 EPM).
    static let known: [String: Known] = [
        "367abb81-9844-35f1-ad32-98f038001003": Known(name: "svcctl", operations: [
            0: "RCloseServiceHandle", 1: "RControlService", 2: "RDeleteService", 6: "RQueryServiceStatus",
            11: "RChangeServiceConfigW", 12: "RCreateServiceW", 14: "REnumServicesStatusW", 15: "ROpenSCManagerW",
            16: "ROpenServiceW", 17: "RQueryServiceConfigW", 19: "RStartServiceW", 23: "RChangeServiceConfigA",
            24: "RCreateServiceA", 27: "ROpenSCManagerA", 28: "ROpenServiceA", 31: "RStartServiceA",
            44: "RCreateServiceWOW64A", 45: "RCreateServiceWOW64W"]),
        "1ff70682-0a51-30e8-076d-740be8cee98b": Known(name: "atsvc", operations: [
            0: "NetrJobAdd", 1: "NetrJobDel", 2: "NetrJobEnum", 3: "NetrJobGetInfo"]),
        "86d35949-83c9-4044-b424-db363231fd0c": Known(name: "ITaskSchedulerService", operations: [
            0: "SchRpcHighestVersion", 1: "SchRpcRegisterTask", 2: "SchRpcRetrieveTask", 3: "SchRpcCreateFolder",
            6: "SchRpcEnumFolders", 7: "SchRpcEnumTasks", 11: "SchRpcStop", 12: "SchRpcRun", 13: "SchRpcDelete",
            16: "SchRpcGetLastRunInfo", 17: "SchRpcGetTaskInfo"]),
        "9556dc99-828c-11cf-a37e-00aa003240c7": Known(name: "IWbemServices", operations: [
            3: "OpenNamespace", 6: "GetObject", 20: "ExecQuery", 21: "ExecQueryAsync", 22: "ExecNotificationQuery",
            24: "ExecMethod", 25: "ExecMethodAsync"]),
        "f309ad18-d86a-11d0-a075-00c04fb68820": Known(name: "IWbemLevel1Login", operations: [
            3: "EstablishPosition", 4: "RequestChallenge", 5: "WBEMLogin", 6: "NTLMLogin"]),
        "d4781cd6-e5d3-44df-ad94-930efe48a887": Known(name: "IWbemLoginClientID", operations: [3: "SetClientInfo"]),
        "000001a0-0000-0000-c000-000000000046": Known(name: "ISystemActivator", operations: [
            3: "RemoteGetClassObject", 4: "RemoteCreateInstance"]),
        "4d9f4ab8-7d1c-11cf-861e-0020af6e7c57": Known(name: "IActivation", operations: [0: "RemoteActivation"]),
        "99fcfec4-5260-101b-bbcb-00aa0021347a": Known(name: "IObjectExporter", operations: [
            0: "ResolveOxid", 1: "SimplePing", 2: "ComplexPing", 3: "ServerAlive", 4: "ResolveOxid2", 5: "ServerAlive2"]),
        "00000131-0000-0000-c000-000000000046": Known(name: "IRemUnknown", operations: [3: "RemQueryInterface", 4: "RemAddRef", 5: "RemRelease"]),
        "00000143-0000-0000-c000-000000000046": Known(name: "IRemUnknown2", operations: [3: "RemQueryInterface", 4: "RemAddRef", 5: "RemRelease", 6: "RemQueryInterface2"]),
        "00020400-0000-0000-c000-000000000046": Known(name: "IDispatch", operations: [
            3: "GetTypeInfoCount", 4: "GetTypeInfo", 5: "GetIDsOfNames", 6: "Invoke"]),
        "e3514235-4b06-11d1-ab04-00c04fc2dcd2": Known(name: "drsuapi", operations: [
            0: "IDL_DRSBind", 1: "IDL_DRSUnbind", 2: "IDL_DRSReplicaSync", 3: "IDL_DRSGetNCChanges",
            4: "IDL_DRSUpdateRefs", 5: "IDL_DRSReplicaAdd", 6: "IDL_DRSReplicaDel", 7: "IDL_DRSReplicaModify", 12: "IDL_DRSCrackNames", 16: "IDL_DRSDomainControllerInfo"]),
        "82273fdc-e32a-18c3-3f78-827929dc23ea": Known(name: "eventlog", operations: [
            0: "ElfrClearELFW", 1: "ElfrBackupELFW", 2: "ElfrCloseEL", 7: "ElfrOpenELW", 12: "ElfrClearELFA"]),
        "f6beaff7-1e19-4fbb-9f8f-b89e2018337c": Known(name: "IEventService", operations: [6: "EvtRpcClearLog"]),
        "338cd001-2244-31f1-aaaa-900038001003": Known(name: "winreg", operations: [
            0: "OpenClassesRoot", 1: "OpenCurrentUser", 2: "OpenLocalMachine", 4: "OpenUsers", 5: "BaseRegCloseKey",
            6: "BaseRegCreateKey", 8: "BaseRegDeleteKey", 9: "BaseRegDeleteValue", 15: "BaseRegOpenKey",
            16: "BaseRegQueryInfoKey", 17: "BaseRegQueryValue", 20: "BaseRegSaveKey", 22: "BaseRegSetValue",
            26: "BaseRegGetVersion"]),
        "12345778-1234-abcd-ef00-0123456789ac": Known(name: "samr", operations: [
            0: "SamrConnect", 1: "SamrCloseHandle", 5: "SamrLookupDomainInSamServer", 6: "SamrEnumerateDomainsInSamServer",
            7: "SamrOpenDomain", 13: "SamrEnumerateUsersInDomain", 17: "SamrLookupNamesInDomain", 34: "SamrOpenUser",
            36: "SamrQueryInformationUser", 37: "SamrSetInformationUser", 50: "SamrCreateUser2InDomain",
            57: "SamrConnect2", 58: "SamrSetInformationUser2", 64: "SamrConnect5"]),
        "12345778-1234-abcd-ef00-0123456789ab": Known(name: "lsarpc", operations: [
            0: "LsarClose", 6: "LsarOpenPolicy", 7: "LsarQueryInformationPolicy", 14: "LsarLookupNames",
            15: "LsarLookupSids", 44: "LsarOpenPolicy2", 45: "LsarGetUserName", 46: "LsarQueryInformationPolicy2",
            57: "LsarLookupSids2", 58: "LsarLookupNames2", 76: "LsarLookupSids3", 77: "LsarLookupNames4"]),
        "4b324fc8-1670-01d3-1278-5a47bf6ee188": Known(name: "srvsvc", operations: [
            8: "NetrConnectionEnum", 9: "NetrFileEnum", 12: "NetrSessionEnum", 15: "NetrShareEnum",
            16: "NetrShareGetInfo", 21: "NetrServerGetInfo", 28: "NetrRemoteTOD"]),
        "6bffd098-a112-3610-9833-46c3f87e345a": Known(name: "wkssvc", operations: [0: "NetrWkstaGetInfo", 2: "NetrWkstaUserEnum"]),
        "12345678-1234-abcd-ef00-01234567cffb": Known(name: "netlogon", operations: [
            2: "NetrLogonSamLogon", 4: "NetrServerReqChallenge", 5: "NetrServerAuthenticate", 15: "NetrServerAuthenticate2", 21: "NetrLogonGetCapabilities",
            26: "NetrServerAuthenticate3", 29: "NetrLogonGetDomainInfo", 30: "NetrServerPasswordSet2",
            34: "DsrGetDcNameEx2", 45: "NetrLogonSamLogonWithFlags"]),
        "e1af8308-5d1f-11c9-91a4-08002b14a0fa": Known(name: "epm", operations: [2: "ept_lookup", 3: "ept_map"]),
        "49b2791a-b1ae-4c90-9b8e-e860ba07f889": Known(name: "IManagedObject", operations: [:]),
    ]
}
