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
        .library(name: "HandoffService", targets: ["HandoffService"]),
        .library(name: "HandoffRedis", targets: ["HandoffRedis"]),
        // The operator CLI. Its argument-parser is resolved only by packages that use this product.
        .executable(name: "handoff", targets: ["HandoffCLI"]),
        // The examples and the benchmark are executable targets of this package (`swift run counter-example`,
        // `swift run -c release handoff-bench`), not products: adopters never build or resolve them.
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.5.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        // Only for the RepoChecks tests (parsing docker-compose.yml).
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // libmosquitto, found through pkg-config (Debian: libmosquitto-dev).
        .systemLibrary(
            name: "CMosquitto",
            pkgConfig: "libmosquitto",
            providers: [.apt(["libmosquitto-dev"])]
        ),
        // "Resume once: a result, the waiter's time limit or its cancellation, whichever comes first" (Completion),
        // and the one thread that keeps every time limit (TimeoutClock). No dependency: MosquittoClient and Handoff use it.
        .target(name: "AsyncCompletion"),
        .testTarget(
            name: "AsyncCompletionTests",
            dependencies: ["AsyncCompletion"]
        ),
        // A safe async MQTT client over libmosquitto.
        .target(
            name: "MosquittoClient",
            dependencies: [
                "AsyncCompletion",
                "CMosquitto",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The broker-independent core: labels, envelopes, the transport contract, the local backend,
        // versions and migrations, merge strategies and the typed API.
        .target(
            name: "Handoff",
            dependencies: [
                "AsyncCompletion",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        // The claim rule (docs/PROTOCOL.md §5, §9, §10.6) as a state machine without I/O: rounds, verdicts, what is
        // held, claims waiting; events in, actions out. HandoffMQTT drives it over MQTT. No broker, no libmosquitto.
        .target(
            name: "HandoffClaims",
            dependencies: ["Handoff"]
        ),
        // The claim state machine under scripted message orders, without a broker (runs without mosquitto installed).
        .testTarget(
            name: "HandoffClaimsTests",
            dependencies: ["HandoffClaims", "Handoff"]
        ),
        // The global backend: handoffs as retained messages on an MQTT broker (docs/PROTOCOL.md).
        .target(
            name: "HandoffMQTT",
            dependencies: [
                "AsyncCompletion",
                "Handoff",
                "HandoffClaims",
                "MosquittoClient",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        // A claim arbiter on Redis, for clustered brokers (docs/PROTOCOL.md §11): a minimal RESP client, no dependency.
        .target(
            name: "HandoffRedis",
            dependencies: ["Handoff", "HandoffMQTT"]
        ),
        // Handoff as a swift-service-lifecycle Service: participants adopt it in a few lines, graceful shutdown hands
        // their state off within a budget, outcomes are logged and counted.
        .target(
            name: "HandoffService",
            dependencies: [
                "AsyncCompletion",
                "Handoff",
                "HandoffMQTT",
                "MosquittoClient",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        // The operator CLI `handoff` (README "Operating it"): lists, shows and watches what waits on a broker, requeues,
        // purges and claims, republishes fallback files. An executable of its own; the library does not depend on it.
        .executableTarget(
            name: "HandoffCLI",
            dependencies: [
                "AsyncCompletion",
                "Handoff",
                "HandoffMQTT",
                "HandoffRedis",
                "MosquittoClient",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Drives the built `handoff` binary against private brokers.
        .testTarget(
            name: "HandoffCLITests",
            dependencies: [
                "Handoff", "HandoffMQTT", "MosquittoClient", "MosquittoTestKit", .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The Redis claim arbiter against a private redis-server (and mosquitto).
        .testTarget(
            name: "HandoffRedisTests",
            dependencies: ["ClusterTestKit", "Handoff", "HandoffMQTT", "HandoffRedis", "MosquittoClient", "MosquittoTestKit"]
        ),
        // Private mosquitto brokers and a failure-injecting TCP proxy, for tests, demos and benchmarks.
        .target(name: "MosquittoTestKit"),
        // For tests: who won each handoff round in the broker's order, seen by a plain MQTT client (RoundObserver).
        .target(
            name: "HandoffTestKit",
            dependencies: ["Handoff", "HandoffClaims", "HandoffMQTT", "MosquittoClient"]
        ),
        .testTarget(
            name: "MosquittoClientTests",
            dependencies: ["MosquittoClient", "MosquittoTestKit"]
        ),
        // Unit tests of the core: no broker, no libmosquitto.
        .testTarget(
            name: "HandoffTests",
            dependencies: ["Handoff", "HandoffTestSupport", "MosquittoTestKit"]
        ),
        // What the unit and integration tests share: the transport conformance scenarios and small helpers.
        .target(
            name: "HandoffTestSupport",
            dependencies: ["Handoff", "MosquittoTestKit"],
            path: "Tests/HandoffTestSupport"
        ),
        // Integration tests of the MQTT backend against private mosquitto brokers (and the Python client).
        .testTarget(
            name: "HandoffMQTTTests",
            dependencies: ["Handoff", "HandoffMQTT", "HandoffTestKit", "HandoffTestSupport", "MosquittoClient", "MosquittoTestKit"]
        ),
        .testTarget(
            name: "HandoffServiceTests",
            dependencies: [
                "Handoff",
                "HandoffMQTT",
                "HandoffService",
                "MosquittoClient",
                "MosquittoTestKit",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ServiceLifecycleTestKit", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
            ]
        ),
        // Checks of the repository's files: docker-compose.yml mounts what exists, and the broker config the tests use.
        .testTarget(
            name: "RepoChecks",
            dependencies: ["MosquittoTestKit", .product(name: "Yams", package: "Yams")]
        ),
        // Examples (Examples/README.md): the minimal counter, and the IoT edge gateway with its sensors and demo.
        .executableTarget(
            name: "counter-example",
            dependencies: [
                "HandoffService",
                "HandoffMQTT",
                "MosquittoClient",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Examples/Counter"
        ),
        .target(
            name: "EdgeGatewayKit",
            dependencies: ["Handoff"],
            path: "Examples/EdgeGateway/Kit"
        ),
        .testTarget(
            name: "EdgeGatewayKitTests",
            dependencies: ["EdgeGatewayKit", "Handoff"]
        ),
        .executableTarget(
            name: "edge-gateway",
            dependencies: [
                "EdgeGatewayKit",
                "Handoff",
                "HandoffMQTT",
                "HandoffService",
                "MosquittoClient",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Examples/EdgeGateway/Gateway"
        ),
        .executableTarget(
            name: "edge-sensors",
            dependencies: [
                "EdgeGatewayKit",
                "MosquittoClient",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Examples/EdgeGateway/Sensors"
        ),
        .executableTarget(
            name: "handoff-demo",
            dependencies: ["EdgeGatewayKit", "MosquittoTestKit"],
            path: "Examples/EdgeGateway/Demo"
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
        // Private ejabberd clusters on loopback (mod_mqtt), for tests of clustered brokers (issue 14); Debian: ejabberd.
        .target(
            name: "ClusterTestKit",
            dependencies: ["MosquittoTestKit"]
        ),
        // What a 2-node ejabberd 23.01 cluster does to live, retained and cleared messages, and to the handoff transport.
        .testTarget(
            name: "ClusterTests",
            dependencies: [
                "ClusterTestKit", "Handoff", "HandoffMQTT", "HandoffRedis", "HandoffTestKit", "MosquittoClient",
                .product(name: "Logging", package: "swift-log"),
            ]
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
                "HandoffService",
                "MosquittoClient",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Benchmarks/HandoffBench"
        ),
    ]
)
