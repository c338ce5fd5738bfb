// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "swift-handoff",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "MosquittoClient", targets: ["MosquittoClient"]),
        .library(name: "MosquittoTestKit", targets: ["MosquittoTestKit"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.5.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
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
        // Private mosquitto brokers for tests, configured from broker/mosquitto.conf.
        .target(name: "MosquittoTestKit"),
        .testTarget(
            name: "MosquittoTestKitTests",
            dependencies: ["MosquittoTestKit"]
        ),
    ]
)
