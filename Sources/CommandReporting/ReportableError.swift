import Foundation

/// An error the CLI can report: a stable kind for scripts, a message for people, context fields
/// (file, device, port, step …) and the exit code. Each library's error types conform in this
/// target (`<Library>Errors.swift`); anything else is reported as an internal failure.
public protocol ReportableError: Error {
    var kind: String { get }
    var message: String { get }
    var context: [String: String] { get }
    var exit: KeylineExit { get }
}

extension ReportableError {
    public var context: [String: String] { [:] }
}

/// A CLI-level failure with its context, e.g. a file that cannot be read.
public struct CommandFailure: ReportableError {
    public var kind: String
    public var message: String
    public var context: [String: String] = [:]
    public var exit: KeylineExit

    public init(kind: String, message: String, context: [String: String] = [:], exit: KeylineExit) {
        self.kind = kind
        self.message = message
        self.context = context
        self.exit = exit
    }

    /// An input that could not be opened for streaming (`escrow encrypt|decrypt IN`).
    public static func cannotRead(_ path: String, _ error: Error) -> CommandFailure {
        let missing = !FileManager.default.fileExists(atPath: path)
        return CommandFailure(
            kind: missing ? "fileNotFound" : "fileUnreadable",
            message: missing ? "\(path): no such file" : "\(path): cannot be read (\(error.localizedDescription))",
            context: ["file": path], exit: .noInput)
    }

    public static func outputExists(_ path: String) -> CommandFailure {
        CommandFailure(kind: "outputExists", message: "\(path) already exists; keyline never overwrites it unless you pass --force",
                       context: ["file": path], exit: .cannotCreate)
    }

    /// A file keyline was asked to write lies inside an escrow store: only the store writes
    /// there, and only new objects (even --force never replaces one).
    public static func insideEscrowStore(_ path: String, store: String) -> CommandFailure {
        CommandFailure(kind: "outputInEscrowStore",
                       message: "\(path) is inside the escrow store \(store); keyline never writes or replaces a file there (not even with --force). Choose an output outside the store",
                       context: ["file": path, "store": store], exit: .cannotCreate)
    }

    public static func cannotWrite(_ path: String, errno code: Int32) -> CommandFailure {
        CommandFailure(kind: "cannotWrite", message: "\(path): cannot be written (\(String(cString: strerror(code))))",
                       context: ["file": path], exit: .cannotCreate)
    }
}

/// Adds context (typically the file) to a module error without losing its kind and exit code.
public struct ContextualError: ReportableError {
    public var underlying: ReportableError
    public var extra: [String: String]
    public var prefix: String

    public var kind: String { underlying.kind }
    public var message: String { prefix.isEmpty ? underlying.message : "\(prefix): \(underlying.message)" }
    public var context: [String: String] { underlying.context.merging(extra) { _, new in new } }
    public var exit: KeylineExit { underlying.exit }

    public init(underlying: ReportableError, extra: [String: String], prefix: String) {
        self.underlying = underlying
        self.extra = extra
        self.prefix = prefix
    }
}

extension Error {
    public var reportable: ReportableError {
        if let error = self as? ReportableError { return error }
        return CommandFailure(kind: "internal", message: "\(self)", exit: .software)
    }

    /// The error with `file` recorded and named in its message.
    public func about(file path: String) -> ReportableError {
        ContextualError(underlying: reportable, extra: ["file": path], prefix: path)
    }
}
