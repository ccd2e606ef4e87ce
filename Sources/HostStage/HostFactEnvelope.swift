import PacketCore

/// The wire form of one host-fact record between processes (`--host-facts kafka://…` to
/// `sensor aggregate`): a header naming the producer and its watermark, then (facts) the
/// `HostFactCodec` record unchanged. Little-endian:
///
///     0  "HF"             magic
///     2  UInt8            schema version (`HostFactEnvelope.version`)
///     3  UInt8            type: 0 fact, 1 watermark, 2 end of the producer's stream
///     4  Int64            producer watermark (ns): no later record of this producer is stamped earlier
///     12 UInt64           session: random per process start (a restarted sensor is a new producer)
///     20 UInt16           worker index
///     22 UInt8            length of the sensor name, then its bytes (at most 255)
///     …  fact record      (type 0 only)
///
/// Decoding is Optional-returning: the bytes come off a shared topic anyone with access can write to.
public enum HostFactEnvelope {
    public static let version: UInt8 = 1
    public enum RecordType: UInt8, Sendable {
        case fact = 0
        case watermark = 1
        case end = 2
    }
    static let fixedSize = 23
    /// The largest header: fixed part and a 255-byte sensor name.
    public static let maxHeader = fixedSize + 255

    /// One producer: a worker of one sensor process.
    public struct Producer: Hashable, Sendable {
        public var sensor: String
        public var session: UInt64
        public var worker: UInt16
        public init(sensor: String, session: UInt64, worker: UInt16) {
            self.sensor = sensor
            self.session = session
            self.worker = worker
        }
    }

    /// A decoded envelope; `record` points into the bytes given to `decode`.
    public struct Decoded {
        public var type: RecordType
        public var watermark: Int64
        public var producer: Producer
        public var record: UnsafeRawBufferPointer
    }

    /// Why a record was refused (counted per reason by the consumer).
    public enum Refusal: Error, Sendable {
        case garbage
        case unknownVersion(UInt8)
    }

    /// Writes the header at `base` (at least `maxHeader` bytes); returns its length. The sensor name is
    /// cut to 255 bytes.
    public static func writeHeader(_ base: UnsafeMutableRawPointer, type: RecordType, watermark: Int64,
                                   producer: Producer) -> Int {
        base.storeBytes(of: 0x48, toByteOffset: 0, as: UInt8.self)
        base.storeBytes(of: 0x46, toByteOffset: 1, as: UInt8.self)
        base.storeBytes(of: version, toByteOffset: 2, as: UInt8.self)
        base.storeBytes(of: type.rawValue, toByteOffset: 3, as: UInt8.self)
        base.storeBytes(of: UInt64(bitPattern: watermark).littleEndian, toByteOffset: 4, as: UInt64.self)
        base.storeBytes(of: producer.session.littleEndian, toByteOffset: 12, as: UInt64.self)
        base.storeBytes(of: producer.worker.littleEndian, toByteOffset: 20, as: UInt16.self)
        var name = producer.sensor
        let n = name.withUTF8 { u in
            let n = min(u.count, 255)
            if n > 0 { (base + fixedSize).copyMemory(from: u.baseAddress!, byteCount: n) }
            return n
        }
        base.storeBytes(of: UInt8(n), toByteOffset: 22, as: UInt8.self)
        return fixedSize + n
    }

    public static func headerLength(_ producer: Producer) -> Int { fixedSize + min(producer.sensor.utf8.count, 255) }

    public static func decode(_ bytes: UnsafeRawBufferPointer) -> Result<Decoded, Refusal> {
        var c = ByteCursor(bytes)
        guard let m0 = c.u8(), let m1 = c.u8(), m0 == 0x48, m1 == 0x46, let v = c.u8() else { return .failure(.garbage) }
        guard v == version else { return .failure(.unknownVersion(v)) }
        guard let t = c.u8(), let type = RecordType(rawValue: t), let mark = c.u64le(), let session = c.u64le(),
              let worker = c.u16le(), let n = c.u8(), let name = c.take(Int(n)) else { return .failure(.garbage) }
        let record = c.take(c.remaining) ?? UnsafeRawBufferPointer(start: nil, count: 0)
        // A fact carries a record at least as long as its stamp and kind; the others carry none.
        guard (type == .fact) == (record.count >= 9) else { return .failure(.garbage) }
        return .success(Decoded(type: type, watermark: Int64(bitPattern: mark),
                                producer: Producer(sensor: String(decoding: name, as: UTF8.self), session: session, worker: worker),
                                record: record))
    }
}

/// Where a worker's host facts go when they leave the process (`HostFactPublisher.Route.transport`):
/// one partition per host shard, so partition = `HostFactPublisher.shard(of: source host, count:)`.
public protocol HostFactTransport: AnyObject {
    /// Partitions of the topic (the number of host shards).
    var partitions: Int { get }
    /// Sends one envelope (header and record in `bytes`) to `partition`, keyed by `host` when it has one.
    func send(_ bytes: UnsafeRawBufferPointer, partition: Int, host: IPAddress?)
}
