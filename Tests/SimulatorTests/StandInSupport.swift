import DFU
import Foundation
import Simulator

/// Paths and subprocesses for tests that go through the libusb stand-in.
enum StandInSupport {
    /// The package root, from this file's location (Tests/SimulatorTests/…).
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The folder holding the stand-in `libusb-1.0.so.0`, built with `make standin` if missing
    /// (`make test` builds it first).
    static func libraryDirectory() throws -> String {
        let directory = packageRoot.appendingPathComponent(".build/standin")
        let library = directory.appendingPathComponent("libusb-1.0.so.0").path
        if !FileManager.default.fileExists(atPath: library) {
            let result = try run("/usr/bin/make", ["-s", "-C", packageRoot.path, "standin"])
            guard result.status == 0 else { throw SubprocessFailure(command: "make standin", result: result) }
        }
        return directory.path
    }

    /// A fresh, short socket path (Unix socket paths are limited to 107 bytes).
    static func socketPath() -> String {
        "/tmp/keyline-test-\(UUID().uuidString.prefix(8)).sock"
    }

    /// The environment that makes a child process load the stand-in and talk to `socket`.
    static func environment(socket: String) throws -> [String: String] {
        var environment = ProcessInfo.processInfo.environment
        environment["LD_LIBRARY_PATH"] = try libraryDirectory()
        environment["KEYLINE_SIM_SOCKET"] = socket
        return environment
    }

    struct Result: Sendable {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    struct SubprocessFailure: Error, CustomStringConvertible {
        var command: String
        var result: Result
        var description: String { "\(command) exited \(result.status)\nstdout: \(result.stdout)\nstderr: \(result.stderr)" }
    }

    /// Runs a program to completion with output captured in files (no pipe can fill up); the
    /// wait happens in Foundation's termination handler, not on a blocked pool thread.
    static func run(_ executable: String, _ arguments: [String], environment: [String: String]? = nil,
                    currentDirectory: URL? = nil) throws -> Result {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("keyline-run-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        let out = scratch.appendingPathComponent("stdout"), err = scratch.appendingPathComponent("stderr")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        _ = FileManager.default.createFile(atPath: err.path, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let environment { process.environment = environment }
        if let currentDirectory { process.currentDirectoryURL = currentDirectory }
        process.standardOutput = try FileHandle(forWritingTo: out)
        process.standardError = try FileHandle(forWritingTo: err)
        let done = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in done.signal() }
        try process.run()
        done.wait()
        return Result(status: process.terminationStatus,
                      stdout: (try? String(contentsOf: out, encoding: .utf8)) ?? "",
                      stderr: (try? String(contentsOf: err, encoding: .utf8)) ?? "")
    }

    /// `run` on a dedicated thread, awaited without blocking the cooperative pool.
    static func runAsync(_ executable: String, _ arguments: [String], environment: [String: String]? = nil,
                         currentDirectory: URL? = nil) async throws -> Result {
        try await withCheckedThrowingContinuation { continuation in
            Thread {
                continuation.resume(with: Swift.Result { try run(executable, arguments, environment: environment, currentDirectory: currentDirectory) })
            }.start()
        }
    }
}
