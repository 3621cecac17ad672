import ArgumentParser
import Foundation

/// Options every command shares.
public struct OutputOptions: ParsableArguments {
    @Flag(name: .long, help: "Print results and errors as JSON on standard output.")
    public var json = false

    public init() {}
}

public enum CLI {
    /// Runs a command body, reporting any failure for people (stderr) or as JSON (stdout) and
    /// exiting with its documented code.
    public static func run(json: Bool, _ body: () async throws -> Void) async throws {
        do {
            try await body()
        } catch let exit as ExitCode {
            throw exit
        } catch {
            let failure = error.reportable
            if json {
                printJSON(["error": errorJSON(failure)])
            } else {
                FileHandle.standardError.write(Data("keyline: error: \(failure.message)\n".utf8))
            }
            throw ExitCode(failure.exit.rawValue)
        }
    }

    /// The "error" object of a JSON document: kind, message, exit code and context.
    public static func errorJSON(_ failure: ReportableError) -> [String: Any] {
        var object: [String: Any] = ["kind": failure.kind, "message": failure.message, "exitCode": Int(failure.exit.rawValue)]
        if !failure.context.isEmpty { object["context"] = failure.context }
        return object
    }

    public static func printJSON(_ object: Any) {
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]) else { return }
        FileHandle.standardOutput.write(data + Data("\n".utf8))
    }
}
