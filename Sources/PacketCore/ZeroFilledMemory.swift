#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Storage for tables sized by a capacity (an entry per flow-table slot, say) whose all-zero bit pattern
/// is a valid empty entry.
///
/// `calloc`, not `allocate` + `initialize`: glibc takes large requests straight from `mmap`, whose pages
/// the kernel zero-fills on first touch, so a table sized for a busy link costs no start-up time and no
/// resident memory until its entries are used (measured: a replay with `flows.max` 16,777,216 starts in
/// the time and the 39 MB of one with the default; initialised eagerly it took 5.35 s and 920 MB).
/// Element types must be plain values (BitwiseCopyable) for which zero means "nothing here".
public enum ZeroFilledMemory {
    /// `count` zeroed elements; free them with `deallocate`. Traps only when the address space cannot
    /// hold the reservation (the capacities that size these tables are bounded at configuration).
    public static func allocate<T: BitwiseCopyable>(_: T.Type, count: Int) -> UnsafeMutablePointer<T> {
        let n = max(1, count)
        guard let p = calloc(n, MemoryLayout<T>.stride) else {
            fatalError("cannot reserve \(n) × \(MemoryLayout<T>.stride) bytes of zero-filled memory")
        }
        return p.bindMemory(to: T.self, capacity: n)
    }

    public static func deallocate<T>(_ p: UnsafeMutablePointer<T>) { free(p) }
}
