import Foundation
import Simulator
import TestSupport

/// Paths and environments for tests that go through the libusb stand-in.
enum StandInSupport {
    /// The package root, from this file's location (Tests/SimulatorTests/…).
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The folder holding the stand-in `libusb-1.0.so.0`, built with `make standin` if missing
    /// (`make test` builds it first).
    static func libraryDirectory() throws -> String {
        let directory = packageRoot.appendingPathComponent(".build/standin")
        let library = directory.appendingPathComponent("libusb-1.0.so.0").path
        if !FileManager.default.fileExists(atPath: library) {
            // Synchronous: called once, and `make test` has built it already.
            try ChildProcess.runBlocking("/usr/bin/make", ["-s", "-C", packageRoot.path, "standin"],
                                         timeout: .seconds(300)).requireSuccess()
        }
        return directory.path
    }

    /// A fresh, short socket path (Unix socket paths are limited to 107 bytes).
    static func socketPath() -> String {
        "/tmp/keyline-test-\(UUID().uuidString.prefix(8)).sock"
    }

    /// The variables that make a child process load the stand-in and talk to `socket` (added to
    /// the test process's environment by `ChildProcess.run`).
    static func environment(socket: String) throws -> [String: String] {
        ["LD_LIBRARY_PATH": try libraryDirectory(), "KEYLINE_SIM_SOCKET": socket]
    }
}
