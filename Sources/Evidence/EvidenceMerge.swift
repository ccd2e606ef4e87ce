import Events
import Foundation
import PacketCore

#if canImport(Glibc)
import Glibc
#endif

/// The end of a shared capture: its parts merged into the one evidence file, its custody entry and its
/// one outcome event.
extension EvidenceCoordinator {
    /// Merges the parts by timestamp into the evidence file, commits it to custody and emits the one
    /// outcome event, on the thread that closed the last part (with that thread's emitter).
    func merge(_ c: SharedCapture, emitter: EventEmitter, clock: Timestamp) {
        defer { for p in c.parts { close(p.fd) } }
        if let failure = c.failure {
            store.abandon(c.reservation)
            count { $0.failures &+= 1 }
            logger.error("evidence capture failed: no file, no custody entry", metadata: ["file": "\(c.reservation.fileName)", "error": "\(failure)"])
            return
        }
        if c.parts.allSatisfy({ $0.records == 0 }) {
            // Nothing in scope was left in any ring or arrived (e.g. an alert about old traffic at end of
            // input): an empty file is no evidence. Discarded, counted and reported, once per alert.
            store.release(c.reservation)
            count { $0.emptyDiscarded &+= 1 }
            for a in c.alerts { Self.emitRefusal(a, scope: c.scope, reason: "no_packets_in_scope", at: max(a.timestamp, clock), emitter: emitter) }
            return
        }
        let merged: Merged
        do {
            merged = try write(c)
        } catch {
            store.abandon(c.reservation)
            count { $0.failures &+= 1 }
            logger.error("evidence capture failed at merge: no custody entry, its partial (encrypted) file was removed",
                         metadata: ["file": "\(c.reservation.fileName)", "error": "\(error)"])
            return
        }
        // `commit` gives the slot back and removes the partial file itself when it fails.
        do {
            let r = c.reservation
            let record = try store.commit(r, fileBytes: merged.fileBytes, sha256: merged.fileHash) { w in
                w.field("file", r.fileName)
                w.field("sha256", merged.fileHash)
                w.field("plaintext_sha256", merged.plainHash)
                w.field("file_bytes", merged.fileBytes)
                w.field("plaintext_bytes", merged.plaintextBytes)
                w.field("format", "pcapng, age-encryption.org/v1 (X25519)")
                w.field("first_packet", merged.first)
                w.field("last_packet", merged.last)
                w.field("packets", merged.packets)
                w.beginObject("scope"); w.field("kind", c.scope.kind.rawValue); w.field("bpf", c.scope.bpf); w.endObject()
                w.field("lookback_from", c.lookbackFrom)
                w.field("capture_until", c.end)
                w.field("trigger", c.trigger.name)
                w.field("close_reason", c.reason.rawValue)
                w.field("workers", c.parts.filter { $0.records > 0 }.count)
                w.beginArray("alerts")
                for a in c.alerts {
                    w.beginObject()
                    w.field("id", a.id); w.field("rule_id", a.ruleID); w.field("rule_name", a.ruleName)
                    w.field("category", a.category.rawValue); w.field("severity", a.severity.name); w.field("timestamp", a.timestamp)
                    w.endObject()
                }
                w.endArray()
            }
            count { $0.capturesClosed &+= 1 }
            emitCreated(c, merged, record: record, emitter: emitter)
        } catch {
            count { $0.failures &+= 1 }
            logger.error("evidence capture failed at close: no custody entry, its partial (encrypted) file was removed",
                         metadata: ["file": "\(c.reservation.fileName)", "error": "\(error)"])
        }
    }

    struct Merged {
        var plainHash: String
        var fileHash: String
        var fileBytes: Int
        var plaintextBytes: UInt64
        var packets: UInt64
        var first: Timestamp
        var last: Timestamp
    }

