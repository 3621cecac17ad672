import Foundation
import Testing
import TestSupport
@testable import DeviceKeys

/// A process that exits while other threads are making keys exits cleanly: OpenSSL's exit-time
/// cleanup (which frees the locks those threads take) is off (OpenSSLRuntime). With it on, the
/// child below crashed on every run (SIGSEGV in CRYPTO_THREAD_read_lock on a freed lock), as the
/// test process itself once did at exit on CI.
@Suite struct OpenSSLExitTests {
    static let childVariable = "KEYLINE_TEST_OPENSSL_EXIT_CHILD"

    @Test func exitingWhileOtherThreadsMakeKeysIsClean() async throws {
        let testBinary = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        for run in 1...5 {
            let child = try await ChildProcess.run(
                testBinary, ["--testing-library", "swift-testing", "--filter", "OpenSSLExitTests/inTheChild"],
                environment: [Self.childVariable: "1", "SWIFT_BACKTRACE": "enable=no"], timeout: .seconds(120))
            #expect(!child.terminatedBySignal && child.status == 0,
                    "run \(run): status \(child.status), signal \(child.terminatedBySignal)\n\(child.stderr.suffix(2000))")
            #expect(child.stdout.contains("keys made before exit"), "run \(run): \(child.stdout.suffix(2000))")
        }
    }

    /// Runs only in the child the test above starts: keys are made on two threads without pause,
    /// and the process exits under them.
    @Test(.enabled(if: ProcessInfo.processInfo.environment[childVariable] != nil))
    func inTheChild() throws {
        let made = LockedCounter()
        for _ in 0..<2 {
            Thread.detachNewThread {
                while true {
                    _ = try? DevicePrivateKey.generate(.ec)
                    made.increment()
                }
            }
        }
        while made.value < 20 { usleep(1000) }
        // Straight to the file descriptor: exit(0) flushes stdio too, but the line must not depend on it.
        let line = Array("keys made before exit: \(made.value)\n".utf8)
        _ = line.withUnsafeBytes { write(STDOUT_FILENO, $0.baseAddress, $0.count) }
        exit(0)
    }
}
