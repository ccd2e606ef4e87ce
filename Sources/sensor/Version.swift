import Capture
import Enrichment
import Outputs

/// `sensor --version`: the release, the commit and date it was built from (`BuildInfo`, generated at
/// build time), and the C libraries as the running process loaded them, asked of each library itself:
/// a package upgrade of libpcap or librdkafka shows here without rebuilding the sensor.
enum SensorVersion {
    static let release = "0.1.0"

    static var text: String {
        """
        sensor \(release)
        commit: \(BuildInfo.commit)
        built: \(BuildInfo.date)
        libpcap: \(PcapLibrary.version)
        librdkafka: \(KafkaLibrary.version)
        libmaxminddb: \(MaxMindLibrary.version)
        """
    }
}
