import Dispatch
import Foundation

extension Process {
    /// Waits until the child has exited, polling `isRunning` without blocking a thread.
    ///
    /// Use this, never `waitUntilExit()`, to wait on another thread than the one that called
    /// `run()` (any child started from a task). corelibs Foundation's `waitUntilExit` stores the waiting thread's run loop in
    /// `self.runLoop` with no lock while its manager thread reads that property as the child
    /// exits (Sources/Foundation/Process.swift, `terminateRunLoop`); a waiter on another thread
    /// than `run()`'s can release the old run loop under the manager's feet, and the test process
    /// aborted that way on a loaded CI host. `isRunning` turns false after the exit status is set.
    /// Sleeps through cancellation (the child is usually being killed), so it never spins.
    public func waitForExit(polling interval: Duration = .milliseconds(10)) async {
        while isRunning {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                DispatchQueue.global().asyncAfter(deadline: .now() + interval.dispatchInterval) { continuation.resume() }
            }
        }
    }
}
