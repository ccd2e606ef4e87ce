// swift-tools-version:6.0
// The sensor: capture → decode → flow → analysers → detectors → events → enrichment → sinks.
// Each target below is one room of that pipeline; see README.md "Layout".
import PackageDescription

/// The per-packet path is checked by hand (bounds before every read); Swift's dynamic exclusivity checks on
/// class properties cost more than the decoding itself there, so release builds of the hot targets skip them.
let hotPath: [SwiftSetting] = [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]

let package = Package(
    name: "sensor",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "sensor", targets: ["sensor"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/apple/swift-crypto", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // Thin system-library targets: one per C library, nothing else.
        .systemLibrary(name: "CPcap", pkgConfig: "libpcap", providers: [.apt(["libpcap-dev"])]),
        .systemLibrary(name: "CRdKafka", pkgConfig: "rdkafka", providers: [.apt(["librdkafka-dev"])]),
        .systemLibrary(name: "CMaxMindDB", pkgConfig: "libmaxminddb", providers: [.apt(["libmaxminddb-dev"])]),
        // C macros and constants Swift cannot see (PACKET_FANOUT, CPU_SET, ...).
        .target(name: "CSensorShims"),

        // Packet views, L2–L4 decoders, flow key, Community ID, flow table. No Foundation.
        .target(name: "PacketCore", swiftSettings: hotPath),
        // ECS event model, JSON writer into reused buffers, the EventSink seam. No Foundation.
        .target(name: "Events", dependencies: ["PacketCore"], swiftSettings: hotPath),
        // Protocol analysers: TCP stream reassembly shared by all, then one folder per protocol.
        // swift-crypto: QUIC Initial packets are decrypted (RFC 9001 §5) to read the ClientHello.
        .target(name: "Analyzers", dependencies: ["PacketCore", "Events",
                                                  .product(name: "Crypto", package: "swift-crypto"),
                                                  .product(name: "_CryptoExtras", package: "swift-crypto")], swiftSettings: hotPath),
        // Detectors: decide from analysers' facts (C2 port/protocol mismatch, beaconing, lateral movement, …); rules from Rules/.
        .target(name: "Detectors", dependencies: ["PacketCore", "Events", "Analyzers", "ConfigKit"], swiftSettings: hotPath),
        // The host-level stage: the typed facts workers send, their one codec, the detectors that aggregate
        // across flows behind the `HostDetector` protocol, the per-worker SPSC rings and the watermark merge.
        .target(name: "HostStage", dependencies: ["PacketCore", "Events", "Analyzers", "Detectors", "ConfigKit",
                                                  .product(name: "Logging", package: "swift-log")], swiftSettings: hotPath),
        // libpcap sources (offline files now, live interfaces later).
        .target(name: "Capture", dependencies: ["CPcap", "PacketCore", "CSensorShims"], swiftSettings: hotPath),
        // Event sinks: stdout, file (Kafka and syslog join here).
        .target(name: "Outputs", dependencies: ["Events", "PacketCore", "CRdKafka", .product(name: "Logging", package: "swift-log"),
                                                .product(name: "NIOCore", package: "swift-nio"),
                                                .product(name: "NIOPosix", package: "swift-nio"),
                                                .product(name: "NIOTLS", package: "swift-nio"),
                                                .product(name: "NIOSSL", package: "swift-nio-ssl")]),
        // GeoIP/ASN enrichment (libmaxminddb), plugged into the emitter through `EventEnricher`.
        .target(name: "Enrichment", dependencies: ["CMaxMindDB", "PacketCore", "Events",
                                                   .product(name: "Logging", package: "swift-log")]),
        // librdkafka's mock cluster on loopback, for the Kafka output tests and benchmark.
        .executableTarget(name: "kafka-mock-broker", dependencies: ["CRdKafka"]),
        // YAML with line-numbered errors, shared by the config file and every rules file.
        .target(name: "ConfigKit", dependencies: [.product(name: "Yams", package: "Yams")]),
        // Threat intelligence: indicator files (lists, CSV, STIX 2.1, MISP), lookup structures, the matcher.
        .target(name: "ThreatIntel", dependencies: [
            "PacketCore", "Events", "ConfigKit", .product(name: "Logging", package: "swift-log"),
        ]),
        // Evidence: lookback ring, targeted pcapng capture on alerts, age encryption, custody log.
        .target(name: "Evidence", dependencies: [
            "PacketCore", "CSensorShims", "Events", "ConfigKit", .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: hotPath),
        // The composition root: configuration, per-process resources, analyser families, pipeline wiring, services.
        .target(name: "SensorRuntime", dependencies: [
            "PacketCore", "CSensorShims", "Events", "Capture", "Outputs", "ConfigKit", "Analyzers",
            "Evidence",
            "Enrichment",
            "Detectors",
            "HostStage",
            "ThreatIntel",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "Yams", package: "Yams"),
            .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            .product(name: "Prometheus", package: "swift-prometheus"),
        ], swiftSettings: hotPath),
        // `sensor report`: one self-contained HTML page from events (a replay's, or NDJSON files).
        .target(name: "Report", dependencies: ["PacketCore", "Events", "Detectors", .product(name: "Crypto", package: "swift-crypto")]),
        // The CLI. `BuildInfo` stamps the commit and build date `--version` prints.
        .executableTarget(name: "sensor", dependencies: [
            "SensorRuntime",
            "Analyzers",
            "Report",
            "Evidence",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ], plugins: ["BuildInfo"]),
        .plugin(name: "BuildInfo", capability: .buildTool()),

        // Shared by the test targets: runs the real sensor binary and reference tools.
        .target(name: "TestSupport", path: "Tests/TestSupport"),

        .testTarget(name: "PacketCoreTests", dependencies: ["PacketCore", "TestSupport"]),
        .testTarget(name: "EventsTests", dependencies: ["Events", "TestSupport"]),
        .testTarget(name: "AnalyzersTests", dependencies: ["Analyzers", "TestSupport", .product(name: "Crypto", package: "swift-crypto"),
                                                           .product(name: "_CryptoExtras", package: "swift-crypto")]),
        .testTarget(name: "CaptureTests", dependencies: ["Capture", "TestSupport"]),
        .testTarget(name: "DetectorsTests", dependencies: ["Detectors", "Analyzers", "ConfigKit", "TestSupport", "Events", "PacketCore"]),
        .testTarget(name: "ConfigKitTests", dependencies: ["ConfigKit"]),
        .testTarget(name: "SensorRuntimeTests", dependencies: ["SensorRuntime", "Capture", "PacketCore", "TestSupport"]),
        .testTarget(name: "HostStageTests", dependencies: ["HostStage", "Detectors", "Analyzers", "ConfigKit", "Events", "PacketCore", "TestSupport"]),
        .testTarget(name: "SensorCLITests", dependencies: ["SensorRuntime", "HostStage", "TestSupport"]),
        .testTarget(name: "EvidenceTests", dependencies: [
            "Evidence", "SensorRuntime", "Capture", "TestSupport", .product(name: "Crypto", package: "swift-crypto"),
        ]),
        .testTarget(name: "OutputsTests", dependencies: ["Outputs", "TestSupport"]),
        .testTarget(name: "EnrichmentTests", dependencies: ["Enrichment", "TestSupport"]),
        .testTarget(name: "ThreatIntelTests", dependencies: ["ThreatIntel", "TestSupport"]),
        .testTarget(name: "ReportTests", dependencies: ["Report"]),
    ],
    swiftLanguageModes: [.v5]
)
