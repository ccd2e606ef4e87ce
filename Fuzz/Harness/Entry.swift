#if canImport(Glibc)
import Glibc
#endif

/// Every fuzz target, by name. One binary holds them all (one link instead of one per target, which
/// is most of the build time); the name it is started under (`.build/fuzz/NAME`, a link to it) or
/// `$SENSOR_FUZZ_TARGET` picks the one libFuzzer drives.
let fuzzTargets: [String: (inout FuzzInput) -> Void] = [
    "pcap": fuzzPcap,
    "decoder": fuzzDecoder,
    "dns": fuzzDNS,
    "tls": fuzzTLS,
    "quic": fuzzQUIC,
    "http": fuzzHTTP,
    "smb": fuzzSMB,
    "ntlm": fuzzNTLM,
    "dcerpc": fuzzDCERPC,
    "kerberos": fuzzKerberos,
    "classifier": fuzzClassifier,
    "intel": fuzzIntel,
    "config": fuzzConfig,
    "rules": fuzzRules,
    "pipeline": fuzzPipeline,
    "x509": fuzzX509,
    "report": fuzzReport,
    "zeek": fuzzZeek,
    "hostfacts": fuzzHostFacts,
    "checkpoint": fuzzCheckpoint,
]

nonisolated(unsafe) var selectedTarget: (inout FuzzInput) -> Void = { _ in }
/// `$SENSOR_FUZZ_MODE`: a first byte put in front of every input, which pins the mode of a target that has
/// several (`dns`'s direct parse is 0): focused runs, and the self-test, spend no time in the slow modes.
nonisolated(unsafe) var pinnedFirstByte: UInt8?

@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>) -> CInt {
    let invoked = argv.pointee[0].map { String(cString: $0) } ?? ""
    let name = getenv("SENSOR_FUZZ_TARGET").map { String(cString: $0) } ?? String(invoked.split(separator: "/").last ?? "")
    guard let target = fuzzTargets[name] else {
        fputs("unknown fuzz target '\(name)'; one of: \(fuzzTargets.keys.sorted().joined(separator: " "))\n", stderr)
        exit(2)
    }
    selectedTarget = target
    pinnedFirstByte = getenv("SENSOR_FUZZ_MODE").flatMap { UInt8(String(cString: $0)) }
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard let first = pinnedFirstByte else {
        var input = FuzzInput(data, size)
        selectedTarget(&input)
        return 0
    }
    let pinned = [first] + UnsafeBufferPointer(start: data, count: size)
    pinned.withUnsafeBufferPointer { p in
        var input = FuzzInput(p.baseAddress!, p.count)
        selectedTarget(&input)
    }
    return 0
}
