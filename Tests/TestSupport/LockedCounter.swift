import Foundation

/// A count that tasks and threads bump concurrently (progress seen by a test while work runs).
public final class LockedCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0

    public init() {}

    public var value: Int { lock.withLock { count } }
    public func increment() { lock.withLock { count += 1 } }
}
