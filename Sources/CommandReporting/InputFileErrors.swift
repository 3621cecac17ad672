import LocalFiles

// How an unreadable input file appears on the command line (kind, message, context, exit code).

extension InputFileError: ReportableError {
    public var kind: String {
        switch self {
        case .cannotOpen, .cannotRead: isMissing ? "fileNotFound" : "fileUnreadable"
        case .notARegularFile: "notARegularFile"
        case .tooLarge: "fileTooLarge"
        }
    }

    public var message: String { description }

    public var context: [String: String] {
        if case .tooLarge(let path, let limit, _) = self { return ["file": path, "limit": String(limit)] }
        return ["file": path]
    }

    public var exit: KeylineExit {
        if case .tooLarge = self { return .dataError }
        return .noInput
    }
}

/// Reported as the error it wraps, with the file named in the message and the context.
extension FileContentError: ReportableError {
    private var aboutFile: ReportableError { error.about(file: path) }
    public var kind: String { aboutFile.kind }
    public var message: String { aboutFile.message }
    public var context: [String: String] { aboutFile.context }
    public var exit: KeylineExit { aboutFile.exit }
}
