import CRdKafka
import Foundation

/// `sensor aggregate`'s partition checkpoints on a compacted Kafka topic (docs/SCALE-OUT.md, Failover).
///
/// Writing: a transactional producer puts each checkpoint record (key `GROUP/PARTITION`, to the
/// checkpoint topic's partition `PARTITION mod its partition count`) and the consumer group's offsets
/// (each partition's resume offset, `send_offsets_to_transaction` with the group's metadata) in one
/// transaction, so the group's committed position and the newest checkpoint move together, and a
/// member that lost the partition (fenced by the group generation) cannot commit either.
///
/// Reading: a plain consumer with `isolation.level=read_committed` reads the checkpoint topic's
/// partition from its start (compaction keeps one record per key there) to its end, and keeps the
/// newest value under the key. Not thread-safe: the aggregator's thread uses it.
public final class KafkaCheckpointStore {
    public let topic: String
    public let group: String
    let spec: String
    let producer: OpaquePointer
    let reader: OpaquePointer
    let producerTopic: OpaquePointer
    public let partitions: Int
    let timeoutMs: Int32

    /// Why a transaction did not commit.
    public enum CommitError: Error, CustomStringConvertible {
        /// Aborted (this batch is lost; the next checkpoint goes in a new transaction).
        case aborted(String)
        /// The producer cannot go on (fenced by a newer member, or a fatal error): no more checkpoints.
        case fatal(String)
        public var description: String {
            switch self {
            case .aborted(let s): return "checkpoint transaction aborted: \(s)"
            case .fatal(let s): return "checkpoint producer failed: \(s)"
            }
        }
    }

