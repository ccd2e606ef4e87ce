import Crypto
import Events
import PacketCore

/// Which digests files get (config `files.hashes`, `--file-hashes`). SHA-256 alone by default: each
/// digest costs about as much CPU again per byte (MD5 the most: it has no hardware instructions).
public struct FileHashAlgorithms: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let md5 = FileHashAlgorithms(rawValue: 1)
    public static let sha1 = FileHashAlgorithms(rawValue: 2)
    public static let sha256 = FileHashAlgorithms(rawValue: 4)
    public static let all: FileHashAlgorithms = [.md5, .sha1, .sha256]
    /// Each algorithm with its name in config, flags and `file.hash.*`, in the order events list them.
    public static let named: [(name: String, algorithm: FileHashAlgorithms)] = [("md5", .md5), ("sha1", .sha1), ("sha256", .sha256)]

    /// From names (`md5`, `sha1`, `sha256`, `sha-1`, `sha-256`, any case); nil when one is unknown or none is given.
    public init?(names: [String]) {
        var set: FileHashAlgorithms = []
        for n in names {
            let key = String(n.lowercased().filter { $0 != "-" })
            guard let a = Self.named.first(where: { $0.name == key }) else { return nil }
            set.insert(a.algorithm)
        }
        guard !set.isEmpty else { return nil }
        self = set
    }

    /// What a valid list is, for config and flag errors.
    public static let usage = "expected one or more of md5, sha1, sha256 (turn hashing off with files.enabled: false)"

    public var names: [String] { Self.named.filter { contains($0.algorithm) }.map(\.name) }
}

/// The streaming digests of one transferred file: those of `FileHashAlgorithms` asked for (swift-crypto),
/// updated in place as the bytes pass, plus the first bytes for the content type. No copy of the file is kept.
///
/// Files are hashed as transferred: for HTTP after removing chunk framing but before any
/// Content-Encoding is undone (a gzip-encoded body hashes as the gzip bytes), for SMB2/3 from the data
/// of READ/WRITE at their file offsets, in order.
public struct FileHasher {
    /// Only the digests asked for exist: each is a heap-allocated context, made per file.
    var md5: Insecure.MD5?
    var sha1: Insecure.SHA1?
    var sha256: SHA256?
    let algorithms: FileHashAlgorithms
    /// Bytes hashed.
    public private(set) var size: Int = 0
    /// The first bytes, for `FileMagic` (fixed size: no allocation).
    var magic: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
    /// True when bytes of the file were not seen (a capture gap, an SMB read out of order) or a cap
    /// stopped hashing: the digests are then of what was seen, not of the file.
    public internal(set) var incomplete = false

    public static let magicBytes = 32

    public init(algorithms: FileHashAlgorithms) {
        self.algorithms = algorithms
        if algorithms.contains(.md5) { md5 = Insecure.MD5() }
        if algorithms.contains(.sha1) { sha1 = Insecure.SHA1() }
        if algorithms.contains(.sha256) { sha256 = SHA256() }
    }

    public mutating func update(_ data: UnsafeRawBufferPointer) {
        guard !data.isEmpty else { return }
        if size < Self.magicBytes {
            let n = min(Self.magicBytes - size, data.count)
            withUnsafeMutableBytes(of: &magic) { m in
                m.baseAddress!.advanced(by: size).copyMemory(from: data.baseAddress!, byteCount: n)
            }
        }
        md5?.update(bufferPointer: data)
        sha1?.update(bufferPointer: data)
        sha256?.update(bufferPointer: data)
        size &+= data.count
    }

    /// The finished file: hex digests (lower case; nil for those not asked for) and the content type its first bytes show.
    public func finish() -> FileDigests {
        var m = magic
        let mime = withUnsafeBytes(of: &m) { FileMagic.mimeType(UnsafeRawBufferPointer(rebasing: $0[..<min(size, Self.magicBytes)])) }
        return FileDigests(md5: md5.map { Digest.hex($0.finalize()) },
                           sha1: sha1.map { Digest.hex($0.finalize()) },
                           sha256: sha256.map { Digest.hex($0.finalize()) },
                           size: size, mimeType: mime, incomplete: incomplete)
    }
}

/// What a `FileHasher` yields at the end of a file.
public struct FileDigests: Sendable, Equatable {
    public var md5: String?
    public var sha1: String?
    public var sha256: String?
    public var size: Int
    public var mimeType: StaticString?
    public var incomplete: Bool

    public static func == (a: FileDigests, b: FileDigests) -> Bool {
        a.md5 == b.md5 && a.sha1 == b.sha1 && a.sha256 == b.sha256 && a.size == b.size && a.incomplete == b.incomplete
            && a.mimeType.map { "\($0)" } == b.mimeType.map { "\($0)" }
    }
}

