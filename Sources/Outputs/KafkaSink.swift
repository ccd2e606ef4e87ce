import CRdKafka
import Events
import Foundation
import Logging
import PacketCore
import Synchronization

/// How a Kafka message key is chosen: it decides partition affinity.
public enum KafkaKey: String, Sendable, Equatable {
    /// `network.community_id`: every event of one flow lands in one partition, in order.
    case communityID = "community_id"
    /// `source.ip`: everything one host did lands in one partition (per-host correlation downstream).
    case sourceIP = "source_ip"
    /// No key: librdkafka spreads messages over partitions.
    case none
    /// Records the caller keys itself (`KafkaSink.produce`): the key's first 8 bytes, big-endian, are a
    /// route and the partition is route mod partitions (host facts: a partition per host shard, so the
    /// spool re-sends each record to the partition it was meant for).
    case route
}

/// `kafka://HOST:PORT[,HOST:PORT]/TOPIC?…`.
///
/// The topic may contain `{dataset}` for a topic per `event.dataset` (`{dataset}` gives `spanwatch.flow`,
/// `spanwatch.alert`, …, the topics `Deploy/kafka-topics.sh` creates). Query items the sensor does not own are librdkafka
/// properties passed through unchanged (`security.protocol=ssl`, `sasl.mechanism=SCRAM-SHA-512`,
/// `compression.codec=zstd`, `linger.ms=20`, …). The sensor's own items are spelled with underscores,
/// which no librdkafka property uses: `key`, `spool`, `spool_max_bytes`, `flush_timeout`.
public struct KafkaOutputOptions: Equatable, Sendable, CustomStringConvertible {
    public var brokers: String
    public var topic: String
    public var key: KafkaKey = .communityID
    /// librdkafka properties, applied after the sensor's defaults (so they can override them).
    public var properties: [KafkaProperty] = []
    /// Where undeliverable events wait (0700 directory, 0600 file); see `defaultSpoolDirectory`.
    public var spoolDirectory: String = KafkaOutputOptions.defaultSpoolDirectory()
    public var spoolMaxBytes: UInt64 = 1 << 30
    /// How long closing waits for the cluster before spooling the rest (SIGTERM, end of replay).
    public var flushTimeout: Double = 10

    public struct KafkaProperty: Equatable, Sendable {
        public var name: String
        public var value: String
        public init(_ name: String, _ value: String) { self.name = name; self.value = value }
    }

    /// What the sensor sets unless a property overrides it: no loss, no duplicates, compact batches.
    public static let defaultProperties: [KafkaProperty] = [
        KafkaProperty("enable.idempotence", "true"),
        KafkaProperty("acks", "all"),
        KafkaProperty("compression.codec", "lz4"),
        KafkaProperty("linger.ms", "5"),
        KafkaProperty("batch.num.messages", "10000"),
        KafkaProperty("queue.buffering.max.messages", "500000"),
        KafkaProperty("queue.buffering.max.kbytes", "524288"),
        KafkaProperty("message.timeout.ms", "300000"),
    ]

    public init(brokers: String, topic: String) {
        self.brokers = brokers
        self.topic = topic
    }

