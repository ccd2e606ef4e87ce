import Events
import Foundation
import HostStage
import Outputs
import PacketCore

/// `--host-facts kafka://BROKERS/TOPIC` on `run` and `replay`: every worker's host facts leave the
/// process for `sensor aggregate`, one Kafka partition per host shard (docs/SCALE-OUT.md).
///
/// One idempotent producer per process (`KafkaSink` with its disk spool), shared by the workers; each
/// worker is its own producer stream (`HostFactEnvelope.Producer`: sensor name, a random session per
/// start, worker index), whose records librdkafka keeps in order per partition.
public final class HostFactsOutput: @unchecked Sendable {
    public let sink: KafkaSink
    public let partitions: Int
    let sensor: String
    let session: UInt64

    /// Opens the producer and reads the topic's partition count (waiting up to the options' flush
    /// timeout): a missing topic or unreachable cluster at start is an error, later outages spool.
    public init(options: KafkaOutputOptions, sensorName: String?) throws {
        var o = options
        o.key = .route
        // The partition count is the shard count: a topic the broker would create with its defaults is refused.
        o.properties.insert(KafkaOutputOptions.KafkaProperty("allow.auto.create.topics", "false"), at: 0)
        sink = try KafkaSink(options: o)
        do {
            partitions = try sink.partitionCount(timeout: max(1, o.flushTimeout))
        } catch {
            try? sink.close()
            throw error
        }
        sensor = sensorName ?? ObserverInfo.systemHostname()
        session = UInt64.random(in: 1...UInt64.max)
    }

    /// Worker `index`'s route.
    public func route(worker index: Int) -> HostFactPublisher.Route {
        .transport(KafkaHostFactTransport(output: self),
                   HostFactEnvelope.Producer(sensor: sensor, session: session, worker: UInt16(clamping: index)))
    }
}

/// One worker's side of `HostFactsOutput`: builds the key (route, then the host's address) in its own
/// buffer and hands the record to the shared producer.
final class KafkaHostFactTransport: HostFactTransport {
    let output: HostFactsOutput
    let key = UnsafeMutableRawPointer.allocate(byteCount: 32, alignment: 8)
    var partitions: Int { output.partitions }

    init(output: HostFactsOutput) { self.output = output }
    deinit { key.deallocate() }

    /// Key: the big-endian route (the host's shard hash, whose remainder is `partition`, or the
    /// partition itself for records to every partition), then the host (16 bytes, 1 byte IPv6 flag).
    func send(_ bytes: UnsafeRawBufferPointer, partition: Int, host: IPAddress?) {
        let route = host.map(HostFactPublisher.shardHash(of:)) ?? UInt64(partition)
        key.storeBytes(of: route.bigEndian, toByteOffset: 0, as: UInt64.self)
        var n = 8
        if let host {
            key.storeBytes(of: host.high.bigEndian, toByteOffset: 8, as: UInt64.self)
            key.storeBytes(of: host.low.bigEndian, toByteOffset: 16, as: UInt64.self)
            key.storeBytes(of: host.isIPv6 ? 1 : 0, toByteOffset: 24, as: UInt8.self)
            n = 25
        }
        output.sink.produce(bytes, key: UnsafeRawBufferPointer(start: key, count: n))
    }
}
