// swift-tools-version: 6.1
// keyline — factory provisioning and key escrow for Particle devices.
// One target per concern, lowest layer first (the table in ../shared/docs/design.md, "Layout");
// a target imports only targets listed before it and declares exactly what it imports.
// `make test` checks both (Tests/Layout/check-imports.py and its allowed graph, layers.txt).
import PackageDescription

let crypto = Target.Dependency.product(name: "Crypto", package: "swift-crypto")

let package = Package(
    name: "keyline",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "keyline", targets: ["keyline"]),
        .executable(name: "keyline-sim", targets: ["keyline-sim"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // Cryptographic dependencies pinned exactly (Package.resolved cannot be committed here): an
        // upgrade of what encrypts escrow backups and verifies the store's TLS is a reviewed change.
        .package(url: "https://github.com/apple/swift-crypto", exact: "4.5.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", exact: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        // HTTP for the S3 escrow store (non-blocking NIO, TLS via swift-nio-ssl, verification on).
        .package(url: "https://github.com/swift-server/async-http-client", exact: "1.37.0"),
        // The dashboard's HTTP server (issue 23): routing, streamed response bodies (Server-Sent
        // Events) and graceful shutdown on SIGINT/SIGTERM, on the same NIO the rest already uses.
        .package(url: "https://github.com/hummingbird-project/hummingbird", exact: "2.28.1"),
        // Graceful shutdown of the dashboard's open event streams (Hummingbird runs on it).
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
    ],
    targets: [
        // System libraries, found with pkg-config.
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CLibPQ", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        .systemLibrary(name: "CLibUSB", pkgConfig: "libusb-1.0", providers: [.apt(["libusb-1.0-0-dev"])]),

        // Vocabulary every layer shares: failure classes, and the one hex encoding.
        .target(name: "FailurePolicy"),
        .target(name: "HexEncoding"),
        // Local files: bounded whole-file reads of what operators and pipelines name (the one read
        // loop), and blocking file work off the cooperative pool (the one off-pool helper).
        .target(name: "LocalFiles", dependencies: ["FailurePolicy"]),

        // Keys and the Particle platform table (data and formats, no I/O).
        .target(name: "DeviceKeys", dependencies: ["COpenSSL", "FailurePolicy", "HexEncoding"]),
        .target(name: "ParticlePlatform", dependencies: ["DeviceKeys", "FailurePolicy"]),

        // Hardware: the device-bus seam, libusb behind it, DFU over it, a Particle device over DFU.
        .target(name: "DeviceBus", dependencies: ["FailurePolicy", "HexEncoding"]),
        .target(name: "USB", dependencies: ["CLibUSB", "DeviceBus", "FailurePolicy", "HexEncoding"]),
        .target(name: "DFU", dependencies: ["DeviceBus", "FailurePolicy", "HexEncoding"]),
        .target(name: "ParticleDevice", dependencies: [
            "DeviceBus", "DFU", "ParticlePlatform", "DeviceKeys", "FailurePolicy", "HexEncoding",
        ]),

        // Escrow: the age format alone, backups and stores, the S3 store apart (only its users link HTTP).
        .target(name: "Age", dependencies: ["FailurePolicy", crypto]),
        .target(name: "Escrow", dependencies: [
            "Age", "DeviceKeys", "ParticlePlatform", "FailurePolicy", "HexEncoding", "LocalFiles",
        ]),
        .target(name: "EscrowS3", dependencies: [
            "Escrow", "DeviceKeys", "FailurePolicy", "HexEncoding", "LocalFiles", crypto,
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),  // named only to pin its version
        ]),

        // Shamir's secret sharing over GF(2^8): a format, like Age, with no I/O (escrow custody).
        .target(name: "Shamir", dependencies: ["FailurePolicy"]),

        // The registry (PostgreSQL through libpq).
        .target(name: "Registry", dependencies: ["CLibPQ", "FailurePolicy", "HexEncoding"]),

        // The Particle Cloud API client and the cloud upload outbox's drainer (issue 20).
        .target(name: "ParticleCloud", dependencies: [
            "Registry", "FailurePolicy", "LocalFiles",
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ]),
        // Escrow custody: epochs split among custodians, recovery, reshare, rotation (issue 22).
        .target(name: "Custody", dependencies: [
            "Age", "Escrow", "EscrowS3", "Registry", "Shamir", "FailurePolicy", "HexEncoding", "LocalFiles",
        ]),

        // What stations, benches and auditors do.
        .target(name: "Provisioning", dependencies: [
            "DeviceBus", "DFU", "ParticleDevice", "ParticlePlatform", "DeviceKeys", "Age", "Escrow", "EscrowS3", "Registry",
            "ParticleCloud", "FailurePolicy", "LocalFiles", .product(name: "Yams", package: "Yams"),
        ]),
        .target(name: "RMABench", dependencies: [
            "DeviceBus", "DFU", "ParticleDevice", "ParticlePlatform", "DeviceKeys", "Age", "Escrow", "EscrowS3", "Registry", "FailurePolicy",
            "HexEncoding", "LocalFiles", "ParticleCloud", "Custody",
        ]),
        .target(name: "Audit", dependencies: ["Age", "Escrow", "Registry", "LocalFiles"]),
        // The read-only web view across stations (issue 23): floor, job and audit pages, live over SSE.
        .target(name: "Dashboard", dependencies: [
            "Audit", "Registry", "FailurePolicy",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),

        // Simulated devices and the libusb stand-in's server (never linked into `keyline`).
        .target(name: "Simulator", dependencies: [
            "DeviceBus", "DFU", "ParticleDevice", "ParticlePlatform", "DeviceKeys", "FailurePolicy", "HexEncoding",
            // The simulated cloud: an HTTP server (NIO's HTTP/1 codec) and its devices' client.
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
        ]),

        // Command lines: how errors and results are reported (exit codes, JSON), then the two executables.
        .target(name: "CommandReporting", dependencies: [
            "FailurePolicy", "DeviceKeys", "ParticlePlatform", "USB", "DFU", "ParticleDevice", "Age", "Escrow", "EscrowS3",
            "Registry", "Provisioning", "RMABench", "Audit", "LocalFiles", "ParticleCloud", "Custody", "Shamir", "Dashboard",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "keyline", dependencies: [
            "CommandReporting", "DeviceKeys", "ParticlePlatform", "USB", "ParticleDevice", "Age", "Escrow", "EscrowS3", "Registry",
            "Provisioning", "RMABench", "Audit", "ParticleCloud", "Custody", "Dashboard",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "keyline-sim", dependencies: [
            "CommandReporting", "Simulator", "ParticlePlatform", "DeviceBus", "DeviceKeys",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // Benchmarks are an executable, never timed assertions in tests (`make bench`).
        .executableTarget(name: "keyline-bench", dependencies: [
            "DeviceKeys", "ParticlePlatform", "DeviceBus", "DFU", "Age", "Escrow", "EscrowS3", "Registry", "Simulator",
            "ParticleCloud",  // the cloud outbox's drain against the simulated cloud
            "Custody", "TestSupport",  // crafted inputs (HostileKeys), shared with the tests
            "HeadlessBrowser",  // the dashboard's latency as a Chromium page sees it
        ], path: "Benchmarks", exclude: ["provision-bench.sh", "crash-bench.sh", "baseline-keyline.sh"]),

        // Shared test code (child processes, scratch directories, the test database).
        .target(name: "TestSupport", dependencies: ["Registry"], path: "Tests/TestSupport"),
        // Headless Chromium over the DevTools protocol (a WebSocket client on NIO), for the
        // dashboard's browser tests and bench.
        .target(name: "HeadlessBrowser", dependencies: [
            "TestSupport",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "NIOWebSocket", package: "swift-nio"),
        ], path: "Tests/HeadlessBrowser"),
        .testTarget(name: "HeadlessBrowserTests", dependencies: ["HeadlessBrowser", "TestSupport"]),
        .testTarget(name: "DeviceKeysTests", dependencies: ["DeviceKeys", "COpenSSL", "TestSupport"]),
        .testTarget(name: "ParticlePlatformTests", dependencies: [
            "ParticlePlatform", "ParticleDevice", "DeviceKeys", "FailurePolicy", "TestSupport",
        ],
                    resources: [.copy("Fixtures")]),
        .testTarget(name: "ParticleDeviceTests", dependencies: [
            "ParticleDevice", "ParticlePlatform", "DeviceBus", "DFU", "DeviceKeys", "FailurePolicy",
        ]),
        .testTarget(name: "DFUTests", dependencies: ["DFU", "DeviceBus"]),
        .testTarget(name: "SimulatorTests", dependencies: [
            "Simulator", "DeviceBus", "DFU", "ParticleDevice", "ParticlePlatform", "DeviceKeys", "FailurePolicy", "TestSupport",
        ]),
        .testTarget(name: "AgeTests", dependencies: ["Age", "TestSupport", crypto], resources: [.copy("Fixtures")]),
        .testTarget(name: "EscrowTests", dependencies: ["Escrow", "Age", "DeviceKeys", "FailurePolicy", "TestSupport"]),
        .testTarget(name: "EscrowS3Tests", dependencies: [
            "EscrowS3", "Escrow", "Age", "DeviceKeys", "FailurePolicy", "TestSupport",
        ], resources: [.copy("Fixtures")]),
        .testTarget(name: "ParticleCloudTests", dependencies: [
            "ParticleCloud", "Registry", "FailurePolicy", "TestSupport",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ]),
        .testTarget(name: "ShamirTests", dependencies: ["Shamir"]),
        .testTarget(name: "CustodyTests", dependencies: ["Custody", "Registry", "Age", "Escrow", "DeviceKeys", "TestSupport"]),
        .testTarget(name: "RegistryTests", dependencies: ["Registry", "FailurePolicy", "TestSupport"]),
        .testTarget(name: "ProvisioningTests", dependencies: [
            "Provisioning", "Registry", "DeviceKeys", "ParticleDevice", "ParticlePlatform", "DeviceBus", "Age", "Escrow",
            "Simulator", "FailurePolicy", "TestSupport",
        ]),
        .testTarget(name: "RMABenchTests", dependencies: [
            "RMABench", "Registry", "DeviceKeys", "ParticlePlatform", "DeviceBus", "DFU", "Age", "Escrow", "Simulator", "TestSupport",
        ]),
        .testTarget(name: "AuditTests", dependencies: ["Audit"]),
        .testTarget(name: "DashboardTests", dependencies: [
            "keyline", "Dashboard", "Audit", "Registry", "TestSupport",
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOCore", package: "swift-nio"),
        ]),
        .testTarget(name: "CLITests", dependencies: [
            "keyline", "keyline-sim", "CommandReporting", "DeviceKeys", "ParticlePlatform", "DeviceBus", "DFU", "USB", "CLibUSB", "ParticleDevice",
            "Simulator", "Age", "Escrow", "EscrowS3", "Registry", "Audit", "TestSupport", "Custody",
            "HeadlessBrowser",  // the dashboard in headless Chromium (DashboardBrowserTests)
        ]),
    ],
    swiftLanguageModes: [.v6]
)
