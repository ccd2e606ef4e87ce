import Foundation
import TestSupport

/// The events of every shared capture (the categorised captures, the large one and tcpdump's protocol test
/// captures), replayed once per test process and shared by the tests that check every event.
enum SharedCaptureEvents {
    struct Run { var files: [String]; var events: [[String: Any]]; var status: Int32; var stderr: String }

    static let runs: [Run] = {
        let protocolDir = TestSupport.data("protocol-tests/tcpdump")
        let protocolTests = ((try? FileManager.default.subpathsOfDirectory(atPath: protocolDir)) ?? [])
            .filter { $0.hasSuffix(".pcap") || $0.hasSuffix(".pcapng") }.sorted().map { "\(protocolDir)/\($0)" }
        var groups = ["benign", "beacon", "c2-nonstd-port", "dns-tunnel", "lateral", "large"].map { TestSupport.captures($0) }
        groups.append(protocolTests)
        return groups.filter { !$0.isEmpty }.map { files in
            guard let r = try? TestSupport.sensor(["replay"] + files + ["--log-level", "error"]) else {
                return Run(files: files, events: [], status: -1, stderr: "could not run the sensor")
            }
            return Run(files: files, events: (try? TestSupport.events(r)) ?? [], status: r.status, stderr: r.stderr)
        }
    }()

    static var protocolTestCaptures: Int { runs.last?.files.count ?? 0 }
}
