import HostStage
import Outputs

/// Checkpoint counters of `sensor aggregate` (`spanwatch.stats.aggregate`).
struct CheckpointCounters {
    /// Partition checkpoints committed (with the group's offsets, in transactions).
    var written: UInt64 = 0
    /// Partition checkpoints not committed: the transaction aborted, or the state was too large.
    var failed: UInt64 = 0
    /// Partitions this member resumed from a checkpoint.
    var restored: UInt64 = 0
    /// Checkpoint records refused (not a checkpoint this build and these rules could have written):
    /// the partition is rebuilt from the log.
    var refused: UInt64 = 0
}

/// Writing checkpoints and resuming from them (docs/SCALE-OUT.md, Failover).
extension AggregatorService {
    /// Commits the checkpoints of `due` partitions and the group's offsets in one transaction. Alerts
    /// emitted so far are flushed first: what a checkpoint covers must not be lost with this process.
    func checkpoint(_ due: [HostFactPartitionMerge]) {
        guard let store = checkpoints, !due.isEmpty else { return }
        do { try emitter.flush() } catch {
            logger.error("output flush failed, checkpoint postponed", metadata: ["error": "\(error)"])
            return
        }
        var records: [(partition: Int, resumeOffset: Int64, value: [UInt8])] = []
        for m in due {
            let c = m.checkpoint()
            guard c.bytes.count <= PartitionCheckpoint.maxBytes else {
                checkpointCounters.failed &+= 1
                logger.warning("partition state too large to checkpoint", metadata: ["partition": "\(m.partition)", "bytes": "\(c.bytes.count)"])
                continue
            }
            records.append((c.partition, c.resumeOffset, c.bytes))
        }
        do {
            try store.commit(records, consumer: consumer)
            checkpointCounters.written &+= UInt64(records.count)
            logger.info("checkpoint committed", metadata: [
                "partitions": "\(records.map(\.partition).sorted())", "bytes": "\(records.reduce(0) { $0 + $1.value.count })",
            ])
        } catch {
            checkpointCounters.failed &+= UInt64(records.count)
            logger.error("\(error)")
            if case .fatal = error { checkpoints = nil }
        }
    }

    /// A merge for a partition new to this member: restored from its newest checkpoint, with the
    /// offset to read from; or fresh, from the first retained record, when there is none or it is
    /// refused (counted) or cannot be read.
    func restore(_ partition: Int) -> (HostFactPartitionMerge, Int64) {
        func fresh() -> HostFactPartitionMerge {
            HostFactPartitionMerge(partition: partition, detectors: detectors, emitter: emitter,
                                   ringBytes: options.producerBufferBytes, lateness: options.lateness)
        }
        guard let store = checkpoints else { return (fresh(), KafkaRecordConsumer.beginning) }
        let bytes: [UInt8]
        do {
            guard let b = try store.latest(partition) else { return (fresh(), KafkaRecordConsumer.beginning) }
            bytes = b
        } catch {
            logger.error("checkpoint not read, partition rebuilt from the log", metadata: ["partition": "\(partition)", "error": "\(error)"])
            return (fresh(), KafkaRecordConsumer.beginning)
        }
        let m = fresh()
        do {
            let offset = try m.restore(bytes, now: .now)
            checkpointCounters.restored &+= 1
            logger.info("partition restored from its checkpoint", metadata: ["partition": "\(partition)", "offset": "\(offset)"])
            return (m, offset)
        } catch {
            checkpointCounters.refused &+= 1
            logger.warning("checkpoint refused, partition rebuilt from the log", metadata: ["partition": "\(partition)", "error": "\(error)"])
            return (fresh(), KafkaRecordConsumer.beginning)
        }
    }
}