    /// Parses `kafka://HOST:PORT[,…]/TOPIC[?…]` (the output syntax; `--host-facts` uses it too).
    public init(url text: String) throws(OutputError) {
        let u = try OutputURL(text)
        guard !u.authority.isEmpty else { throw .badSpec(text, reason: "kafka:// needs at least one HOST:PORT") }
        for b in u.authority.split(separator: ",", omittingEmptySubsequences: false) {
            _ = try OutputURL.hostPort(b, spec: text)
        }
        guard !u.path.isEmpty else { throw .badSpec(text, reason: "kafka:// needs a topic: kafka://HOST:PORT/TOPIC") }
        let probe = u.path.replacingOccurrences(of: "{dataset}", with: "x")
        guard probe.count <= 249, probe.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "_" || $0 == "-") }) else {
            throw .badSpec(text, reason: "topic '\(u.path)' may hold only letters, digits, '.', '_', '-' (and {dataset})")
        }
        self.init(brokers: u.authority, topic: u.path)
        for (k, v) in u.query {
            switch k {
            case "key":
                guard let key = KafkaKey(rawValue: v), key != .route else { throw .badSpec(text, reason: "key must be community_id, source_ip or none") }
                self.key = key
            case "spool": spoolDirectory = v
            case "spool_max_bytes": spoolMaxBytes = try OutputURL.bytes(v, name: k, spec: text)
            case "flush_timeout": flushTimeout = try OutputURL.seconds(v, name: k, spec: text)
            case "bootstrap.servers", "metadata.broker.list":
                throw .badSpec(text, reason: "brokers are given in the URL, not as \(k)")
            default:
                properties.append(KafkaProperty(k, v))
            }
        }
        try validateProperties(spec: text)
    }

    /// Checks every property against librdkafka now, so `check-config` reports a misspelt one.
    func validateProperties(spec: String) throws(OutputError) {
        guard let conf = rd_kafka_conf_new() else { return }
        defer { rd_kafka_conf_destroy(conf) }
        var errbuf = [CChar](repeating: 0, count: 512)
        for p in KafkaOutputOptions.defaultProperties + properties where rd_kafka_conf_set(conf, p.name, p.value, &errbuf, errbuf.count) != RD_KAFKA_CONF_OK {
            throw .badSpec(spec, reason: "librdkafka property \(p.name)=\(p.value): \(String(cString: errbuf))")
        }
    }

    public var description: String { "kafka://\(brokers)/\(topic)" }

    /// `spool` unless given: under systemd `$STATE_DIRECTORY/spool` (the unit's `StateDirectory=`), as
    /// root `/var/lib/sensor/spool`, otherwise the user's state directory (`$XDG_STATE_HOME`, else
    /// `~/.local/state`) + `/sensor/spool`. Missing parents are created 0700 when the spool opens.
    public static func defaultSpoolDirectory(environment: [String: String] = ProcessInfo.processInfo.environment,
                                             euid: uid_t = geteuid()) -> String {
        // systemd lists one directory per StateDirectory= entry, colon-separated.
        if let state = environment["STATE_DIRECTORY"]?.split(separator: ":").first, state.hasPrefix("/") {
            return state + "/spool"
        }
        if euid == 0 { return "/var/lib/sensor/spool" }
        if let xdg = environment["XDG_STATE_HOME"], xdg.hasPrefix("/") { return xdg + "/sensor/spool" }
        if let home = environment["HOME"], home.hasPrefix("/") { return home + "/.local/state/sensor/spool" }
        if let pw = getpwuid(euid), let dir = pw.pointee.pw_dir, dir.pointee == UInt8(ascii: "/") {
            return String(cString: dir) + "/.local/state/sensor/spool"
        }
        return "/var/lib/sensor/spool"
    }
}

/// Kafka record headers, so consumers route without parsing the JSON: `dataset` (`spanwatch.flow`, …),
/// `sensor` (`observer.name`) and `schema_version` (the ECS version the event follows, `ecs.version`).
/// Names are C string literals with static storage, so a message's argument list can point at them.
enum KafkaHeaders {
    static let dataset: UnsafePointer<CChar> = UnsafeRawPointer(("dataset" as StaticString).utf8Start).assumingMemoryBound(to: CChar.self)
    static let sensor: UnsafePointer<CChar> = UnsafeRawPointer(("sensor" as StaticString).utf8Start).assumingMemoryBound(to: CChar.self)
    static let schemaVersion: UnsafePointer<CChar> = UnsafeRawPointer(("schema_version" as StaticString).utf8Start).assumingMemoryBound(to: CChar.self)
}

/// Events to Kafka through librdkafka, with nothing lost while the cluster is away.
///
/// The packet path calls `write`, which either hands the event to librdkafka's queue
/// (`rd_kafka_produce`, copying, never blocking) or, when that queue is full or the cluster is known
/// to be unreachable, appends it to the on-disk `Spool`. A dedicated thread serves delivery reports
/// (`rd_kafka_poll`), counts deliveries and failures, spools messages whose delivery failed, probes
/// the cluster while it is away, and re-sends the spool in order once it is back. While anything is
/// spooled, new events are spooled behind it, so events of one class reach Kafka in the order they were written.
/// Events are dropped only when the spool's bound is reached; every drop is counted.
///
/// Alerts have a spool of their own (`….alerts` beside `….spool`, one bound for both), re-sent first:
/// when the bound is reached, an alert makes room by discarding the oldest flow and other bulk events,
/// and is dropped only when no bulk event is left to discard. A bulk event that finds the spool full is
/// dropped. Drops are counted, alerts apart (`dropped_alerts`).
///
/// With the idempotent producer (the default) a retried message is never duplicated by the broker.
/// On close the sink waits up to `flushTimeout` for the cluster, then purges librdkafka's queue
/// into the spool, where the next start picks it up.
public final class KafkaSink: EventSink, @unchecked Sendable {
    public let name: String
    let options: KafkaOutputOptions
    let rk: OpaquePointer
    let core: Core
    /// The `sensor` header's value.
    let sensorName: [UInt8]
    private var pollThread: Thread?

