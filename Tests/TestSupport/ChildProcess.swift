import Foundation

/// Runs a program to completion the way the tests need it: arguments, working directory, extra
/// environment, optional stdin bytes and an optional time limit; returns the exit status and all of
/// standard output and standard error.
///
/// Standard input is fed and both outputs are drained on their own threads while the child runs,
/// so a child that writes (or reads) more than a pipe holds cannot deadlock. The `async` entry
/// point does all of its blocking on a dedicated thread: a test awaiting a child holds none of
/// Swift's cooperative threads (two on a two-core machine) while the child runs.
public enum ChildProcess {
    /// What a finished child left behind.
    public struct Result: Sendable {
        /// The command as run, for messages.
        public var command: String
        /// The exit status, or the signal number when `terminatedBySignal`.
        public var status: Int32
        public var terminatedBySignal: Bool
        public var stdoutBytes: [UInt8]
        public var stderrBytes: [UInt8]

        public init(command: String, status: Int32, terminatedBySignal: Bool, stdoutBytes: [UInt8], stderrBytes: [UInt8]) {
            self.command = command
            self.status = status
            self.terminatedBySignal = terminatedBySignal
            self.stdoutBytes = stdoutBytes
            self.stderrBytes = stderrBytes
        }

        public var stdout: String { String(decoding: stdoutBytes, as: UTF8.self) }
        public var stderr: String { String(decoding: stderrBytes, as: UTF8.self) }
        /// Standard output split into non-empty lines.
        public var lines: [Substring] { stdout.split(separator: "\n") }

        /// This result, or `Failure.exited` when the child did not exit with status 0.
        @discardableResult
        public func requireSuccess() throws -> Result {
            guard status == 0, !terminatedBySignal else { throw Failure.exited(self) }
            return self
        }
    }

    public enum Failure: Error, CustomStringConvertible {
        /// `name` is neither a path nor found on PATH.
        case notFound(name: String, path: String)
        /// The child ran longer than allowed and was killed; what it wrote until then is kept.
        case timedOut(after: Duration, partial: Result)
        /// From `requireSuccess()`.
        case exited(Result)

        public var description: String {
            switch self {
            case .notFound(let name, let path):
                return "\(name) is not installed (not found on PATH \(path)); run `make deps`"
            case .timedOut(let limit, let partial):
                return "`\(partial.command)` did not finish within \(limit) and was killed"
                    + "\nstdout: \(partial.stdout)\nstderr: \(partial.stderr)"
            case .exited(let result):
                let how = result.terminatedBySignal ? "was killed by signal \(result.status)" : "exited \(result.status)"
                return "`\(result.command)` \(how)\nstdout: \(result.stdout)\nstderr: \(result.stderr)"
            }
        }
    }

    /// Runs `executable` (a path, or a name looked up on PATH) to completion and awaits it
    /// without blocking a cooperative-pool thread.
    ///
    /// - Parameters:
    ///   - environment: added to (and overriding) this process's environment.
    ///   - unsetting: names removed from the child's environment.
    ///   - stdin: bytes fed to standard input, then closed; `nil` gives the child /dev/null.
    ///   - timeout: the child is killed (SIGTERM, then SIGKILL) and `Failure.timedOut` thrown
    ///     when it runs longer.
    public static func run(_ executable: String, _ arguments: [String] = [], in directory: URL? = nil,
                           environment: [String: String] = [:], unsetting: [String] = [],
                           stdin: [UInt8]? = nil, timeout: Duration? = nil) async throws -> Result {
        try await withCheckedThrowingContinuation { continuation in
            Thread {
                continuation.resume(with: Swift.Result {
                    try runBlocking(executable, arguments, in: directory, environment: environment, unsetting: unsetting,
                                    stdin: stdin, timeout: timeout)
                })
            }.start()
        }
    }

