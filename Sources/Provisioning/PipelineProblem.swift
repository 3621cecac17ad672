import FailurePolicy

/// One thing wrong with a pipeline file: where (file, line, column, key path), what, and what to do.
public struct PipelineProblem: Sendable, Hashable, CustomStringConvertible {
    public var file: String
    /// 1-based; 0 when the problem concerns the whole file (it cannot be read) or the command line.
    public var line: Int
    public var column: Int?
    /// Dotted path of the key, e.g. `firmware[1].address`; empty for the whole file.
    public var keyPath: String
    public var message: String
    /// What to do about it.
    public var advice: String

    public init(file: String, line: Int, column: Int? = nil, keyPath: String, message: String, advice: String) {
        self.file = file
        self.line = line
        self.column = column
        self.keyPath = keyPath
        self.message = message
        self.advice = advice
    }

    /// `file:line:column: key: message — advice`, the shape compilers use, so editors jump to it.
    public var description: String {
        var location = file
        if line > 0 {
            location += ":\(line)"
            if let column { location += ":\(column)" }
        }
        let key = keyPath.isEmpty ? "" : "\(keyPath): "
        return "\(location): \(key)\(message)" + (advice.isEmpty ? "" : " — \(advice)")
    }
}

/// Every problem found in a pipeline file; nothing is touched while there is one.
public struct PipelineValidationError: Error, Sendable, Hashable, CustomStringConvertible, ClassifiedError {
    public var problems: [PipelineProblem]

    public init(problems: [PipelineProblem]) {
        self.problems = problems
    }

    /// A pipeline that is wrong stays wrong until someone edits it.
    public var failureClass: FailureClass { .badInput }

    public var description: String {
        let count = problems.count == 1 ? "1 problem" : "\(problems.count) problems"
        return "the pipeline has \(count):\n" + problems.map { "  \($0)" }.joined(separator: "\n")
    }
}
