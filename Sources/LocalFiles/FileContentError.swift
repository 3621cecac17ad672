import FailurePolicy

/// An error about a file an operator named (a key that does not parse, an age file that does not
/// decrypt, a server key the platform cannot hold): the file, and the error reading, parsing or
/// decrypting it raised. Never the file's contents.
public struct FileContentError: Error, Sendable, CustomStringConvertible, ClassifiedError {
    public var path: String
    public var error: any Error

    public init(path: String, error: any Error) {
        self.path = path
        self.error = error
    }

    public var description: String { "\(path): \(error)" }

    public var failureClass: FailureClass { (error as? any ClassifiedError)?.failureClass ?? .badInput }
}
