import CRdKafka
import Foundation

/// A member of a Kafka consumer group on one topic, for `sensor aggregate`: librdkafka's high-level
/// consumer (group membership, partition assignment) with the assignment's offsets set by the caller.
///
/// The caller chooses where each assigned partition starts (`onAssign` returns the offsets: a partition
/// it keeps state for resumes where it was, a new one from its checkpoint or the beginning) and is told
/// when partitions go (`onRevoke`). The consumer commits nothing itself: the group's offsets are
/// committed with each checkpoint, in its transaction (`KafkaCheckpointStore`); a new owner resumes from
/// the checkpoint's offset (docs/SCALE-OUT.md). Not thread-safe: one thread polls.
public final class KafkaRecordConsumer {
    public let topic: String
    /// Set once in `init` (after `self` exists, for the callbacks' opaque).
    private(set) var rk: OpaquePointer!
    /// Called from `poll` (the group's rebalance): new partitions, returning each one's start offset
    /// (`KafkaRecordConsumer.beginning` for the first retained record).
    public var onAssign: ([Int]) -> [Int: Int64] = { _ in [:] }
    public var onRevoke: ([Int]) -> Void = { _ in }
    /// The last error librdkafka reported (for the log).
    public private(set) var lastError: String?
    /// `RD_KAFKA_OFFSET_BEGINNING`.
    public static let beginning: Int64 = -2

    /// Joins `group` on `options`' topic (`options.properties` are passed to librdkafka, after the defaults).
    public init(options: KafkaOutputOptions, group: String) throws(OutputError) {
        topic = options.topic
        guard let conf = rd_kafka_conf_new() else { throw .open(spec: options.description, reason: "rd_kafka_conf_new failed") }
        var errbuf = [CChar](repeating: 0, count: 512)
        var settings: [(String, String)] = [
            ("bootstrap.servers", options.brokers), ("group.id", group), ("client.id", "sensor-aggregate-\(ProcessInfo.processInfo.hostName)"),
            ("enable.auto.commit", "false"), ("enable.auto.offset.store", "false"), ("auto.offset.reset", "earliest"),
            ("log_level", "3"), ("partition.assignment.strategy", "range"),
        ]
        // The rebalance callback assigns whole sets (eager protocol): an incremental one would need other calls.
        if let p = options.properties.first(where: { $0.name == "partition.assignment.strategy" && $0.value.contains("cooperative") }) {
            throw .badSpec(options.description, reason: "\(p.name)=\(p.value): sensor aggregate uses an eager strategy (range or roundrobin)")
        }
        settings += options.properties.map { ($0.name, $0.value) }
        for (k, v) in settings where rd_kafka_conf_set(conf, k, v, &errbuf, errbuf.count) != RD_KAFKA_CONF_OK {
            rd_kafka_conf_destroy(conf)
            throw .open(spec: options.description, reason: "librdkafka property \(k)=\(v): \(String(cString: errbuf))")
        }
        rd_kafka_conf_set_rebalance_cb(conf) { rk, err, partitions, opaque in
            guard let rk, let opaque else { return }
            Unmanaged<KafkaRecordConsumer>.fromOpaque(opaque).takeUnretainedValue().rebalance(rk, err, partitions)
        }
        rd_kafka_conf_set_error_cb(conf) { _, err, reason, opaque in
            guard let opaque else { return }
            Unmanaged<KafkaRecordConsumer>.fromOpaque(opaque).takeUnretainedValue().lastError = reason.map { String(cString: $0) } ?? "error \(err)"
        }
        // The opaque is set before the handle exists; callbacks run only inside `poll`, after init.
        let box = Unmanaged<KafkaRecordConsumer>.passUnretained(self).toOpaque()
        rd_kafka_conf_set_opaque(conf, box)
        guard let handle = rd_kafka_new(RD_KAFKA_CONSUMER, conf, &errbuf, errbuf.count) else {
            rd_kafka_conf_destroy(conf)
            throw .open(spec: options.description, reason: String(cString: errbuf))
        }
        rk = handle
        rd_kafka_poll_set_consumer(rk)
        let list = rd_kafka_topic_partition_list_new(1)
        rd_kafka_topic_partition_list_add(list, options.topic, -1)  // RD_KAFKA_PARTITION_UA
        let err = rd_kafka_subscribe(rk, list)
        rd_kafka_topic_partition_list_destroy(list)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR {
            rd_kafka_destroy(rk)
            rk = nil
            throw .open(spec: options.description, reason: "subscribe: \(String(cString: rd_kafka_err2str(err)))")
        }
    }

    deinit { if let rk { rd_kafka_destroy(rk) } }

    func rebalance(_ rk: OpaquePointer, _ err: rd_kafka_resp_err_t, _ partitions: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?) {
        var ids: [Int] = []
        if let partitions {
            for i in 0..<Int(partitions.pointee.cnt) { ids.append(Int(partitions.pointee.elems[i].partition)) }
        }
        if err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS, let partitions {
            let offsets = onAssign(ids)
            for i in 0..<Int(partitions.pointee.cnt) {
                partitions.pointee.elems[i].offset = offsets[Int(partitions.pointee.elems[i].partition)] ?? Self.beginning
            }
            _ = rd_kafka_assign(rk, partitions)
        } else {
            onRevoke(ids)
            _ = rd_kafka_assign(rk, nil)
        }
    }

    /// A record, or an error/end-of-partition event, or nothing within `timeoutMs`: records go to
    /// `record(partition, offset, value)`; the value is valid only during the call. Returns whether a
    /// record came.
    @discardableResult
    public func poll(timeoutMs: Int32, _ record: (Int, Int64, UnsafeRawBufferPointer) -> Void) -> Bool {
        guard let m = rd_kafka_consumer_poll(rk, timeoutMs) else { return false }
        defer { rd_kafka_message_destroy(m) }
        let msg = m.pointee
        if msg.err != RD_KAFKA_RESP_ERR_NO_ERROR {
            if msg.err != RD_KAFKA_RESP_ERR__PARTITION_EOF { lastError = String(cString: rd_kafka_err2str(msg.err)) }
            return false
        }
        record(Int(msg.partition), msg.offset, UnsafeRawBufferPointer(start: msg.payload, count: msg.len))
        return true
    }

    /// The topic's partition count (an error when the cluster cannot be reached in `timeout` or the topic does not exist).
    public func topicPartitions(timeout: Double) throws(OutputError) -> Int {
        guard let rkt = rd_kafka_topic_new(rk, topic, nil) else { throw .open(spec: topic, reason: "topic handle") }
        defer { rd_kafka_topic_destroy(rkt) }
        return try KafkaSink.partitionCount(rk: rk, rkt: rkt, topic: topic, spec: topic, timeout: timeout)
    }

    /// Leaves the group (its partitions go to the other members at once).
    public func close() {
        _ = rd_kafka_consumer_close(rk)
    }
}
