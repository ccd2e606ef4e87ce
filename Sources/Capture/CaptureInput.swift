import CPcap
#if canImport(Glibc)
import Glibc
#endif

/// Opens a capture for libpcap as a stdio stream: a file, `-` for standard input, and either of them
/// compressed with gzip, zstd or xz (recognised by their magic bytes, not the file name).
///
/// Compressed input goes through the system's `gzip -dc`, `zstd -dc` or `xz -dc` on a pipe rather than
/// through zlib/libzstd/liblzma linked in: decompression then runs on its own core beside the packet
/// path (xz and gzip cost more CPU per byte than decoding), the binary gains no library dependencies
/// for a convenience, and each tool is the reference implementation of its format. Standard input is
/// copied into a pipe after its first bytes were read for the magic (a pipe cannot be rewound). Every pipe
/// is close-on-exec: a decompressor that inherited the feeder's write end would wait for its own EOF forever.
final class CaptureInput {
    enum Compression: String {
        case gzip, zstd, xz

        /// The format whose magic starts `b`, if any.
        init?(magic b: [UInt8]) {
            if b.starts(with: [0x1F, 0x8B]) { self = .gzip } else if b.starts(with: [0x28, 0xB5, 0x2F, 0xFD]) { self = .zstd }
            else if b.starts(with: [0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00]) { self = .xz } else { return nil }
        }

        var tool: String { rawValue }
    }

    let file: UnsafeMutablePointer<FILE>
    let compression: Compression?
    /// The decompressor, reaped when the input ends or closes.
    private var child: pid_t = -1
    private var feeder: pthread_t?

