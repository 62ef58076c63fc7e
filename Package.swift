// swift-tools-version: 6.2
//
// Lodestone: a durable event log for state-flip telemetry.
// Module map and the direction of dependencies: Docs/design.md, "Modules".

import PackageDescription

let strict: [SwiftSetting] = [
    .treatAllWarnings(as: .error),
]

let package = Package(
    name: "Lodestone",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "lodestone", targets: ["lodestone"]),
        .library(name: "LogFormat", targets: ["LogFormat"]),
        .library(name: "LogIO", targets: ["LogIO"]),
        .library(name: "LogStorage", targets: ["LogStorage"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
    ],
    targets: [
        // C: CRC-32C with SSE4.2 (three interleaved streams) and a slicing-by-8 fallback.
        .target(name: "CCRC32C"),
        // C: thread names and per-thread priorities (glibc declares them under _GNU_SOURCE).
        .target(name: "CThreads"),
        // C: the system's liblz4 (frame API).
        .systemLibrary(
            name: "CLZ4",
            pkgConfig: "liblz4",
            providers: [.apt(["liblz4-dev"])]
        ),
        .target(
            name: "LogFormat",
            dependencies: ["CCRC32C", "CLZ4"],
            swiftSettings: strict
        ),
        .target(
            name: "LogIO",
            dependencies: ["CThreads", .product(name: "SystemPackage", package: "swift-system")],
            swiftSettings: strict
        ),
        .target(
            name: "LogStorage",
            dependencies: [
                "LogFormat",
                "LogIO",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            swiftSettings: strict
        ),
        // Pauli-Z windows, figures, storms and rollups (Docs/spec/pauli-z.md): pure, over flip events.
        .target(
            name: "PauliZ",
            dependencies: ["LogFormat", .product(name: "DequeModule", package: "swift-collections")],
            swiftSettings: strict
        ),
        // Offline and server-side replay of a flip topic's segments into PauliZ.
        .target(
            name: "PauliZReplay",
            dependencies: ["PauliZ", "LogStorage", "LogFormat", "LogIO"],
            swiftSettings: strict
        ),
        // Seeded, realistic flip traffic: the traffic tool, the Pauli-Z benchmark, tests.
        .target(
            name: "FlipTraffic",
            dependencies: ["LogFormat", "LogSimulation"],
            swiftSettings: strict
        ),
        .target(
            name: "LogSimulation",
            dependencies: ["LogIO", "LogFormat"],
            swiftSettings: strict
        ),
        .target(
            name: "WireProtocol",
            dependencies: ["LogFormat", "PauliZ", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: strict
        ),
        .target(
            name: "LogServer",
            dependencies: [
                "WireProtocol", "LogStorage", "LogFormat", "LogIO", "PauliZ", "PauliZReplay",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "LogClient",
            dependencies: [
                "WireProtocol", "LogFormat",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // The seeded crash-and-fault simulation of the storage layer; test support, shared by
        // the test suite and Tools/Simulate (long runs). No production module imports it.
        .target(
            name: "LogStorageSimulation",
            dependencies: ["LogStorage", "LogSimulation", "LogFormat", "LogIO", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "lodestone",
            dependencies: [
                "LogFormat",
                "LogIO",
                "LogStorage",
                "LogServer",
                "LogClient",
                "WireProtocol",
                "PauliZ",
                "PauliZReplay",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // Long simulation runs (many seeds) outside `swift test`: Tools/simulate.
        .executableTarget(
            name: "lodestone-simulate",
            dependencies: [
                "LogStorageSimulation",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Tools/Simulate",
            swiftSettings: strict
        ),
        // Seeded flip traffic into a data directory or a file: Tools/traffic.
        .executableTarget(
            name: "lodestone-traffic",
            dependencies: [
                "FlipTraffic", "LogFormat", "LogIO", "LogStorage",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Tools/Traffic",
            swiftSettings: strict
        ),
        // Whole-system load over TCP against a running server: Tools/load.
        .executableTarget(
            name: "lodestone-load",
            dependencies: [
                "LogClient", "LogFormat", "WireProtocol",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Tools/Load",
            swiftSettings: strict
        ),
        .testTarget(
            name: "LogFormatTests",
            dependencies: ["LogFormat"],
            resources: [.copy("Fixtures")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "WireProtocolTests",
            dependencies: [
                "WireProtocol", "LogFormat", "PauliZ",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOTestUtils", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "PauliZTests",
            dependencies: ["PauliZ", "PauliZReplay", "LogStorage", "LogFormat", "LogIO"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "LogIOTests",
            dependencies: ["LogIO"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "LogStorageTests",
            dependencies: ["LogStorage", "LogSimulation", "LogStorageSimulation", "LogFormat", "LogIO", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "LogServerTests",
            dependencies: [
                "LogServer", "LogClient", "LogStorage", "LogFormat", "LogIO", "LogSimulation", "WireProtocol", "PauliZ", "PauliZReplay",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "LodestoneCLITests",
            dependencies: ["LogStorage", "LogFormat", "LogIO", "LogSimulation"],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "StorageBenchmarks",
            dependencies: [
                "LogFormat",
                "LogIO",
                "LogStorage",
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/StorageBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)