/// Bounds on file hashing (config `files:`), per worker.
public struct FileConfiguration: Sendable, Equatable {
    /// Hash files and write `spanwatch.file` events at all.
    public var enabled = true
    /// The digests computed.
    public var hashes: FileHashAlgorithms = .sha256
    /// Bytes hashed per flow (all its files together); past it the file in progress is reported
    /// incomplete and the flow's later files are not hashed. Counted (`per_flow_cap`).
    public var maxBytesPerFlow = 64 << 20
    /// Bytes hashed per second of packet time by one worker across all its flows: bounds the CPU that
    /// bulk transfers can take from detection. Files cut by it are reported incomplete (`global_cap`).
    public var maxBytesPerSecond = 256 << 20
    public init() {}
}

/// Counters of file hashing (`spanwatch.stats.files`).
public struct FileCounters: Sendable, Equatable {
    public var files: UInt64 = 0
    public var incomplete: UInt64 = 0
    public var bytesHashed: UInt64 = 0
    public var perFlowCap: UInt64 = 0
    public var globalCap: UInt64 = 0
    /// SMB file data that arrived ahead of a hole and was held until it filled (parts, not bytes).
    public var heldChunks: UInt64 = 0
    /// Holes in SMB file data given up on because holding what followed would pass its bounds.
    public var holesGivenUp: UInt64 = 0
    public init() {}
}

/// One worker's file hashing, shared by the analysers that hash files (HTTP, SMB): the bounds, the
/// counters, and where `spanwatch.file` events go. Hangs off the worker's `StreamReassembler`.
public final class FileHashing {
    public let configuration: FileConfiguration
    public internal(set) var counters = FileCounters()
    /// Where `spanwatch.file` events and file-hash facts go (nil: counted only).
    let emitter: EventEmitter?
    /// Bytes hashed in the current second of packet time.
    var secondBytes = 0
    var second: Int64 = 0

    public init(configuration: FileConfiguration = FileConfiguration(), emitter: EventEmitter?) {
        self.configuration = configuration
        self.emitter = emitter
    }

    /// A finished file: counted, written as a `spanwatch.file` event, offered to file-hash indicators.
    func report(_ d: FileDigests, source: FileSource, upload: Bool, flow: FlowRecord, at time: Timestamp,
                fileFields: (inout JSONWriter) -> Void = { _ in }, fields: (inout JSONWriter) -> Void = { _ in },
                sensorFields: (inout JSONWriter) -> Void = { _ in }) {
        counters.files &+= 1
        if d.incomplete { counters.incomplete &+= 1 }
        emitter?.emitFile(d, source: source, upload: upload, flow: flow, at: time, fileFields: fileFields, fields: fields, sensorFields: sensorFields)
    }

    /// How many of `count` bytes a flow that already hashed `flowBytes` may hash now; counts a cap that bites.
    func allowance(_ count: Int, flowBytes: Int) -> Int {
        let flowLeft = configuration.maxBytesPerFlow - flowBytes
        let globalLeft = configuration.maxBytesPerSecond - secondBytes
        if count <= flowLeft && count <= globalLeft { return count }
        if flowLeft <= globalLeft { counters.perFlowCap &+= 1 } else { counters.globalCap &+= 1 }
        return max(0, min(flowLeft, globalLeft))
    }

    /// Feeds `data` to `hasher` within the caps; false when a cap cut it (the file is then incomplete).
    func hash(_ data: UnsafeRawBufferPointer, into hasher: inout FileHasher, flowBytes: inout Int, at time: Timestamp) -> Bool {
        let s = time.nanoseconds / 1_000_000_000
        if s != second { second = s; secondBytes = 0 }
        let n = allowance(data.count, flowBytes: flowBytes)
        if n > 0 {
            hasher.update(UnsafeRawBufferPointer(rebasing: data[..<n]))
            flowBytes &+= n
            secondBytes &+= n
            counters.bytesHashed &+= UInt64(n)
        }
        if n < data.count { hasher.incomplete = true; return false }
        return true
    }

    /// `spanwatch.stats.files`.
    public func writeStatistics(into w: inout JSONWriter) {
        w.beginObject("files")
        w.field("files", counters.files)
        w.field("incomplete", counters.incomplete)
        w.field("bytes_hashed", counters.bytesHashed)
        w.field("per_flow_cap", counters.perFlowCap)
        w.field("global_cap", counters.globalCap)
        w.field("held_chunks", counters.heldChunks)
        w.field("holes_given_up", counters.holesGivenUp)
        w.endObject()
    }
}
