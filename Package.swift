// swift-tools-version:6.0
// The sensor: capture → decode → flow → analysers → detectors → events → enrichment → sinks.
// Each target below is one room of that pipeline; see README.md "Layout".
import PackageDescription

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
    ],
    targets: [
        // Thin system-library targets: one per C library, nothing else.
        .systemLibrary(name: "CPcap", pkgConfig: "libpcap", providers: [.apt(["libpcap-dev"])]),
        .systemLibrary(name: "CRdKafka", pkgConfig: "rdkafka", providers: [.apt(["librdkafka-dev"])]),
        .systemLibrary(name: "CMaxMindDB", pkgConfig: "libmaxminddb", providers: [.apt(["libmaxminddb-dev"])]),
        // C macros and constants Swift cannot see (PACKET_FANOUT, CPU_SET, ...).
        .target(name: "CSensorShims"),

        // Packet views, L2–L4 decoders, flow key, Community ID, flow table. No Foundation.
        .target(name: "PacketCore"),
        // ECS event model, JSON writer into reused buffers, the EventSink seam. No Foundation.
        .target(name: "Events", dependencies: ["PacketCore"]),
        // Protocol analysers: TCP stream reassembly shared by all, then one folder per protocol.
        .target(name: "Analyzers", dependencies: ["PacketCore", "Events"]),
        // Detectors: decide on analysers' facts, tuned by Rules/ files (one folder per detector).
        .target(name: "Detectors", dependencies: ["PacketCore", "Events", "Analyzers", "ConfigKit"]),
        // libpcap sources (offline files now, live interfaces later).
        .target(name: "Capture", dependencies: ["CPcap", "PacketCore"]),
        // Event sinks: stdout, file (Kafka and syslog join here).
        .target(name: "Outputs", dependencies: ["Events", .product(name: "Logging", package: "swift-log")]),
        // YAML with line-numbered errors, shared by the config file and every rules file.
        .target(name: "ConfigKit", dependencies: [.product(name: "Yams", package: "Yams")]),
        // Config, pipeline wiring, services.
        .target(name: "SensorRuntime", dependencies: [
            "PacketCore", "Events", "Capture", "Outputs", "ConfigKit", "Analyzers", "Detectors",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "Yams", package: "Yams"),
        ]),
        // The CLI.
        .executableTarget(name: "sensor", dependencies: [
            "SensorRuntime",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),

        // Shared by the test targets: runs the real sensor binary and reference tools.
        .target(name: "TestSupport", path: "Tests/TestSupport"),

        .testTarget(name: "PacketCoreTests", dependencies: ["PacketCore"]),
        .testTarget(name: "EventsTests", dependencies: ["Events"]),
        .testTarget(name: "AnalyzersTests", dependencies: ["Analyzers", "TestSupport"]),
        .testTarget(name: "DetectorsTests", dependencies: ["Detectors", "Analyzers", "TestSupport"]),
        .testTarget(name: "CaptureTests", dependencies: ["Capture"]),
        .testTarget(name: "ConfigKitTests", dependencies: ["ConfigKit"]),
        .testTarget(name: "SensorRuntimeTests", dependencies: ["SensorRuntime"]),
        .testTarget(name: "SensorCLITests", dependencies: ["SensorRuntime", "TestSupport"]),
    ],
    swiftLanguageModes: [.v5]
)
