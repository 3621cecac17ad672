import Foundation

/// Runs a real binary (Debian's `age`, `age-keygen`) for interop tests. Output goes through
/// temporary files rather than pipes so a chatty tool can never deadlock, and the wait is a
/// termination handler, so no test thread blocks.
struct ExternalTool {
    struct Result {
        let status: Int32
        let stdout: [UInt8]
        let stderr: String
        var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
    }

    struct NotInstalled: Error, CustomStringConvertible {
        let name: String
        var description: String { "\(name) is not installed; run `make deps` (Debian package `age`)" }
    }

    let url: URL

    init(_ name: String) throws {
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":")
            .map { "\($0)/\(name)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let path else { throw NotInstalled(name: name) }
        url = URL(fileURLWithPath: path)
    }

    func run(_ arguments: [String], stdin: [UInt8]? = nil) async throws -> Result {
        let scratch = try TemporaryDirectory()
        let outURL = scratch.url.appendingPathComponent("stdout"), errURL = scratch.url.appendingPathComponent("stderr")
        _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
        let process = Process()
        process.executableURL = url
        process.arguments = arguments
        process.standardOutput = try FileHandle(forWritingTo: outURL)
        process.standardError = try FileHandle(forWritingTo: errURL)
        if let stdin {
            let inURL = scratch.url.appendingPathComponent("stdin")
            try Data(stdin).write(to: inURL)
            process.standardInput = try FileHandle(forReadingFrom: inURL)
        } else {
            process.standardInput = FileHandle.nullDevice
        }
        let status: Int32 = try await withCheckedThrowingContinuation { continuation in
            process.terminationHandler = { continuation.resume(returning: $0.terminationStatus) }
            do { try process.run() } catch {
                process.terminationHandler = nil
                continuation.resume(throwing: error)
            }
        }
        return Result(status: status, stdout: Array(try Data(contentsOf: outURL)),
                      stderr: String(decoding: try Data(contentsOf: errURL), as: UTF8.self))
    }
}

/// A fresh directory under the system temporary directory, removed when released.
final class TemporaryDirectory: Sendable {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("keyline-escrow-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    func file(_ name: String) -> URL { url.appendingPathComponent(name) }

    deinit { try? FileManager.default.removeItem(at: url) }
}