    /// Opens `path` (`-`: standard input).
    init(path: String) throws(CaptureError) {
        func fail(_ m: String) -> CaptureError { CaptureError(kind: .open, input: path, message: m) }
        var fd: Int32
        var head: [UInt8] = []
        if path == "-" {
            // The feeder's write fails with EPIPE, not a fatal signal, when the replay stops reading early.
            signal(SIGPIPE, SIG_IGN)
            head = CaptureInput.readHead(0)
            // The bytes already read, then the rest of standard input, through a pipe.
            var p: [Int32] = [0, 0]
            guard CaptureInput.cloexecPipe(&p) else { throw fail(String(cString: strerror(errno))) }
            fd = p[0]
            feeder = CaptureInput.startFeeder(prefix: head, from: 0, to: p[1])
        } else {
            fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw fail(String(cString: strerror(errno))) }
            var b = [UInt8](repeating: 0, count: 6)
            let n = pread(fd, &b, 6, 0)
            head = Array(b.prefix(max(0, n)))
        }
        let compression = Compression(magic: head)
        self.compression = compression
        if let compression {
            var p: [Int32] = [0, 0]
            guard CaptureInput.cloexecPipe(&p) else { close(fd); throw fail(String(cString: strerror(errno))) }
            var actions = posix_spawn_file_actions_t()
            posix_spawn_file_actions_init(&actions)
            posix_spawn_file_actions_adddup2(&actions, fd, 0)
            posix_spawn_file_actions_adddup2(&actions, p[1], 1)
            posix_spawn_file_actions_addclose(&actions, p[0])
            let argv: [UnsafeMutablePointer<CChar>?] = [strdup(compression.tool), strdup("-dc"), nil]
            defer { for a in argv { free(a) } }
            var pid: pid_t = 0
            let rc = posix_spawnp(&pid, compression.tool, &actions, nil, argv, environ)
            posix_spawn_file_actions_destroy(&actions)
            close(p[1])
            close(fd)
            guard rc == 0 else {
                close(p[0])
                throw fail("\(compression.rawValue)-compressed, and `\(compression.tool)` cannot be run: \(String(cString: strerror(rc)))")
            }
            child = pid
            fd = p[0]
        }
        guard let f = fdopen(fd, "rb") else { close(fd); throw fail(String(cString: strerror(errno))) }
        file = f
    }

    /// A pipe whose ends are close-on-exec (`pipe2` is not visible to Swift here; no other thread of the
    /// sensor spawns processes while an input opens).
    static func cloexecPipe(_ p: inout [Int32]) -> Bool {
        guard pipe(&p) == 0 else { return false }
        _ = fcntl(p[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(p[1], F_SETFD, FD_CLOEXEC)
        return true
    }

    /// Up to 6 bytes from `fd`, as many reads as it takes (a pipe delivers what has been written).
    static func readHead(_ fd: Int32) -> [UInt8] {
        var b = [UInt8](repeating: 0, count: 6)
        var got = 0
        while got < 6 {
            let n = b.withUnsafeMutableBytes { read(fd, $0.baseAddress! + got, 6 - got) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            got += n
        }
        return Array(b.prefix(got))
    }

    /// A thread writing `prefix`, then everything from `from`, into `to`, and closing `to`.
    static func startFeeder(prefix: [UInt8], from: Int32, to: Int32) -> pthread_t? {
        let job = Unmanaged.passRetained(FeederJob(prefix, from, to)).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { arg in
            let job = Unmanaged<FeederJob>.fromOpaque(arg!).takeRetainedValue()
            defer { close(job.to) }
            func writeAll(_ b: UnsafeRawBufferPointer) -> Bool {
                var off = 0
                while off < b.count {
                    let n = write(job.to, b.baseAddress! + off, b.count - off)
                    if n < 0 && errno == EINTR { continue }
                    // EPIPE: the reader stopped early (a signal); nothing more to copy.
                    if n <= 0 { return false }
                    off += n
                }
                return true
            }
            guard job.prefix.withUnsafeBytes(writeAll) else { return nil }
            var buffer = [UInt8](repeating: 0, count: 1 << 16)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(job.from, $0.baseAddress!, $0.count) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                guard buffer.withUnsafeBytes({ writeAll(UnsafeRawBufferPointer(rebasing: $0.prefix(n))) }) else { break }
            }
            return nil
        }, job)
        if rc != 0 { Unmanaged<AnyObject>.fromOpaque(job).release(); return nil }
        pthread_detach(thread)
        return thread
    }

    /// Why the decompressor failed (a corrupt or cut archive), if it did. At the end of the stream it is
    /// waited for; after a read error for 100 ms at most (`wait: false`): a decompressor still writing
    /// would never end while nobody reads, one that just closed its output is about to exit.
    func decompressorFailure(wait: Bool = true) -> String? {
        guard child > 0 else { return nil }
        var status: Int32 = 0
        var rc: pid_t
        var polls = 0
        repeat {
            rc = waitpid(child, &status, wait ? 0 : WNOHANG)
            if rc == 0 { polls += 1; usleep(5_000) }
        } while (rc < 0 && errno == EINTR) || (rc == 0 && polls < 20)
        guard rc == child else { return nil }
        child = -1
        let exited = status & 0x7F == 0
        let code = (status >> 8) & 0xFF
        if exited && code == 0 { return nil }
        return exited ? "\(compression!.tool) -dc exited with status \(code): the compressed data is damaged"
            : "\(compression!.tool) -dc ended by signal \(status & 0x7F)"
    }

    /// Called after libpcap closed the stream (stopped early, or a read error): nothing more of the
    /// decompressor's output is wanted, so it is killed outright (one blocked on its own input would not
    /// see the closed pipe, and zstd outlives SIGTERM there) and reaped.
    func reap() {
        guard child > 0 else { return }
        kill(child, SIGKILL)
        var status: Int32 = 0
        while waitpid(child, &status, 0) < 0 && errno == EINTR {}
        child = -1
    }
}

/// What the standard-input feeder thread copies.
private final class FeederJob {
    let prefix: [UInt8], from: Int32, to: Int32
    init(_ p: [UInt8], _ f: Int32, _ t: Int32) { prefix = p; from = f; to = t }
}

/// BPF filters checked without a capture: `check-config` compiles `capture.bpf` as `sensor run` will
/// (Ethernet, the configured snap length) on a dead handle.
public enum BPFFilter {
    /// libpcap's complaint about `filter`, or nil when it compiles.
    public static func problem(_ filter: String, linkType: Int32 = 1, snapLength: Int32 = 262_144) -> String? {
        guard let h = pcap_open_dead(linkType, snapLength) else { return "pcap_open_dead failed" }
        defer { pcap_close(h) }
        var program = bpf_program()
        guard pcap_compile(h, &program, filter, 1, PCAP_NETMASK_UNKNOWN) == 0 else { return String(cString: pcap_geterr(h)) }
        pcap_freecode(&program)
        return nil
    }
}
