import Foundation

/// Why `waitUntil` gave up: the condition never held before the deadline.
public struct WaitTimedOut: Error, CustomStringConvertible {
    public var what: String
    public var deadline: Duration
    public var fileID: String
    public var line: Int

    public var description: String {
        "waited \(deadline) for \(what) at \(fileID):\(line), in vain: it never happened"
    }
}

/// Polls `condition` every `poll` until it holds; throws `WaitTimedOut` (failing the test with a
/// message) once `deadline` has passed, so a test whose condition never comes fails instead of
/// hanging. The default deadline is generous: these machines are shared and slow, and the limit
/// is there to turn a hang into a failure, not to time anything.
public func waitUntil(deadline: Duration = .seconds(120), poll: Duration = .milliseconds(10),
                      _ what: @autoclosure () -> String = "the condition",
                      fileID: String = #fileID, line: Int = #line,
                      _ condition: () async throws -> Bool) async throws {
    let end = ContinuousClock.now + deadline
    while !(try await condition()) {
        guard ContinuousClock.now < end else {
            throw WaitTimedOut(what: what(), deadline: deadline, fileID: fileID, line: line)
        }
        try await Task.sleep(for: poll)
    }
}
