import Foundation
import Simulator
import Synchronization
import Testing

/// The stand-in server's connection threads must answer without Swift's cooperative pool: when
/// its few threads are all busy (2 on a station; a loaded test run), a LIST that waited for a
/// task on the pool left dfu-util blocked in its probe for tens of seconds.
@Suite struct StandInServerPoolTests {
    @Test func listsWhileEveryCooperativeThreadIsBlocked() async throws {
        let socketPath = "/tmp/keyline-pool-\(UUID().uuidString.prefix(8)).sock"
        let server = StandInServer(socketPath: socketPath, fleet: StandInServerStopTests.NoDevices())
        try server.start()
        defer { server.stop() }

        // Occupy every cooperative thread with a task that blocks until the LIST is over. The
        // pool is as wide as the machine; this test's own body frees its thread when it awaits.
        let width = ProcessInfo.processInfo.activeProcessorCount
        let gate = Gate()
        for _ in 0..<width {
            Task.detached { gate.block() }
        }
        let outcome: Result<Int32, StandInServerStopTests.SocketFailure> = await withCheckedContinuation { continuation in
            Thread {
                // Other suites' tasks may hold threads for a while; ours get them in the end.
                let deadline = Date().addingTimeInterval(60)
                while gate.blocked < width && Date() < deadline { usleep(1000) }
                let result: Result<Int32, StandInServerStopTests.SocketFailure>
                if gate.blocked < width {
                    result = .failure(.init(description: "the blocking tasks never all started"))
                } else {
                    do { result = .success(try StandInServerStopTests.connectAndList(socketPath)) }
                    catch let failure as StandInServerStopTests.SocketFailure { result = .failure(failure) }
                    catch { result = .failure(.init(description: "\(error)")) }
                }
                gate.open(width)
                continuation.resume(returning: result)
            }.start()
        }
        switch outcome {
        case .success(let fd): close(fd)
        case .failure(let failure): Issue.record("LIST with the cooperative pool blocked: \(failure)")
        }
    }

    /// Tasks that block their thread until opened, counting how many are blocked.
    final class Gate: Sendable {
        private let count = Mutex(0)
        private let release = DispatchSemaphore(value: 0)
        var blocked: Int { count.withLock { $0 } }
        func block() {
            count.withLock { $0 += 1 }
            release.wait()
        }
        func open(_ tasks: Int) { for _ in 0..<tasks { release.signal() } }
    }
}
