import Foundation
import Testing
import TestSupport

/// TestSupport's runner itself: the guarantees the other tests rely on.
@Suite struct ChildProcessTests {
    @Test func largeStdinAndStdoutDoNotDeadlock() async throws {
        // Far more than a pipe buffer (64 KiB) each way, so a runner that fed and read in turn would hang.
        let input = (0..<(4 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let result = try await ChildProcess.run("cat", stdin: input, timeout: .seconds(120))
        #expect(result.status == 0)
        #expect(result.stdoutBytes == input)
    }

    @Test func stdoutAndStderrAreKeptApartWithTheExitStatus() async throws {
        let result = try await ChildProcess.run("/bin/sh", ["-c", "printf out; printf err >&2; exit 3"])
        #expect(result.status == 3)
        #expect(result.stdout == "out")
        #expect(result.stderr == "err")
        #expect(throws: ChildProcess.Failure.self) { try result.requireSuccess() }
    }

    @Test func environmentIsAddedToOursAndCanUnsetNames() async throws {
        let result = try await ChildProcess.run("/bin/sh", ["-c", "printf '%s|%s' \"$KEYLINE_TEST_ADDED\" \"${PATH:+set}\""],
                                                environment: ["KEYLINE_TEST_ADDED": "yes"])
        #expect(result.stdout == "yes|set")
        // PATH is inherited from this process unless unset (env prints exactly what it was given).
        #expect(ProcessInfo.processInfo.environment["PATH"] != nil)
        let unset = try await ChildProcess.run("/usr/bin/env", unsetting: ["PATH"])
        #expect(unset.status == 0)
        #expect(!unset.lines.contains { $0.hasPrefix("PATH=") })
    }

    @Test func aChildOverItsTimeLimitIsKilledAndReported() async throws {
        await #expect {
            try await ChildProcess.run("/bin/sh", ["-c", "printf before; exec sleep 60"], timeout: .milliseconds(300))
        } throws: { error in
            guard case .timedOut(_, let partial) = error as? ChildProcess.Failure else { return false }
            return partial.terminatedBySignal && partial.stdout == "before"
        }
    }

    @Test func aNameNotOnPathIsReported() {
        #expect(throws: ChildProcess.Failure.self) {
            try ChildProcess.locate("keyline-no-such-tool-\(UUID().uuidString.prefix(8))")
        }
    }
}