    /// State shared by the packet path, the delivery-report callback and the poll thread.
    final class Core: @unchecked Sendable {
        struct State {
            /// Flow and every other non-alert event.
            var spool: Spool
            /// Alerts: kept when the bound forces a choice, and re-sent first.
            var alertSpool: Spool
            /// True while a spool holds events: new events queue up behind them.
            var spooling: Bool
            var topics: [String: OpaquePointer] = [:]
            var datasetTopics: [UInt: (String, OpaquePointer)] = [:]
            var keyBuffer: [UInt8] = []
            var topicBuffer: [UInt8] = []
            var closed = false
        }
        let state: Mutex<State>
        let accepted = Atomic<UInt64>(0)
        let delivered = Atomic<UInt64>(0)
        let failed = Atomic<UInt64>(0)
        let spooled = Atomic<UInt64>(0)
        let dropped = Atomic<UInt64>(0)
        let droppedAlerts = Atomic<UInt64>(0)
        /// Both spools' unread bytes together must stay within this.
        let spoolMaxBytes: UInt64
        let spoolBytes = Atomic<UInt64>(0)
        /// Cleared when librdkafka reports every broker down; set by a delivery or a successful probe.
        let reachable = Atomic<Bool>(true)
        let stopping = Atomic<Bool>(false)
        /// The last error librdkafka reported (for the log), as an errno-like code.
        let lastError = Mutex<String?>(nil)

        let logger: Logger
        let sensorName: [UInt8]

        init(spool: Spool, alertSpool: Spool, maxBytes: UInt64, logger: Logger, sensorName: [UInt8]) {
            self.logger = logger
            self.sensorName = sensorName
            let pending = !spool.isEmpty || !alertSpool.isEmpty
            spoolMaxBytes = maxBytes
            state = Mutex(State(spool: spool, alertSpool: alertSpool, spooling: pending))
            spoolBytes.store(spool.unreadBytes + alertSpool.unreadBytes, ordering: .relaxed)
        }

        /// Appends to the event's spool (caller holds the lock). At the bound, an alert first discards the
        /// oldest bulk events; whatever still does not fit is dropped and counted.
        func spool(_ s: inout State, topic: UnsafeRawBufferPointer, key: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer, alert: Bool) {
            s.spooling = true
            let length = UInt64(Spool.headerSize + topic.count + key.count + payload.count)
            var used = s.spool.unreadBytes + s.alertSpool.unreadBytes
            if alert && used + length > spoolMaxBytes {
                let evicted = s.spool.discardOldest(freeing: used + length - spoolMaxBytes)
                dropped.add(evicted, ordering: .relaxed)
                used = s.spool.unreadBytes + s.alertSpool.unreadBytes
            }
            let target = alert ? s.alertSpool : s.spool
            if used + length <= spoolMaxBytes && target.append(topic: topic, key: key, payload: payload) {
                spooled.add(1, ordering: .relaxed)
            } else {
                countDrop(alert: alert)
            }
            spoolBytes.store(s.spool.unreadBytes + s.alertSpool.unreadBytes, ordering: .relaxed)
        }

        func countDrop(alert: Bool, _ n: UInt64 = 1) {
            dropped.add(n, ordering: .relaxed)
            if alert { droppedAlerts.add(n, ordering: .relaxed) }
        }
    }

    /// `msg_opaque` of an alert's message, so a failed delivery goes back to the alert spool.
    static var alertTag: UnsafeMutableRawPointer? { UnsafeMutableRawPointer(bitPattern: 1) }

