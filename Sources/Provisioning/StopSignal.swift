import Foundation

/// A request to stop a run at the next step boundary (Ctrl-C). Steps that are running finish —
/// a half-written sector is worse than a second's wait — and no new step starts.
public final class StopSignal: @unchecked Sendable {
    private let lock = NSLock()
    private var stopped = false
    private var waiters: [UUID: CheckedContinuation<Void, Never>] = [:]

    public init() {}

    public var isStopRequested: Bool { lock.withLock { stopped } }

    public func requestStop() {
        let woken = lock.withLock { () -> [CheckedContinuation<Void, Never>] in
            stopped = true
            defer { waiters.removeAll() }
            return Array(waiters.values)
        }
        woken.forEach { $0.resume() }
    }

    /// Sleeps for `duration` or until a stop is requested, whichever comes first. Returns true if
    /// a stop was requested or the calling task was cancelled: either way the caller must stop
    /// waiting. (A cancelled task's sleep returns at once; had it returned false, a loop that
    /// sleeps until a stop — the runner's stop watcher once it was cancelled at the end of a run —
    /// would spin on a cooperative thread forever.) Used for retry back-off and while a device is
    /// held, so Ctrl-C never waits out a back-off.
    public func sleep(for duration: Duration) async -> Bool {
        let id = UUID()
        var timer: Task<Void, Never>?
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = lock.withLock { () -> Bool in
                    if stopped || Task.isCancelled { return true }
                    waiters[id] = continuation
                    return false
                }
                if resumeNow {
                    continuation.resume()
                    return
                }
                // Started only once the waiter is registered, so its wake-up cannot come first and
                // be lost (a zero back-off fires at once).
                timer = Task {
                    try? await Task.sleep(for: duration)
                    self.wake(id)
                }
            }
        } onCancel: {
            // A cancelled waiter (a finished run's watcher task) does not linger until its timer.
            wake(id)
        }
        timer?.cancel()
        return isStopRequested || Task.isCancelled
    }

    private func wake(_ id: UUID) {
        lock.withLock { waiters.removeValue(forKey: id) }?.resume()
    }
}