    /// The k-way merge: each part is in its worker's order; ties go to the lower worker. The first packet
    /// carries the provenance as its comment, each extension note the first packet at or after its time.
    func write(_ c: SharedCapture) throws -> Merged {
        let conf = store.configuration
        var readers = c.parts.sorted { $0.worker < $1.worker }.map { EvidencePartReader($0, key: partKey) }
        var heads: [EvidencePartReader.Record?] = []
        for i in readers.indices { heads.append(try readers[i].next()) }
        let sink = try store.createFile(c.reservation)
        let age = try AgeStreamWriter(recipients: store.recipients, sink: sink)
        do {
            try c.sectionHeader.withUnsafeBytes { try age.write($0) }
            var pcap = Self.writer(conf, scope: c.scope, alert: c.alerts[0], alertLine: c.alertLine)
            var notes = lock.withLock { c.notes }.sorted { $0.at < $1.at }[...]
            var packets: UInt64 = 0
            var first = Timestamp.zero, last = Timestamp.zero
            while true {
                var best = -1
                for i in heads.indices {
                    guard let h = heads[i] else { continue }
                    if best < 0 || h.timestamp < heads[best]!.timestamp { best = i }
                }
                guard best >= 0 else { break }
                let r = heads[best]!
                heads[best] = try readers[best].next()
                let isLast = heads.allSatisfy { $0 == nil }
                var comment: [String] = packets == 0 ? [c.comments.joined(separator: "\n")] : []
                while let n = notes.first, isLast || n.at.nanoseconds <= r.timestamp {
                    comment.append(n.text)
                    notes.removeFirst()
                }
                let t = Timestamp(nanoseconds: r.timestamp)
                r.bytes.withUnsafeBytes { b in
                    pcap.packet(timestamp: t, wireLength: r.wireLength, captured: b, linkType: r.linkType,
                                comment: comment.isEmpty ? nil : comment.joined(separator: "\n"))
                }
                try pcap.drain { try age.write($0) }
                if packets == 0 { first = t }
                last = t
                packets &+= 1
            }
            let (plainHash, fileHash) = try age.finish()
            try sink.close()
            return Merged(plainHash: plainHash, fileHash: fileHash, fileBytes: Int(age.ciphertextBytes), plaintextBytes: age.plaintextBytes,
                          packets: packets, first: first, last: last)
        } catch {
            try? sink.close()
            throw error
        }
    }

    // MARK: Events

    func emitCreated(_ c: SharedCapture, _ m: Merged, record: EvidenceStore.ClosedRecord, emitter: EventEmitter) {
        let conf = store.configuration
        let first = c.alerts[0]
        emitter.emit(.evidenceCreated, at: m.last, severity: c.alerts.map(\.severity.rawValue).max() ?? 0, sourceIP: c.scope.a, eventFields: { w in
            w.field("outcome", "success")
            w.field("start", m.first)
            w.field("end", m.last)
            w.field("reason", c.reason.rawValue)
        }, body: { w in
            w.field("message", "Evidence for alert \(first.id) (\(first.ruleID)): \(m.packets) packets, \(c.scope.bpf), in \(c.reservation.fileName) sha256 \(m.fileHash)")
            w.beginObject("file")
            w.field("name", c.reservation.fileName)
            w.field("path", c.reservation.path)
            w.field("directory", store.directory)
            w.field("extension", "age")
            w.field("size", m.fileBytes)
            w.field("type", "file")
            w.field("mode", "0600")
            w.beginObject("hash"); w.field("sha256", m.fileHash); w.endObject()
            w.endObject()
            w.beginObject("related")
            w.beginArray("ip"); for ip in c.scope.addresses { w.element(ip) }; w.endArray()
            w.beginArray("hash"); w.element(m.fileHash); w.element(m.plainHash); w.endArray()
            w.endObject()
            w.beginObject("spanwatch"); w.beginObject("evidence")
            w.beginArray("alert_ids"); for a in c.alerts { w.element(a.id) }; w.endArray()
            w.beginArray("rule_ids"); for a in Set(c.alerts.map(\.ruleID)).sorted() { w.element(a) }; w.endArray()
            w.beginObject("scope"); w.field("kind", c.scope.kind.rawValue); w.field("bpf", c.scope.bpf); w.endObject()
            w.field("trigger", c.trigger.name)
            w.field("packets", m.packets)
            w.field("first_packet", m.first)
            w.field("last_packet", m.last)
            w.field("lookback_from", c.lookbackFrom)
            w.field("plaintext_sha256", m.plainHash)
            w.field("plaintext_bytes", m.plaintextBytes)
            w.field("format", "pcapng+age")
            w.field("authorization", conf.authorization ?? "")
            if let p = conf.purpose { w.field("purpose", p) }
            if let o = conf.operatorName { w.field("operator", o) }
            w.field("retention_until", record.retentionUntil)
            w.beginObject("custody")
            w.field("log", store.custodyLogPath)
            w.field("seq", record.sequence)
            w.field("entry_sha256", record.entryHash)
            w.endObject()
            w.endObject(); w.endObject()
        })
    }

    static func emitRefusal(_ alert: Alert, scope: CaptureScope, reason: String, at: Timestamp, emitter: EventEmitter) {
        emitter.emit(.evidenceRefused, at: at, severity: alert.severity.rawValue, sourceIP: scope.a, eventFields: { w in
            w.field("outcome", "failure")
            w.field("reason", reason)
        }, body: { w in
            w.field("message", "No evidence for alert \(alert.id): \(reason)")
            w.beginObject("related"); w.beginArray("ip"); for ip in scope.addresses { w.element(ip) }; w.endArray(); w.endObject()
            w.beginObject("spanwatch"); w.beginObject("evidence")
            w.beginArray("alert_ids"); w.element(alert.id); w.endArray()
            w.beginObject("scope"); w.field("kind", scope.kind.rawValue); w.field("bpf", scope.bpf); w.endObject()
            w.field("refused", reason)
            w.endObject(); w.endObject()
        })
    }
}