    /// `sensorName`: the `sensor` header (the host name when nil); `logger` receives librdkafka's log.
    public init(options: KafkaOutputOptions, sensorName: String? = nil, logger: Logger = Logger(label: "sensor.kafka")) throws {
        self.options = options
        self.name = options.description
        self.sensorName = Array((sensorName ?? ObserverInfo.systemHostname()).utf8)
        let spoolName = "kafka-" + String(options.topic.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." ? $0 : "_" })
        let spool = try Spool(directory: options.spoolDirectory, name: spoolName + ".spool", maxBytes: options.spoolMaxBytes)
        let alertSpool = try Spool(directory: options.spoolDirectory, name: spoolName + ".alerts", maxBytes: options.spoolMaxBytes)
        core = Core(spool: spool, alertSpool: alertSpool, maxBytes: options.spoolMaxBytes, logger: logger,
                    sensorName: self.sensorName)

        guard let conf = rd_kafka_conf_new() else { throw OutputError.open(spec: options.description, reason: "rd_kafka_conf_new failed") }
        var errbuf = [CChar](repeating: 0, count: 512)
        func set(_ k: String, _ v: String) throws {
            if rd_kafka_conf_set(conf, k, v, &errbuf, errbuf.count) != RD_KAFKA_CONF_OK {
                rd_kafka_conf_destroy(conf)
                throw OutputError.open(spec: options.description, reason: "librdkafka property \(k)=\(v): \(String(cString: errbuf))")
            }
        }
        try set("bootstrap.servers", options.brokers)
        try set("client.id", "sensor-\(ObserverInfo.systemHostname())")
        // librdkafka's log goes through ours (`log_cb`), warnings and worse unless a property says otherwise.
        try set("log_level", "4")
        for p in KafkaOutputOptions.defaultProperties { try set(p.name, p.value) }
        for p in options.properties { try set(p.name, p.value) }
        if options.key == .route, let tconf = rd_kafka_topic_conf_new() {
            rd_kafka_topic_conf_set_partitioner_cb(tconf) { _, key, keyLength, partitions, _, _ in
                guard let key, keyLength >= 8, partitions > 0 else { return 0 }
                var route: UInt64 = 0
                for i in 0..<8 { route = route << 8 | UInt64(key.load(fromByteOffset: i, as: UInt8.self)) }
                return Int32(truncatingIfNeeded: route % UInt64(partitions))
            }
            rd_kafka_conf_set_default_topic_conf(conf, tconf)
        }
        rd_kafka_conf_set_opaque(conf, Unmanaged.passUnretained(core).toOpaque())
        rd_kafka_conf_set_dr_msg_cb(conf) { _, message, opaque in
            guard let message, let opaque else { return }
            Unmanaged<KafkaSink.Core>.fromOpaque(opaque).takeUnretainedValue().deliveryReport(message)
        }
        rd_kafka_conf_set_log_cb(conf) { rk, level, facility, message in
            guard let rk, let opaque = rd_kafka_opaque(rk) else { return }
            let core = Unmanaged<KafkaSink.Core>.fromOpaque(opaque).takeUnretainedValue()
            core.log(level: level, facility: facility.map { String(cString: $0) } ?? "", message: message.map { String(cString: $0) } ?? "")
        }
        rd_kafka_conf_set_error_cb(conf) { _, err, reason, opaque in
            guard let opaque else { return }
            let core = Unmanaged<KafkaSink.Core>.fromOpaque(opaque).takeUnretainedValue()
            if err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN.rawValue {
                core.reachable.store(false, ordering: .relaxed)
            }
            let text = reason.map { String(cString: $0) } ?? "error \(err)"
            core.lastError.withLock { $0 = text }
        }
        guard let handle = rd_kafka_new(RD_KAFKA_PRODUCER, conf, &errbuf, errbuf.count) else {
            rd_kafka_conf_destroy(conf)
            throw OutputError.open(spec: options.description, reason: String(cString: errbuf))
        }
        rk = handle
        let handleBits = UInt(bitPattern: handle)
        let t = Thread { [core, options] in KafkaSink.pollLoop(core: core, rk: OpaquePointer(bitPattern: handleBits)!, options: options) }
        t.name = "sensor-kafka-poll"
        pollThread = t
        t.start()
    }

    deinit {
        try? close()
    }

    // MARK: Packet path

    public func write(_ json: UnsafeRawBufferPointer, metadata: EventMetadata) {
        core.accepted.add(1, ordering: .relaxed)
        let alert = metadata.kind == .alert
        core.state.withLock { s in
            guard !s.closed else { core.countDrop(alert: alert); return }
            // The key: community_id bytes inside the JSON, or the source address as text.
            s.keyBuffer.removeAll(keepingCapacity: true)
            switch options.key {
            case .communityID:
                if let r = metadata.communityIDRange, r.upperBound <= json.count {
                    s.keyBuffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: json[r]))
                } else if let ip = metadata.sourceIP {
                    ip.append(to: &s.keyBuffer)
                }
            case .sourceIP:
                if let ip = metadata.sourceIP { ip.append(to: &s.keyBuffer) }
            case .none, .route: break
            }
            let (topicName, rkt) = topicEntry(&s, metadata.dataset)
            produceLocked(&s, topicName, rkt, json, dataset: metadata.dataset, alert: alert)
        }
    }

    /// One record the caller keyed itself (`KafkaKey.route`: host facts), to the configured topic, with
    /// the same spool and counters as events.
    public func produce(_ payload: UnsafeRawBufferPointer, key: UnsafeRawBufferPointer) {
        core.accepted.add(1, ordering: .relaxed)
        core.state.withLock { s in
            guard !s.closed else { core.countDrop(alert: false); return }
            s.keyBuffer.removeAll(keepingCapacity: true)
            s.keyBuffer.append(contentsOf: key)
            let (topicName, rkt) = topicEntry(&s, "host_facts")
            produceLocked(&s, topicName, rkt, payload, dataset: "host_facts", alert: false)
        }
    }

    /// The topic's partition count from the cluster, waiting up to `timeout` seconds; throws a message
    /// for the user when the cluster cannot be reached or the topic does not exist.
    public func partitionCount(timeout: Double) throws(OutputError) -> Int {
        let rkt = core.state.withLock { s in topicEntry(&s, "host_facts").1 }
        return try Self.partitionCount(rk: rk, rkt: rkt, topic: options.topic, spec: options.description, timeout: timeout)
    }

    /// A topic's partition count from the cluster's metadata (producer and consumer alike).
    static func partitionCount(rk: OpaquePointer, rkt: OpaquePointer, topic: String, spec: String, timeout: Double) throws(OutputError) -> Int {
        var md: UnsafePointer<rd_kafka_metadata>? = nil
        let err = rd_kafka_metadata(rk, 0, rkt, &md, Int32(timeout * 1000))
        defer { if let md { rd_kafka_metadata_destroy(md) } }
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR, let m = md?.pointee else {
            throw .open(spec: spec, reason: "cannot read the topic's metadata: \(String(cString: rd_kafka_err2str(err)))")
        }
        for i in 0..<Int(m.topic_cnt) where String(cString: m.topics[i].topic) == topic {
            let t = m.topics[i]
            if t.err != RD_KAFKA_RESP_ERR_NO_ERROR || t.partition_cnt < 1 {
                throw .open(spec: spec, reason: "topic '\(topic)': \(String(cString: rd_kafka_err2str(t.err)))")
            }
            return Int(t.partition_cnt)
        }
        throw .open(spec: spec, reason: "topic '\(topic)' does not exist")
    }

    /// Hands a keyed record to librdkafka with its headers, or to the spool while one is being re-sent or
    /// the cluster is away (caller holds the lock; the key is in `s.keyBuffer`).
    private func produceLocked(_ s: inout Core.State, _ topicName: String, _ rkt: OpaquePointer, _ json: UnsafeRawBufferPointer,
                               dataset: StaticString, alert: Bool) {
        if s.spooling || !core.reachable.load(ordering: .relaxed) {
            spoolEvent(&s, topicName, json, alert: alert)
            return
        }
        let err = s.keyBuffer.withUnsafeBytes { key in
            sensorName.withUnsafeBytes { sn in
                KafkaSink.produce(rk, rkt, payload: json, key: key, alert: alert,
                                  dataset: UnsafeRawBufferPointer(start: dataset.utf8Start, count: dataset.utf8CodeUnitCount),
                                  sensor: sn)
            }
        }
        if err != RD_KAFKA_RESP_ERR_NO_ERROR {
            if KafkaSink.retriable(err) {
                spoolEvent(&s, topicName, json, alert: alert)
            } else {
                // librdkafka refuses this event for good (larger than message.max.bytes): counted, not retried.
                core.failed.add(1, ordering: .relaxed)
                core.countDrop(alert: alert)
            }
        }
    }

    /// Hands one message with its headers to librdkafka (copied), returning its refusal if any. The
    /// argument list lives on the stack: nothing is allocated here beyond librdkafka's own copy.
    static func produce(_ rk: OpaquePointer, _ rkt: OpaquePointer, payload: UnsafeRawBufferPointer, key: UnsafeRawBufferPointer,
                        alert: Bool, dataset: UnsafeRawBufferPointer, sensor: UnsafeRawBufferPointer) -> rd_kafka_resp_err_t {
        withUnsafeTemporaryAllocation(of: rd_kafka_vu_t.self, capacity: 8) { v in
            for i in 0..<8 { v.initializeElement(at: i, to: rd_kafka_vu_t()) }
            v[0].vtype = RD_KAFKA_VTYPE_RKT; v[0].u.rkt = rkt
            v[1].vtype = RD_KAFKA_VTYPE_MSGFLAGS; v[1].u.i = RD_KAFKA_MSG_F_COPY
            v[2].vtype = RD_KAFKA_VTYPE_VALUE
            v[2].u.mem.ptr = UnsafeMutableRawPointer(mutating: payload.baseAddress); v[2].u.mem.size = payload.count
            v[3].vtype = RD_KAFKA_VTYPE_KEY
            v[3].u.mem.ptr = key.count > 0 ? UnsafeMutableRawPointer(mutating: key.baseAddress) : nil; v[3].u.mem.size = key.count
            v[4].vtype = RD_KAFKA_VTYPE_OPAQUE; v[4].u.ptr = alert ? KafkaSink.alertTag : nil
            v[5].vtype = RD_KAFKA_VTYPE_HEADER
            v[5].u.header.name = KafkaHeaders.dataset; v[5].u.header.val = dataset.baseAddress; v[5].u.header.size = dataset.count
            v[6].vtype = RD_KAFKA_VTYPE_HEADER
            v[6].u.header.name = KafkaHeaders.sensor; v[6].u.header.val = sensor.baseAddress; v[6].u.header.size = sensor.count
            v[7].vtype = RD_KAFKA_VTYPE_HEADER
            v[7].u.header.name = KafkaHeaders.schemaVersion
            v[7].u.header.val = UnsafeRawPointer(ECS.version.utf8Start); v[7].u.header.size = ECS.version.utf8CodeUnitCount
            guard let error = rd_kafka_produceva(rk, v.baseAddress, 8) else { return RD_KAFKA_RESP_ERR_NO_ERROR }
            defer { rd_kafka_error_destroy(error) }
            return rd_kafka_error_code(error)
        }
    }

    /// Whether a refused produce may succeed later (queue full, cluster away) rather than never.
    static func retriable(_ err: rd_kafka_resp_err_t) -> Bool {
        err != RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE && err != RD_KAFKA_RESP_ERR__INVALID_ARG
            && err != RD_KAFKA_RESP_ERR__BAD_MSG && err != RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE
    }

    private func spoolEvent(_ s: inout Core.State, _ topicName: String, _ json: UnsafeRawBufferPointer, alert: Bool) {
        var t = topicName
        let keyCopy = s.keyBuffer
        t.withUTF8 { tb in
            keyCopy.withUnsafeBytes { kb in core.spool(&s, topic: UnsafeRawBufferPointer(tb), key: kb, payload: json, alert: alert) }
        }
    }

    /// The topic of an event (the configured one, or with `{dataset}` replaced) and its librdkafka handle.
    /// Looked up by the dataset literal's address, so the packet path neither builds nor hashes a string.
    func topicEntry(_ s: inout Core.State, _ dataset: StaticString) -> (String, OpaquePointer) {
        let id = UInt(bitPattern: dataset.utf8Start)
        if let e = s.datasetTopics[id] { return e }
        let name = options.topic.replacingOccurrences(of: "{dataset}", with: dataset.description)
        let rkt: OpaquePointer
        if let t = s.topics[name] { rkt = t } else { rkt = rd_kafka_topic_new(rk, name, nil)!; s.topics[name] = rkt }
        s.datasetTopics[id] = (name, rkt)
        return (name, rkt)
    }

    // MARK: Poll thread

    static func pollLoop(core: Core, rk: OpaquePointer, options: KafkaOutputOptions) {
        var lastProbe = ContinuousClock.now - .seconds(10)
        while !core.stopping.load(ordering: .relaxed) {
            _ = rd_kafka_poll(rk, 50)
            maintain(core: core, rk: rk, lastProbe: &lastProbe)
        }
    }

    /// Makes the spool durable, probes an unreachable cluster, and re-sends the spool when it can.
    static func maintain(core: Core, rk: OpaquePointer, lastProbe: inout ContinuousClock.Instant) {
        let (spooling, syncError): (Bool, Int32) = core.state.withLock { s in
            let alertError = s.alertSpool.sync()
            let e = alertError != 0 ? alertError : s.spool.sync()
            return (s.spooling, e)
        }
        if syncError != 0 { core.lastError.withLock { $0 = "spool write failed: \(String(cString: strerror(syncError)))" } }
        guard spooling || !core.reachable.load(ordering: .relaxed) else { return }
        if !core.reachable.load(ordering: .relaxed) {
            let now = ContinuousClock.now
            guard now - lastProbe >= .seconds(1) else { return }
            lastProbe = now
            var md: UnsafePointer<rd_kafka_metadata>? = nil
            // Outside the lock: a metadata request waits for the cluster up to its timeout.
            let err = rd_kafka_metadata(rk, 0, nil, &md, 1000)
            if let md { rd_kafka_metadata_destroy(md) }
            guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { return }
            core.reachable.store(true, ordering: .relaxed)
        }
        // Re-send in order while librdkafka's queue has room, alerts first; a refused record stays first in
        // its spool. Small batches per lock hold, so the packet path never waits long behind the disk reads.
        while true {
            let (consumed, more): (Int, Bool) = core.state.withLock { s in
                guard s.spooling else { return (0, false) }
                var topics = s.topics
                var n = 0
                for (spool, alert) in [(s.alertSpool, true), (s.spool, false)] {
                    var permanent: UInt64 = 0
                    n += spool.consume(limit: 1000 - n) { record in
                        switch produceSpooled(rk: rk, topics: &topics, record, alert: alert, sensorName: core.sensorName) {
                        case .queued: return true
                        case .later: return false
                        case .never: permanent += 1; return true
                        }
                    }
                    if permanent > 0 {
                        core.failed.add(permanent, ordering: .relaxed)
                        core.countDrop(alert: alert, permanent)
                    }
                    // Bulk events wait until every spooled alert is out.
                    if !spool.isEmpty || n >= 1000 { break }
                }
                s.topics = topics
                if s.spool.isEmpty && s.alertSpool.isEmpty { s.spooling = false }
                core.spoolBytes.store(s.spool.unreadBytes + s.alertSpool.unreadBytes, ordering: .relaxed)
                return (n, s.spooling)
            }
            if consumed < 1000 || !more { break }
        }
    }

    enum SpoolProduce { case queued, later, never }

    /// Re-sends one spooled record. The spool keeps topic, key and payload; the headers are read back out
    /// of the payload (`event.dataset`; `observer.name`, which may be another run's), off the packet path.
    static func produceSpooled(rk: OpaquePointer, topics: inout [String: OpaquePointer], _ r: Spool.Record, alert: Bool,
                               sensorName: [UInt8]) -> SpoolProduce {
        let rkt: OpaquePointer
        if let t = topics[r.topic] { rkt = t } else { rkt = rd_kafka_topic_new(rk, r.topic, nil)!; topics[r.topic] = rkt }
        let err = r.payload.withUnsafeBytes { p in
            var scanner = EventFieldScanner(paths: ["event.dataset", "observer.name"])
            let scanned = scanner.scan(p)
            func text(_ slot: Int) -> [UInt8]? {
                guard scanned, scanner.firstHit[slot] >= 0 else { return nil }
                let h = scanner.hits[Int(scanner.firstHit[slot])]
                guard h.kind == .string, h.end - h.start >= 2 else { return nil }
                return Array(p[(h.start + 1)..<(h.end - 1)])
            }
            let dataset = text(0) ?? [], sensor = text(1) ?? sensorName
            return r.key.withUnsafeBytes { k in
                dataset.withUnsafeBytes { d in
                    sensor.withUnsafeBytes { sn in produce(rk, rkt, payload: p, key: k, alert: alert, dataset: d, sensor: sn) }
                }
            }
        }
        if err == RD_KAFKA_RESP_ERR_NO_ERROR { return .queued }
        return retriable(err) ? .later : .never
    }

    // MARK: Lifecycle

    /// Delivery is asynchronous and the poll thread makes the spool durable: nothing to do here. A spool
    /// that cannot be written shows in `failureReason`, which the output monitor logs as it starts.
    public func flush() throws {}

    /// Waits up to `flushTimeout` until librdkafka's queue and both spools are empty (everything delivered);
    /// what is still out at the deadline stays queued or spooled, and `close` waits for it once more.
    public func flushDelivery() throws {
        let deadline = ContinuousClock.now + .milliseconds(Int(options.flushTimeout * 1000))
        while ContinuousClock.now < deadline {
            let spoolEmpty = core.state.withLock { $0.spool.isEmpty && $0.alertSpool.isEmpty }
            if spoolEmpty && rd_kafka_outq_len(rk) == 0 { return }
            usleep(20_000)
        }
    }

    /// Waits up to `flushTimeout` for everything (queue and spool) to reach the cluster, then spools the rest.
    public func close() throws {
        guard let thread = pollThread else { return }
        pollThread = nil
        core.state.withLock { $0.closed = true }
        let deadline = ContinuousClock.now + .milliseconds(Int(options.flushTimeout * 1000))
        while ContinuousClock.now < deadline {
            let spoolEmpty = core.state.withLock { $0.spool.isEmpty && $0.alertSpool.isEmpty }
            if spoolEmpty && rd_kafka_outq_len(rk) == 0 { break }
            usleep(20_000)
        }
        core.stopping.store(true, ordering: .relaxed)
        while !thread.isFinished { usleep(5_000) }
        if rd_kafka_outq_len(rk) > 0 {
            // Out of time: librdkafka hands back what it still holds as failed deliveries, which are spooled.
            _ = rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT)
            _ = rd_kafka_flush(rk, 1000)
            var spins = 0
            while rd_kafka_outq_len(rk) > 0 && spins < 100 { _ = rd_kafka_poll(rk, 10); spins += 1 }
            // What librdkafka still holds now goes with the handle: counted, never silently.
            let left = rd_kafka_outq_len(rk)
            if left > 0 { core.countDrop(alert: false, UInt64(left)) }
        }
        let closeError: Error? = core.state.withLock { s in
            for (_, t) in s.topics { rd_kafka_topic_destroy(t) }
            s.topics = [:]
            s.datasetTopics = [:]
            var failure: Error?
            for (spool, alert) in [(s.alertSpool, true), (s.spool, false)] {
                // A spool that cannot be written at close loses the records it still held in memory.
                let unwritten = spool.pendingRecords
                do { try spool.close() } catch {
                    failure = failure ?? error
                    core.countDrop(alert: alert, unwritten)
                }
            }
            return failure
        }
        core.spoolBytes.store(core.state.withLock { $0.spool.unreadBytes + $0.alertSpool.unreadBytes }, ordering: .relaxed)
        rd_kafka_destroy(rk)
        if let closeError { throw closeError }
    }

    public var statistics: SinkStatistics {
        var s = SinkStatistics()
        s.accepted = core.accepted.load(ordering: .relaxed)
        s.delivered = core.delivered.load(ordering: .relaxed)
        s.failed = core.failed.load(ordering: .relaxed)
        s.spooled = core.spooled.load(ordering: .relaxed)
        s.dropped = core.dropped.load(ordering: .relaxed)
        s.droppedAlerts = core.droppedAlerts.load(ordering: .relaxed)
        s.spoolBytes = core.spoolBytes.load(ordering: .relaxed)
        return s
    }

    /// The last problem librdkafka reported, for the log.
    public var failureReason: String? { core.lastError.withLock { $0 } }
}

