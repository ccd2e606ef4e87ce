@testable import Outputs
import Events
import XCTest

final class OutputSpecTests: XCTestCase {
    func testKafkaSpec() throws {
        let s = try OutputSpec(parsing: "kafka://k1:9092,[::1]:9093/sensor-{dataset}?key=source_ip&compression.codec=zstd&spool=/tmp/sp&spool_max_bytes=64MiB&flush_timeout=500ms&sasl.password=a%26b")
        guard case .kafka(let k) = s.target else { return XCTFail("\(s)") }
        XCTAssertEqual(k.brokers, "k1:9092,[::1]:9093")
        XCTAssertEqual(k.topic, "sensor-{dataset}")
        XCTAssertEqual(k.key, .sourceIP)
        XCTAssertEqual(k.spoolDirectory, "/tmp/sp")
        XCTAssertEqual(k.spoolMaxBytes, 64 << 20)
        XCTAssertEqual(k.flushTimeout, 0.5, accuracy: 1e-9)
        XCTAssertEqual(k.properties, [.init("compression.codec", "zstd"), .init("sasl.password", "a&b")])
        XCTAssertEqual(s.description, "kafka://k1:9092,[::1]:9093/sensor-{dataset}")
    }

    func testKafkaSpecErrors() {
        for bad in ["kafka://", "kafka://h:9092", "kafka://h/t", "kafka://h:99999/t", "kafka://h:1/t?key=nope",
                    "kafka://h:1/bad topic", "kafka://h:1/t?no.such.thing=1", "kafka://h:1/t?bootstrap.servers=x", "kafka://h:1/t?acks",
                    "kafka://h:1/t?flush_timeout=1e300", "kafka://h:1/t?flush_timeout=86401s"] {
            XCTAssertThrowsError(try OutputSpec(parsing: bad), bad)
        }
    }

    func testSyslogSpec() throws {
        let s = try OutputSpec(parsing: "syslog+tls://siem.example:6514?ca=/ca.pem&cert=/c.pem&key=/k.pem&facility=local3&queue=5000&queue_bytes=8MiB")
        guard case .syslog(let o) = s.target else { return XCTFail("\(s)") }
        XCTAssertEqual(o.transport, .tls)
        XCTAssertEqual(o.host, "siem.example")
        XCTAssertEqual(o.port, 6514)
        XCTAssertEqual(o.caFile, "/ca.pem")
        XCTAssertEqual(o.facility, 19)
        XCTAssertEqual(o.queueLimit, 5000)
        XCTAssertEqual(o.queueBytes, 8 << 20)
        guard case .syslog(let u) = try OutputSpec(parsing: "syslog+udp://[::1]:514").target else { return XCTFail() }
        XCTAssertEqual(u.host, "::1")
        XCTAssertEqual(u.description, "syslog+udp://[::1]:514")
        for bad in ["syslog+smtp://h:1", "syslog+udp://h", "syslog+tcp://h:1?ca=/x", "syslog+tls://h:1?cert=/c", "syslog+udp://h:1?facility=99",
                    "syslog+udp://h:1/path", "syslog+udp://h:1?flush_timeout=1e300"] {
            XCTAssertThrowsError(try OutputSpec(parsing: bad), bad)
        }
    }

    func testSyslogSeverityFromEventSeverity() {
        XCTAssertEqual((0...4).map(SyslogSink.syslogSeverity), [6, 5, 4, 3, 2])
    }

    /// `datasets=` on any output, taken out before the output's own options; file rotation options.
    func testDatasetFilterAndFileOptions() throws {
        let k = try OutputSpec(parsing: "kafka://k1:9092/{dataset}?datasets=alert,spanwatch.dns&key=none")
        XCTAssertEqual(k.datasets?.datasets, [.alert, .dns])
        guard case .kafka(let ko) = k.target else { return XCTFail("\(k)") }
        XCTAssertEqual(ko.key, .none)
        XCTAssertTrue(ko.properties.isEmpty, "datasets is not passed to librdkafka")
        XCTAssertEqual(try OutputSpec(parsing: "stdout?datasets=flow").datasets?.datasets, [.flow])
        XCTAssertNil(try OutputSpec(parsing: "stdout").datasets)
        let f = try OutputSpec(parsing: "file:/var/log/e.json?rotate_size=1MiB&rotate_interval=2h&rotate_keep=3&datasets=evidence")
        guard case .file(let fo) = f.target else { return XCTFail("\(f)") }
        XCTAssertEqual(fo.path, "/var/log/e.json")
        XCTAssertEqual(fo.rotateBytes, 1 << 20)
        XCTAssertEqual(fo.rotateSeconds, 7200)
        XCTAssertEqual(fo.keep, 3)
        XCTAssertEqual(f.datasets?.datasets, [.evidence])
        for bad in ["stdout?datasets=", "stdout?datasets=alerts", "file:/x?rotate_size=1", "file:/x?rotate_interval=soon",
                    "file:/x?nope=1", "stdout?x=1", "zeek:/d?x=1"] {
            XCTAssertThrowsError(try OutputSpec(parsing: bad), bad)
        }
        let filter = DatasetFilter([.dns])
        XCTAssertTrue(filter.admits("spanwatch.dns"))
        XCTAssertFalse(filter.admits("spanwatch.flow"))
        XCTAssertFalse(filter.admits("spanwatch.unknown"))
    }
}
