// swift-tools-version: 6.1
// keyline — factory provisioning and key escrow for Particle devices.
// One target per concern (see ../shared/docs/design.md); a lower layer never imports a higher one.
import PackageDescription

let package = Package(
    name: "keyline",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "keyline", targets: ["keyline"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        // Cryptographic dependencies pinned exactly (Package.resolved cannot be committed here): an
        // upgrade of what encrypts escrow backups and verifies the store's TLS is a reviewed change.
        .package(url: "https://github.com/apple/swift-crypto", exact: "4.5.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", exact: "2.37.6"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        // HTTP for the S3 escrow store (non-blocking NIO, TLS via swift-nio-ssl, verification on).
        .package(url: "https://github.com/swift-server/async-http-client", exact: "1.37.0"),
    ],
    targets: [
        // System libraries, found with pkg-config.
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CLibPQ", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        .systemLibrary(name: "CLibUSB", pkgConfig: "libusb-1.0", providers: [.apt(["libusb-1.0-0-dev"])]),

        // Layers, lowest first. FailurePolicy: the failure classes every layer's errors report.
        .target(name: "FailurePolicy"),
        .target(name: "DeviceKeys", dependencies: ["COpenSSL", "FailurePolicy"]),
        .target(name: "DFU", dependencies: ["FailurePolicy"]),
        .target(name: "USB", dependencies: ["CLibUSB", "DFU", "FailurePolicy"]),
        .target(name: "ParticleDevice", dependencies: ["DFU", "DeviceKeys", "FailurePolicy"]),
        .target(name: "Escrow", dependencies: [
            // ParticleDevice: the platform table, so a backup is validated the same way written and read.
            "DeviceKeys", "ParticleDevice", "FailurePolicy",
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),  // named only to pin its version
        ]),
        .target(name: "Registry", dependencies: ["CLibPQ", "FailurePolicy"]),
        .target(name: "Simulator", dependencies: ["DFU", "ParticleDevice", "DeviceKeys", "FailurePolicy"]),
        .target(name: "Pipeline", dependencies: [
            "DFU", "USB", "ParticleDevice", "DeviceKeys", "Escrow", "Registry", "FailurePolicy",
            .product(name: "Yams", package: "Yams"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "keyline", dependencies: [
            "DeviceKeys", "ParticleDevice", "DFU", "USB", "Escrow", "Registry", "Pipeline", "Simulator", "FailurePolicy",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // Benchmarks are an executable, never timed assertions in tests (`make bench`).
        .executableTarget(name: "keyline-bench", dependencies: [
            "DeviceKeys", "ParticleDevice", "DFU", "USB", "Escrow", "Registry", "Simulator", "Pipeline",
            "TestSupport",  // crafted inputs (HostileKeys), shared with the tests
        ], path: "Benchmarks", exclude: ["provision-bench.sh", "crash-bench.sh"]),

        // Shared test code (child processes, scratch directories); Foundation only.
        .target(name: "TestSupport", dependencies: ["Registry"], path: "Tests/TestSupport"),
        .testTarget(name: "DeviceKeysTests", dependencies: ["DeviceKeys", "COpenSSL", "TestSupport"]),
        .testTarget(name: "ParticleDeviceTests", dependencies: ["ParticleDevice", "DeviceKeys", "TestSupport"], resources: [.copy("Fixtures")]),
        .testTarget(name: "DFUTests", dependencies: ["DFU"]),
        .testTarget(name: "SimulatorTests", dependencies: ["Simulator", "DFU", "ParticleDevice", "DeviceKeys", "FailurePolicy", "TestSupport"]),
        .testTarget(name: "EscrowTests", dependencies: ["Escrow", "DeviceKeys", "FailurePolicy", "TestSupport"], resources: [.copy("Fixtures")]),
        .testTarget(name: "RegistryTests", dependencies: ["Registry", "TestSupport"]),
        .testTarget(name: "PipelineTests", dependencies: [
            "Pipeline", "Registry", "DeviceKeys", "ParticleDevice", "DFU", "USB", "Escrow", "Simulator", "FailurePolicy", "TestSupport",
        ]),
        .testTarget(name: "CLITests", dependencies: [
            "keyline", "DeviceKeys", "DFU", "USB", "ParticleDevice", "Simulator", "Escrow", "Registry", "Pipeline", "TestSupport",
        ]),
    ],
    swiftLanguageModes: [.v6]
)
