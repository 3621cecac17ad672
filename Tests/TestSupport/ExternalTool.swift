import Foundation

/// A real binary (Debian's `age`, `age-keygen`) for interop tests, found on PATH.
public struct ExternalTool {
    public let url: URL

    /// Throws `ChildProcess.Failure.notFound` when `name` is not installed (Debian package `age`).
    public init(_ name: String) throws { url = try ChildProcess.locate(name) }

    /// Runs the tool to completion, awaited without holding a cooperative thread.
    public func run(_ arguments: [String], stdin: [UInt8]? = nil) async throws -> ChildProcess.Result {
        try await ChildProcess.run(url.path, arguments, stdin: stdin, timeout: .seconds(120))
    }
}
