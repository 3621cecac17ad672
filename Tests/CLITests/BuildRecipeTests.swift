import Foundation
import Testing
import TestSupport

/// The Makefile and Package.swift promises a fresh machine depends on, checked without running
/// them: `make -n` prints the recipes it would run, in order.
@Suite("Build recipes")
struct BuildRecipeTests {
    static let root = TestPostgres.packageRoot

    static func dryRun(_ arguments: [String]) async throws -> [Substring] {
        let result = try await ChildProcess.run("make", ["-n", "-C", root.path] + arguments, timeout: .seconds(60))
        try #require(result.status == 0, "make -n \(arguments): \(result.stderr)")
        return result.lines
    }

    @Test("the libusb stand-in is compiled only after deps has installed the libusb headers (make -j)")
    func standInWaitsForDeps() async throws {
        // -W: as if the stand-in's source had just changed, so its recipe is due.
        let lines = try await Self.dryRun(["-W", "Sources/libusb-standin/standin.c", ".build/standin/libusb-1.0.so.0"])
        let deps = try #require(lines.firstIndex { $0.contains("dpkg-query") }, "deps is not a prerequisite of the stand-in")
        let compile = try #require(lines.firstIndex { $0.contains("gcc -std=c11") }, "the stand-in recipe did not run")
        #expect(deps < compile)
    }

    @Test("make clean stops the local PostgreSQL cluster and S3 server before removing .build")
    func cleanStopsServers() async throws {
        let lines = try await Self.dryRun(["clean"])
        let remove = try #require(lines.firstIndex { $0.contains("rm -rf .build") })
        let stopCluster = try #require(lines.firstIndex { $0.contains("pg_ctl") && $0.contains("stop") }, "clean leaves the cluster running")
        let stopS3 = try #require(lines.firstIndex { $0.contains(".s3/pid") && $0.contains("kill") }, "clean leaves the S3 server running")
        #expect(stopCluster < remove && stopS3 < remove)
    }

    @Test("make test ignores the shell's DATABASE_URL; KEYLINE_TEST_DATABASE_URL names another server")
    func testTargetNeverUsesTheShellsDatabase() async throws {
        let foreign = "postgresql://prod.example/factory"
        let result = try await ChildProcess.run("make", ["-s", "-C", Self.root.path, "db-env"],
                                                environment: ["DATABASE_URL": foreign],
                                                unsetting: ["KEYLINE_TEST_DATABASE_URL"], timeout: .seconds(60))
        #expect(result.status == 0)
        #expect(!result.stdout.contains(foreign) && result.stdout.contains("DATABASE_URL= "), "\(result.stdout)")
        let explicit = try await ChildProcess.run("make", ["-s", "-C", Self.root.path, "db-env"],
                                                  environment: ["DATABASE_URL": foreign, "KEYLINE_TEST_DATABASE_URL": "postgresql://test.example/t"],
                                                  timeout: .seconds(60))
        #expect(explicit.stdout.contains("DATABASE_URL=\"postgresql://test.example/t\"") && !explicit.stdout.contains(foreign))
    }

    @Test("the cryptographic dependencies are pinned to exact versions")
    func cryptographicDependenciesArePinned() throws {
        let manifest = try String(contentsOf: Self.root.appendingPathComponent("Package.swift"), encoding: .utf8)
        for package in ["apple/swift-crypto", "apple/swift-nio-ssl", "swift-server/async-http-client"] {
            let line = manifest.split(separator: "\n").first { $0.contains("github.com/\(package)\"") }
            #expect(line?.contains("exact:") == true, "\(package) is not pinned: \(line.map(String.init) ?? "missing")")
        }
    }
}
