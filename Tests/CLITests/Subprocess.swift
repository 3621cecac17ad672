import Foundation

/// Runs keyline (and dfu-util) as child processes, the way a station operator or script does.
/// Output goes to files, so no pipe can fill up; waiting happens on a dedicated thread.
enum Subprocess {
    /// The package root, from this file's location (Tests/CLITests/…).
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The `keyline` executable built next to this test bundle.
    static var keyline: String { KeylineBinary.url.path }

    /// The folder holding the libusb stand-in, built with `make standin` if missing.
    static func standInDirectory() throws -> String {
        let directory = packageRoot.appendingPathComponent(".build/standin")
        if !FileManager.default.fileExists(atPath: directory.appendingPathComponent("libusb-1.0.so.0").path) {
            let result = try run("/usr/bin/make", ["-s", "-C", packageRoot.path, "standin"])
            guard result.status == 0 else { throw Failure(command: "make standin", result: result) }
        }
        return directory.path
    }

    /// The environment that makes a child load the stand-in and talk to the simulator at `socket`.
    static func standInEnvironment(socket: String) throws -> [String: String] {
        var environment = ProcessInfo.processInfo.environment
        environment["LD_LIBRARY_PATH"] = try standInDirectory()
        environment["KEYLINE_SIM_SOCKET"] = socket
        return environment
    }

    static func socketPath() -> String { "/tmp/keyline-cli-\(UUID().uuidString.prefix(8)).sock" }

    struct Result: Sendable {
        var status: Int32
        var stdout: String
        var stderr: String
        var lines: [Substring] { stdout.split(separator: "\n") }
    }

    struct Failure: Error, CustomStringConvertible {
        var command: String
        var result: Result
        var description: String { "\(command) exited \(result.status)\nstdout: \(result.stdout)\nstderr: \(result.stderr)" }
    }

    static func run(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) throws -> Result {
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

    /// `run` on its own thread, awaited without blocking the cooperative pool.
    static func runAsync(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) async throws -> Result {
        try await withCheckedThrowingContinuation { continuation in
            Thread { continuation.resume(with: Swift.Result { try run(executable, arguments, environment: environment) }) }.start()
        }
    }

    /// A long-running child (`keyline sim serve`), stopped with SIGTERM.
    final class Background: @unchecked Sendable {
        let process = Process()
        let log: URL

        init(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) throws {
            log = FileManager.default.temporaryDirectory.appendingPathComponent("keyline-bg-\(UUID().uuidString).log")
            _ = FileManager.default.createFile(atPath: log.path, contents: nil)
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = arguments
            if let environment { process.environment = environment }
            let handle = try FileHandle(forWritingTo: log)
            process.standardOutput = handle
            process.standardError = handle
            try process.run()
        }

        var output: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }

        /// Waits (polling, with Task.sleep) until `path` exists or the child exits.
        func waitForSocket(_ path: String, timeout: Duration = .seconds(30)) async throws {
            let deadline = ContinuousClock.now + timeout
            while !FileManager.default.fileExists(atPath: path) {
                guard process.isRunning, ContinuousClock.now < deadline else {
                    throw Failure(command: "keyline sim serve", result: Result(status: process.isRunning ? -1 : process.terminationStatus, stdout: output, stderr: ""))
                }
                try await Task.sleep(for: .milliseconds(20))
            }
        }

        /// SIGTERM, then waits for the exit; returns the exit status.
        @discardableResult
        func stop() async -> Int32 {
            if process.isRunning { process.terminate() }
            while process.isRunning { try? await Task.sleep(for: .milliseconds(10)) }
            try? FileManager.default.removeItem(at: log)
            return process.terminationStatus
        }
    }
}
