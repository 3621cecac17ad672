import Foundation
import TestSupport

/// Runs the built `keyline` executable, which SwiftPM places next to the test bundle.
enum KeylineBinary {
    static let url: URL = {
        let bin = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
        return bin.appendingPathComponent("keyline")
    }()

    /// keyline with `arguments`, awaited without holding a cooperative thread. `environment` is
    /// added to the test process's own.
    @discardableResult
    static func run(_ arguments: [String], in directory: URL? = nil, environment: [String: String] = [:],
                    stdin: Data? = nil) async throws -> ChildProcess.Result {
        try await ChildProcess.run(url.path, arguments, in: directory, environment: environment, stdin: stdin.map(Array.init) ?? [],
                                   timeout: .seconds(300))
    }
}

extension ChildProcess.Result {
    /// The single JSON object printed with --json.
    func json() throws -> [String: Any] {
        let line = stdout.split(separator: "\n").last.map(String.init) ?? ""
        guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            throw CLITestFailure("not a JSON object: \(stdout)")
        }
        return object
    }
}

/// Runs the built `keyline-sim` executable (the simulator's own command line), next to `keyline`.
enum KeylineSimBinary {
    static let url: URL = KeylineBinary.url.deletingLastPathComponent().appendingPathComponent("keyline-sim")

    @discardableResult
    static func run(_ arguments: [String], in directory: URL? = nil, environment: [String: String] = [:]) async throws -> ChildProcess.Result {
        try await ChildProcess.run(url.path, arguments, in: directory, environment: environment, timeout: .seconds(300))
    }
}

struct CLITestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A scratch directory per test.
typealias TemporaryDirectory = ScratchDirectory

extension ScratchDirectory {
    convenience init() throws { try self.init(label: "cli") }

    /// Runs a shell command in this directory (for interop peers such as `openssl`); its standard
    /// output, or `ChildProcess.Failure.exited` when it fails.
    @discardableResult
    func shell(_ command: String) async throws -> String {
        try await ChildProcess.run("/bin/sh", ["-c", command], in: url, timeout: .seconds(120)).requireSuccess().stdout
    }
}
