import Foundation
import TestSupport

/// Runs keyline (and dfu-util) as child processes, the way a station operator or script does:
/// to completion through TestSupport's `ChildProcess`, or in the background (`keyline-sim serve`).
enum Subprocess {
    /// The package root, from this file's location (Tests/CLITests/…).
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The `keyline` executable built next to this test bundle.
    static var keyline: String { KeylineBinary.url.path }

    /// The `keyline-sim` executable built next to it.
    static var keylineSim: String { KeylineSimBinary.url.path }

    /// The folder holding the libusb stand-in, built with `make standin` if missing.
    static func standInDirectory() throws -> String {
        let directory = packageRoot.appendingPathComponent(".build/standin")
        if !FileManager.default.fileExists(atPath: directory.appendingPathComponent("libusb-1.0.so.0").path) {
            // Synchronous: called once, and `make test` has built it already.
            try ChildProcess.runBlocking("/usr/bin/make", ["-s", "-C", packageRoot.path, "standin"],
                                         timeout: .seconds(300)).requireSuccess()
        }
        return directory.path
    }

    /// The variables that make a child load the stand-in and talk to the simulator at `socket`
    /// (added to the test process's environment).
    static func standInEnvironment(socket: String) throws -> [String: String] {
        ["LD_LIBRARY_PATH": try standInDirectory(), "KEYLINE_SIM_SOCKET": socket]
    }

    /// `executable` run to completion, awaited without holding a cooperative thread.
    static func run(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) async throws -> ChildProcess.Result {
        try await ChildProcess.run(executable, arguments, environment: environment, timeout: .seconds(300))
    }

    static func socketPath() -> String { "/tmp/keyline-cli-\(UUID().uuidString.prefix(8)).sock" }

    struct Failure: Error, CustomStringConvertible {
        var command: String
        var output: String
        var description: String { "\(command) stopped early\noutput: \(output)" }
    }

    /// A long-running child (`keyline-sim serve`), stopped with SIGTERM.
    final class Background: @unchecked Sendable {
        let process = Process()
        let log: URL

        init(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws {
            log = FileManager.default.temporaryDirectory.appendingPathComponent("keyline-bg-\(UUID().uuidString).log")
            _ = FileManager.default.createFile(atPath: log.path, contents: nil)
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = arguments
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
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
                    throw Failure(command: "keyline-sim serve (exit \(process.isRunning ? -1 : process.terminationStatus))", output: output)
                }
                try await Task.sleep(for: .milliseconds(20))
            }
        }

        /// SIGTERM, then waits for the exit; returns the exit status.
        @discardableResult
        func stop() async -> Int32 {
            if process.isRunning { process.terminate() }
            // A child that ignores SIGTERM is killed rather than waited for forever.
            if (try? await waitUntil(deadline: .seconds(30), "the child to exit after SIGTERM") { !process.isRunning }) == nil {
                kill(process.processIdentifier, SIGKILL)
                await process.waitForExit()
            }
            try? FileManager.default.removeItem(at: log)
            return process.terminationStatus
        }
    }
}
