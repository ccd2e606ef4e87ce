import CMaxMindDB
import PacketCore
#if canImport(Glibc)
import Glibc
#endif

/// An error opening or reading a MaxMind database, worded for the operator.
public struct EnrichmentError: Error, CustomStringConvertible, Equatable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// One open MaxMind DB file (memory-mapped by libmaxminddb), immutable once open.
///
/// Lookups are read-only on the mapping, so workers share one instance without locks. A reload opens a
/// new instance beside it; the old one is unmapped when the last worker lets go of it (`deinit`).
public final class MaxMindDatabase: @unchecked Sendable {
    public let path: String
    /// `database_type` from the file's metadata, e.g. `GeoIP2-City`, `GeoLite2-ASN`.
    public let databaseType: String
    /// Identity of the file that was opened (to notice a replaced file).
    let fileIdentity: FileIdentity
    private let mmdb: UnsafeMutablePointer<MMDB_s>

    struct FileIdentity: Equatable {
        var device: UInt64
        var inode: UInt64
        var size: Int64
        var mtimeNanoseconds: Int64

        init?(path: String) {
            var st = stat()
            guard stat(path, &st) == 0 else { return nil }
            device = UInt64(st.st_dev)
            inode = UInt64(st.st_ino)
            size = Int64(st.st_size)
            mtimeNanoseconds = Int64(st.st_mtim.tv_sec) &* 1_000_000_000 &+ Int64(st.st_mtim.tv_nsec)
        }
    }

    /// Opens and checks a database; `expecting` lists acceptable `database_type` fragments
    /// (`City`, `Country`; `ASN`, `ISP`) so a database given for the wrong role is refused at start.
    public init(path: String, expecting kinds: [String]) throws(EnrichmentError) {
        self.path = path
        guard let identity = FileIdentity(path: path) else {
            throw EnrichmentError("cannot open MaxMind database \(path): \(String(cString: strerror(errno)))")
        }
        fileIdentity = identity
        mmdb = .allocate(capacity: 1)
        let rc = MMDB_open(path, UInt32(MMDB_MODE_MMAP), mmdb)
        guard rc == MMDB_SUCCESS else {
            let why = rc == MMDB_IO_ERROR ? String(cString: strerror(errno)) : String(cString: MMDB_strerror(rc))
            mmdb.deallocate()
            throw EnrichmentError("cannot open MaxMind database \(path): \(why)")
        }
        databaseType = mmdb.pointee.metadata.database_type.map { String(cString: $0) } ?? ""
        // From here on every property is set: a throw runs `deinit`, which closes the database.
        guard kinds.isEmpty || kinds.contains(where: { databaseType.contains($0) }) else {
            throw EnrichmentError("MaxMind database \(path) is a \(databaseType) database; expected \(kinds.joined(separator: " or "))")
        }
        // A damaged data section opens fine and fails on the first lookup: look one up now.
        if let probe = IPAddress("1.1.1.1") {
            var failure: EnrichmentError?
            _ = lookup(probe) { entry in
                var list: UnsafeMutablePointer<MMDB_entry_data_list_s>? = nil
                let status = MMDB_get_entry_data_list(&entry, &list)
                if let list { MMDB_free_entry_data_list(list) }
                if status != MMDB_SUCCESS { failure = EnrichmentError("MaxMind database \(path) is damaged: \(String(cString: MMDB_strerror(status)))") }
            } onError: { failure = $0 }
            if let failure { throw failure }
        }
    }

    deinit {
        MMDB_close(mmdb)
        mmdb.deallocate()
    }

    /// Finds the record for an address and hands its entry to `body`; false when the address is not in the database.
    @discardableResult
    func lookup(_ address: IPAddress, _ body: (inout MMDB_entry_s) -> Void,
                onError: (EnrichmentError) -> Void = { _ in }) -> Bool {
        var mmdbError: Int32 = 0
        let result: MMDB_lookup_result_s
        if address.isIPv6 {
            var sa = sockaddr_in6()
            sa.sin6_family = sa_family_t(AF_INET6)
            address.withBytes { b in withUnsafeMutableBytes(of: &sa.sin6_addr) { $0.copyMemory(from: b) } }
            result = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { MMDB_lookup_sockaddr(mmdb, $0, &mmdbError) } }
        } else {
            var sa = sockaddr_in()
            sa.sin_family = sa_family_t(AF_INET)
            sa.sin_addr.s_addr = address.ipv4Value.bigEndian
            result = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { MMDB_lookup_sockaddr(mmdb, $0, &mmdbError) } }
        }
        if mmdbError != MMDB_SUCCESS {
            // An IPv6 address in an IPv4-only database is simply unknown; anything else is damage.
            if mmdbError != MMDB_IPV6_LOOKUP_IN_IPV4_DATABASE_ERROR {
                onError(EnrichmentError("lookup failed in \(path): \(String(cString: MMDB_strerror(mmdbError)))"))
            }
            return false
        }
        guard result.found_entry else { return false }
        var entry = result.entry
        body(&entry)
        return true
    }
}

/// NULL-terminated key paths for `MMDB_aget_value`, made once (C strings that live for the process).
struct KeyPath: @unchecked Sendable {
    let pointers: [UnsafePointer<CChar>?]
    init(_ keys: String...) {
        pointers = keys.map { UnsafePointer(strdup($0)) } + [nil]
    }

    func string(_ entry: inout MMDB_entry_s) -> String? {
        var data = MMDB_entry_data_s()
        let rc = pointers.withUnsafeBufferPointer { MMDB_aget_value(&entry, &data, $0.baseAddress) }
        guard rc == MMDB_SUCCESS, data.has_data, data.type == UInt32(MMDB_DATA_TYPE_UTF8_STRING), let p = data.utf8_string else { return nil }
        return p.withMemoryRebound(to: UInt8.self, capacity: Int(data.data_size)) {
            String(decoding: UnsafeBufferPointer(start: $0, count: Int(data.data_size)), as: UTF8.self)
        }
    }

    func double(_ entry: inout MMDB_entry_s) -> Double? {
        var data = MMDB_entry_data_s()
        let rc = pointers.withUnsafeBufferPointer { MMDB_aget_value(&entry, &data, $0.baseAddress) }
        guard rc == MMDB_SUCCESS, data.has_data else { return nil }
        switch Int32(data.type) {
        case MMDB_DATA_TYPE_DOUBLE: return data.double_value
        case MMDB_DATA_TYPE_FLOAT: return Double(data.float_value)
        default: return nil
        }
    }

    func unsigned(_ entry: inout MMDB_entry_s) -> UInt64? {
        var data = MMDB_entry_data_s()
        let rc = pointers.withUnsafeBufferPointer { MMDB_aget_value(&entry, &data, $0.baseAddress) }
        guard rc == MMDB_SUCCESS, data.has_data else { return nil }
        switch Int32(data.type) {
        case MMDB_DATA_TYPE_UINT16: return UInt64(data.uint16)
        case MMDB_DATA_TYPE_UINT32: return UInt64(data.uint32)
        case MMDB_DATA_TYPE_UINT64: return data.uint64
        case MMDB_DATA_TYPE_INT32: return data.int32 >= 0 ? UInt64(data.int32) : nil
        default: return nil
        }
    }
}

/// The libmaxminddb the process runs with (`sensor --version`).
public enum MaxMindLibrary {
    public static var version: String { String(cString: MMDB_lib_version()) }
}