    /// The same as `run`, blocking the calling thread: only for callers that are not on the
    /// cooperative pool (a dedicated thread, one-time setup outside any task).
    public static func runBlocking(_ executable: String, _ arguments: [String] = [], in directory: URL? = nil,
                                   environment: [String: String] = [:], unsetting: [String] = [],
                                   stdin: [UInt8]? = nil, timeout: Duration? = nil) throws -> Result {
        let url = try locate(executable)
        let process = Process()
        process.executableURL = url
        process.arguments = arguments
        if let directory { process.currentDirectoryURL = directory }
        var childEnvironment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        for name in unsetting { childEnvironment[name] = nil }
        process.environment = childEnvironment

        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        let input = stdin.map { _ in Pipe() }
        process.standardInput = input ?? FileHandle.nullDevice

        try process.run()
        // Foundation closes the parent's copies of the child's pipe ends, so EOF arrives when the
        // child exits.
        let stdoutReader = PipeReader(out.fileHandleForReading)
        let stderrReader = PipeReader(err.fileHandleForReading)
        let feeder = input.flatMap { input in stdin.map { PipeFeeder(input.fileHandleForWriting, bytes: $0) } }

        // The time limit: a watchdog terminates the child (SIGKILL if SIGTERM is ignored).
        let watchdog = Watchdog()
        if let timeout {
            DispatchQueue.global().asyncAfter(deadline: .now() + timeout.dispatchInterval) {
                guard process.isRunning else { return }
                watchdog.fire()
                process.terminate()
                DispatchQueue.global().asyncAfter(deadline: .now() + 2) {
                    if process.isRunning { kill(process.processIdentifier, SIGKILL) }
                }
            }
        }
        // waitUntilExit (not a terminationHandler) is what reliably returns on Linux. It is safe
        // only on the thread that called run(), as here (a dedicated one when `run` is the caller;
        // see Process.waitForExit in ProcessExit.swift).
        process.waitUntilExit()
        let command = ([url.path] + arguments).joined(separator: " ")
        if watchdog.fired, let timeout {
            feeder?.wait()
            // A grandchild may still hold the pipes open; keep what arrived within a moment.
            let partial = Result(command: command, status: process.terminationStatus, terminatedBySignal: true,
                                 stdoutBytes: stdoutReader.wait(upTo: .seconds(2)),
                                 stderrBytes: stderrReader.wait(upTo: .seconds(2)))
            throw Failure.timedOut(after: timeout, partial: partial)
        }
        feeder?.wait()
        return Result(command: command, status: process.terminationStatus,
                      terminatedBySignal: process.terminationReason == .uncaughtSignal,
                      stdoutBytes: stdoutReader.wait(), stderrBytes: stderrReader.wait())
    }

    /// `executable` itself when it names a path, else the first match on PATH.
    public static func locate(_ executable: String) throws -> URL {
        if executable.contains("/") { return URL(fileURLWithPath: executable) }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for directory in path.split(separator: ":") where !directory.isEmpty {
            let candidate = "\(directory)/\(executable)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return URL(fileURLWithPath: candidate) }
        }
        throw Failure.notFound(name: executable, path: path)
    }
}

/// Set once a child's time limit has passed.
private final class Watchdog: @unchecked Sendable {
    private let lock = NSLock()
    private var didFire = false
    func fire() { lock.withLock { didFire = true } }
    var fired: Bool { lock.withLock { didFire } }
}

/// Reads a pipe to its end on a dedicated thread.
private final class PipeReader: @unchecked Sendable {
    private let lock = NSLock()
    private var data: [UInt8] = []
    private let done = DispatchSemaphore(value: 0)

    init(_ handle: FileHandle) {
        Thread.detachNewThread { [self] in
            while let chunk = try? handle.read(upToCount: 65536), !chunk.isEmpty {
                lock.withLock { data.append(contentsOf: chunk) }
            }
            try? handle.close()
            done.signal()
        }
    }

    func wait() -> [UInt8] {
        done.wait()
        done.signal()
        return lock.withLock { data }
    }

    /// What has arrived by the end of `limit`, whether or not the pipe has ended.
    func wait(upTo limit: Duration) -> [UInt8] {
        if done.wait(timeout: .now() + limit.dispatchInterval) == .success { done.signal() }
        return lock.withLock { data }
    }
}

/// Writes bytes to a pipe on a dedicated thread, then closes it. A child that exits without
/// reading everything makes the write fail (EPIPE); SIGPIPE is ignored so that only ends the write.
private final class PipeFeeder: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)

    init(_ handle: FileHandle, bytes: [UInt8]) {
        signal(SIGPIPE, SIG_IGN)
        Thread.detachNewThread { [done] in
            try? handle.write(contentsOf: Data(bytes))
            try? handle.close()
            done.signal()
        }
    }

    func wait() { done.wait() }
}

extension Duration {
    var dispatchInterval: DispatchTimeInterval {
        let (seconds, attoseconds) = components
        return .nanoseconds(Int(seconds) * 1_000_000_000 + Int(attoseconds / 1_000_000_000))
    }
}