extension KafkaSink.Core {
    /// librdkafka's own log line (syslog level, facility such as `FAIL` or `BROKERFAIL`) through ours.
    func log(level: Int32, facility: String, message: String) {
        let l: Logger.Level = switch level {
        case ...2: .critical
        case 3: .error
        case 4: .warning
        case 5: .notice
        case 6: .info
        default: .debug
        }
        logger.log(level: l, "librdkafka: \(message)", metadata: ["facility": "\(facility)"])
    }

    static let permanentErrors: Set<rd_kafka_resp_err_t> = [
        RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, RD_KAFKA_RESP_ERR_INVALID_MSG,
        RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE, RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
        RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED, RD_KAFKA_RESP_ERR_INVALID_RECORD, RD_KAFKA_RESP_ERR__INVALID_ARG,
        RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION,
    ]

    /// Called on the poll thread for every message librdkafka is done with.
    func deliveryReport(_ m: UnsafePointer<rd_kafka_message_t>) {
        let msg = m.pointee
        if msg.err == RD_KAFKA_RESP_ERR_NO_ERROR {
            delivered.add(1, ordering: .relaxed)
            reachable.store(true, ordering: .relaxed)
            return
        }
        failed.add(1, ordering: .relaxed)
        if let e = rd_kafka_err2str(msg.err) { lastError.withLock { $0 = String(cString: e) } }
        let alert = msg._private != nil
        if KafkaSink.Core.permanentErrors.contains(msg.err) {
            // The cluster will never take this message (too large, not authorised): re-sending would loop.
            countDrop(alert: alert)
            return
        }
        // Not lost: back into the spool, re-sent when the cluster is back (or by the next start).
        let topic = rd_kafka_topic_name(msg.rkt).map { String(cString: $0) } ?? ""
        var t = topic
        state.withLock { s in
            t.withUTF8 { tb in
                let key = msg.key.map { UnsafeRawBufferPointer(start: $0, count: msg.key_len) } ?? UnsafeRawBufferPointer(start: nil, count: 0)
                let payload = UnsafeRawBufferPointer(start: msg.payload, count: msg.len)
                spool(&s, topic: UnsafeRawBufferPointer(tb), key: key, payload: payload, alert: alert)
            }
        }
    }
}

/// The librdkafka the process runs with (`sensor --version`).
public enum KafkaLibrary {
    public static var version: String { String(cString: rd_kafka_version_str()) }
}