    /// Opens both clients, reads the topic's partition count and initialises transactions (an error
    /// when the cluster or the topic cannot be reached within `options.flushTimeout`).
    public init(options: KafkaOutputOptions, topic: String, group: String, maxRecordBytes: Int) throws(OutputError) {
        self.topic = topic
        self.group = group
        spec = "kafka://\(options.brokers)/\(topic)"
        timeoutMs = Int32(max(1, options.flushTimeout) * 1000)
        let tid = "sensor-aggregate-\(group)-\(ProcessInfo.processInfo.hostName)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let p = try Self.client(RD_KAFKA_PRODUCER, spec: spec, [
            ("bootstrap.servers", options.brokers), ("transactional.id", tid), ("enable.idempotence", "true"), ("acks", "all"),
            ("compression.type", "lz4"), ("message.max.bytes", "\(maxRecordBytes + 4096)"),
            ("transaction.timeout.ms", "60000"), ("allow.auto.create.topics", "false"), ("log_level", "3"),
        ] + options.properties.filter { !Self.consumerOnly.contains($0.name) }.map { ($0.name, $0.value) })
        guard let r = try? Self.client(RD_KAFKA_CONSUMER, spec: spec, [
            ("bootstrap.servers", options.brokers), ("group.id", "\(group)-checkpoint-reader"), ("enable.auto.commit", "false"),
            ("isolation.level", "read_committed"), ("enable.partition.eof", "true"), ("auto.offset.reset", "earliest"),
            ("fetch.message.max.bytes", "\(maxRecordBytes + 4096)"), ("fetch.max.bytes", "\(maxRecordBytes + 4096)"),
            ("receive.message.max.bytes", "\(maxRecordBytes + (1 << 20))"), ("log_level", "3"),
        ]) else {
            rd_kafka_destroy(p)
            throw .open(spec: spec, reason: "checkpoint reader")
        }
        producer = p
        reader = r
        producerTopic = rd_kafka_topic_new(p, topic, nil)
        do throws(OutputError) {
            partitions = try KafkaSink.partitionCount(rk: p, rkt: producerTopic, topic: topic, spec: spec, timeout: Double(timeoutMs) / 1000)
            if let error = rd_kafka_init_transactions(p, timeoutMs) {
                defer { rd_kafka_error_destroy(error) }
                throw OutputError.open(spec: spec, reason: "init_transactions: \(String(cString: rd_kafka_error_string(error)))")
            }
        } catch {
            rd_kafka_topic_destroy(producerTopic)
            rd_kafka_destroy(p)
            rd_kafka_destroy(r)
            throw error
        }
    }

    deinit {
        rd_kafka_topic_destroy(producerTopic)
        rd_kafka_destroy(producer)
        _ = rd_kafka_consumer_close(reader)
        rd_kafka_destroy(reader)
    }

    /// Properties given for the host-fact consumer that a producer refuses.
    static let consumerOnly: Set<String> = ["session.timeout.ms", "heartbeat.interval.ms", "partition.assignment.strategy",
                                            "max.poll.interval.ms", "auto.offset.reset", "isolation.level", "group.instance.id"]

    static func client(_ type: rd_kafka_type_t, spec: String, _ settings: [(String, String)]) throws(OutputError) -> OpaquePointer {
        guard let conf = rd_kafka_conf_new() else { throw .open(spec: spec, reason: "rd_kafka_conf_new failed") }
        var errbuf = [CChar](repeating: 0, count: 512)
        for (k, v) in settings where rd_kafka_conf_set(conf, k, v, &errbuf, errbuf.count) != RD_KAFKA_CONF_OK {
            rd_kafka_conf_destroy(conf)
            throw .open(spec: spec, reason: "librdkafka property \(k)=\(v): \(String(cString: errbuf))")
        }
        guard let rk = rd_kafka_new(type, conf, &errbuf, errbuf.count) else {
            rd_kafka_conf_destroy(conf)
            throw .open(spec: spec, reason: String(cString: errbuf))
        }
        return rk
    }

    public func key(_ partition: Int) -> String { "\(group)/\(partition)" }

    /// One transaction: every checkpoint record, and the group's offsets (`resumeOffset` per partition of
    /// `consumer`'s topic). On an abortable error the transaction is aborted and `.aborted` thrown.
    public func commit(_ records: [(partition: Int, resumeOffset: Int64, value: [UInt8])], consumer: KafkaRecordConsumer) throws(CommitError) {
        guard !records.isEmpty else { return }
        if let e = rd_kafka_begin_transaction(producer) { throw fail(e) }
        for r in records {
            let k = Array(key(r.partition).utf8)
            let err = r.value.withUnsafeBytes { v in
                k.withUnsafeBytes { kb in
                    rd_kafka_produce(producerTopic, Int32(r.partition % partitions), RD_KAFKA_MSG_F_COPY,
                                     UnsafeMutableRawPointer(mutating: v.baseAddress), v.count, kb.baseAddress, kb.count, nil)
                }
            }
            if err != 0 {
                let reason = String(cString: rd_kafka_err2str(rd_kafka_last_error()))
                if let e = rd_kafka_abort_transaction(producer, timeoutMs) { throw fail(e) }
                throw .aborted("produce: \(reason)")
            }
        }
        let offsets = rd_kafka_topic_partition_list_new(Int32(records.count))!
        defer { rd_kafka_topic_partition_list_destroy(offsets) }
        for r in records { rd_kafka_topic_partition_list_add(offsets, consumer.topic, Int32(r.partition)).pointee.offset = r.resumeOffset }
        guard let metadata = rd_kafka_consumer_group_metadata(consumer.rk) else { throw .fatal("no consumer group metadata") }
        defer { rd_kafka_consumer_group_metadata_destroy(metadata) }
        if let e = rd_kafka_send_offsets_to_transaction(producer, offsets, metadata, timeoutMs) { throw fail(e) }
        if let e = rd_kafka_commit_transaction(producer, timeoutMs) { throw fail(e) }
    }

    /// Aborts the open transaction when the error allows it; the error for the caller.
    func fail(_ e: OpaquePointer) -> CommitError {
        defer { rd_kafka_error_destroy(e) }
        let text = String(cString: rd_kafka_error_string(e))
        if rd_kafka_error_txn_requires_abort(e) != 0 {
            if let a = rd_kafka_abort_transaction(producer, timeoutMs) {
                defer { rd_kafka_error_destroy(a) }
                return .fatal("\(text); abort: \(String(cString: rd_kafka_error_string(a)))")
            }
            return .aborted(text)
        }
        if rd_kafka_error_is_fatal(e) != 0 { return .fatal(text) }
        return .aborted(text)
    }

    /// The newest committed checkpoint of `partition` (nil: none), reading its checkpoint partition to
    /// the end.
    public func latest(_ partition: Int) throws(OutputError) -> [UInt8]? {
        let cp = Int32(partition % partitions)
        var low: Int64 = 0, high: Int64 = 0
        let err = rd_kafka_query_watermark_offsets(reader, topic, cp, &low, &high, timeoutMs)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else {
            throw .open(spec: spec, reason: "checkpoint partition \(cp): \(String(cString: rd_kafka_err2str(err)))")
        }
        guard high > low else { return nil }
        let list = rd_kafka_topic_partition_list_new(1)!
        defer { rd_kafka_topic_partition_list_destroy(list) }
        rd_kafka_topic_partition_list_add(list, topic, cp).pointee.offset = low
        _ = rd_kafka_assign(reader, list)
        defer { _ = rd_kafka_assign(reader, nil) }
        let wanted = Array(key(partition).utf8)
        var newest: [UInt8]?
        let deadline = ContinuousClock.now + .milliseconds(Int64(timeoutMs))
        while ContinuousClock.now < deadline {
            guard let m = rd_kafka_consumer_poll(reader, 100) else { continue }
            defer { rd_kafka_message_destroy(m) }
            let msg = m.pointee
            if msg.err == RD_KAFKA_RESP_ERR__PARTITION_EOF { return newest }
            guard msg.err == RD_KAFKA_RESP_ERR_NO_ERROR else { continue }
            let k = msg.key.map { Array(UnsafeRawBufferPointer(start: $0, count: msg.key_len)) } ?? []
            if k == wanted {
                // A tombstone (no value) deletes the key.
                newest = msg.len > 0 ? Array(UnsafeRawBufferPointer(start: msg.payload, count: msg.len)) : nil
            }
            if msg.offset >= high - 1 { return newest }
        }
        throw .open(spec: spec, reason: "checkpoint partition \(cp): not read to its end within the timeout")
    }
}
