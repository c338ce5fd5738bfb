// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "swift-handoff",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "MosquittoClient", targets: ["MosquittoClient"]),
        .library(name: "Handoff", targets: ["Handoff"]),
        .library(name: "HandoffMQTT", targets: ["HandoffMQTT"]),
        .library(name: "MosquittoTestKit", targets: ["MosquittoTestKit"]),
        .executable(name: "handoff-floor", targets: ["handoff-floor"]),
        .executable(name: "handoff-bench", targets: ["handoff-bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.5.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // libmosquitto, found through pkg-config (Debian: libmosquitto-dev).
        .systemLibrary(
            name: "CMosquitto",
            pkgConfig: "libmosquitto",
            providers: [.apt(["libmosquitto-dev"])]
        ),
        // A safe async MQTT client over libmosquitto.
        .target(
            name: "MosquittoClient",
            dependencies: [
                "CMosquitto",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The broker-independent core: labels, envelopes, the transport contract, the local backend,
        // versions and migrations, merge strategies and the typed API.
        .target(
            name: "Handoff",
            dependencies: [
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        // The global backend: handoffs as retained messages on an MQTT broker (docs/PROTOCOL.md).
        .target(
            name: "HandoffMQTT",
            dependencies: [
                "Handoff",
                "MosquittoClient",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Private mosquitto brokers and a failure-injecting TCP proxy, for tests, demos and benchmarks.
        .target(name: "MosquittoTestKit"),
        .testTarget(
            name: "MosquittoClientTests",
            dependencies: ["MosquittoClient", "MosquittoTestKit"]
        ),
        .testTarget(
            name: "HandoffTests",
            dependencies: ["Handoff", "HandoffMQTT", "MosquittoClient", "MosquittoTestKit"]
        ),
        // Benchmark floor: bare libmosquitto in C, the minimum MQTT traffic per job
        // (Benchmarks/Floor/README.md).
        .executableTarget(
            name: "handoff-floor",
            dependencies: ["CMosquitto"],
            path: "Benchmarks/Floor",
            exclude: ["README.md"],
            cSettings: [.define("_GNU_SOURCE")],
            linkerSettings: [.linkedLibrary("mosquitto"), .linkedLibrary("pthread"), .linkedLibrary("m")]
        ),
        .testTarget(
            name: "MosquittoTestKitTests",
            dependencies: ["MosquittoTestKit"]
        ),
        // The benchmark: swift-handoff against the floor, in the same run, on a private mosquitto
        // (docs/BENCHMARKS.md). Depends on handoff-floor so that `swift run handoff-bench` builds it too.
        .executableTarget(
            name: "handoff-bench",
            dependencies: [
                "handoff-floor",
                "CMosquitto",
                "Handoff",
                "HandoffMQTT",
                "MosquittoClient",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/HandoffBench"
        ),
    ]
)
