import Foundation

/// Lets progress through at most every `interval`, and always the last block.
final class ProgressThrottle: @unchecked Sendable {
    private let lock = NSLock()
    private let interval: Duration
    private var last: ContinuousClock.Instant?

    init(interval: Duration) { self.interval = interval }

    func shouldReport(done: Int, total: Int) -> Bool {
        let now = ContinuousClock.now
        return lock.withLock {
            if done < total, let last, now - last < interval { return false }
            last = now
            return true
        }
    }
}
