// kafka-mock-broker: librdkafka's mock cluster as a real Kafka broker on loopback, for tests and the benchmark.
//
// Usage: kafka-mock-broker [--brokers N] [--topic NAME[:PARTITIONS]]...
// Prints the bootstrap address (`127.0.0.1:PORT[,…]`) on the first line of standard output, then reads
// commands on standard input, answering each with one line (`ok` or `error: …`):
//   down ID      the broker with id ID (1…N) closes its connections and refuses new ones
//   up ID        it accepts connections again
//   topic NAME P creates a topic with P partitions
//   quit         (or end of input) stops the cluster
// The mock cluster keeps messages in memory and speaks the real protocol (produce with idempotence,
// fetch, metadata), so the sensor's producer and the real `kcat` consumer talk to it unchanged.

import CRdKafka
#if canImport(Glibc)
import Glibc
#endif

func fail(_ message: String) -> Never {
    fputs("kafka-mock-broker: \(message)\n", stderr)
    exit(1)
}

var brokers: Int32 = 1
var topics: [(String, Int32)] = []
var args = CommandLine.arguments.dropFirst()
while let a = args.popFirst() {
    switch a {
    case "--brokers":
        guard let v = args.popFirst(), let n = Int32(v), n >= 1, n <= 16 else { fail("--brokers needs 1…16") }
        brokers = n
    case "--topic":
        guard let v = args.popFirst() else { fail("--topic needs NAME[:PARTITIONS]") }
        let parts = v.split(separator: ":")
        let p = parts.count > 1 ? Int32(parts[1]) ?? 0 : 1
        guard !parts.isEmpty, p >= 1 else { fail("bad --topic '\(v)'") }
        topics.append((String(parts[0]), p))
    case "-h", "--help":
        print("usage: kafka-mock-broker [--brokers N] [--topic NAME[:PARTITIONS]]...")
        exit(0)
    default:
        fail("unknown argument '\(a)'")
    }
}

var errbuf = [CChar](repeating: 0, count: 512)
guard let conf = rd_kafka_conf_new() else { fail("rd_kafka_conf_new failed") }
_ = rd_kafka_conf_set(conf, "log_level", "3", &errbuf, errbuf.count)
// The mock cluster needs a client instance to live in; this one never produces.
guard let rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, &errbuf, errbuf.count) else { fail(String(cString: errbuf)) }
guard let cluster = rd_kafka_mock_cluster_new(rk, brokers) else { fail("rd_kafka_mock_cluster_new failed") }
for (name, partitions) in topics {
    let err = rd_kafka_mock_topic_create(cluster, name, partitions, min(brokers, 3))
    if err != RD_KAFKA_RESP_ERR_NO_ERROR { fail("topic \(name): \(String(cString: rd_kafka_err2str(err)))") }
}
guard let boot = rd_kafka_mock_cluster_bootstraps(cluster) else { fail("no bootstrap address") }
print(String(cString: boot))
fflush(stdout)

func answer(_ s: String) {
    print(s)
    fflush(stdout)
}

while let line = readLine() {
    let words = line.split(separator: " ")
    guard let verb = words.first else { continue }
    switch verb {
    case "down", "up":
        guard words.count == 2, let id = Int32(words[1]) else { answer("error: \(verb) ID"); continue }
        let err = verb == "down" ? rd_kafka_mock_broker_set_down(cluster, id) : rd_kafka_mock_broker_set_up(cluster, id)
        answer(err == RD_KAFKA_RESP_ERR_NO_ERROR ? "ok" : "error: \(String(cString: rd_kafka_err2str(err)))")
    case "topic":
        guard words.count == 3, let p = Int32(words[2]), p >= 1 else { answer("error: topic NAME PARTITIONS"); continue }
        let err = rd_kafka_mock_topic_create(cluster, String(words[1]), p, min(brokers, 3))
        answer(err == RD_KAFKA_RESP_ERR_NO_ERROR ? "ok" : "error: \(String(cString: rd_kafka_err2str(err)))")
    case "quit":
        rd_kafka_mock_cluster_destroy(cluster)
        rd_kafka_destroy(rk)
        exit(0)
    default:
        answer("error: unknown command '\(verb)'")
    }
}
rd_kafka_mock_cluster_destroy(cluster)
rd_kafka_destroy(rk)
