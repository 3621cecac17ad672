import FailurePolicy

/// An error about a file the engineer named (a key file that does not parse or does not fit the
/// device, a server key the blob cannot hold): the file, and the error as it was.
public struct BenchFileError: Error, Sendable, CustomStringConvertible, ClassifiedError {
    public var path: String
    public var error: any Error

    public init(path: String, error: any Error) {
        self.path = path
        self.error = error
    }

    public var description: String { "\(path): \(error)" }

    public var failureClass: FailureClass { (error as? any ClassifiedError)?.failureClass ?? .badInput }
}
