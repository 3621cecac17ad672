import Dispatch

/// Blocking work (files, fsync, CPU-heavy decryption) on a Dispatch thread, never on Swift's
/// cooperative pool: a 2-core station has two pool threads, and one blocked read would stall
/// every task. `queue` is where it runs (a store may keep its own).
public func offPool<T: Sendable>(on queue: DispatchQueue = .global(qos: .userInitiated),
                                 _ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        queue.async { continuation.resume(with: Result { try work() }) }
    }
}

/// Runs `work` over `items` on Dispatch's worker threads (never Swift's cooperative pool, as the
/// work blocks on files or burns CPU), all cores at once; results in the order of `items`.
public func parallelMap<T: Sendable, R: Sendable>(_ items: [T], _ work: @escaping @Sendable (T) -> R) async -> [R] {
    guard !items.isEmpty else { return [] }
    return await withCheckedContinuation { continuation in
        DispatchQueue.global(qos: .userInitiated).async {
            let results = ResultSlots<R>(count: items.count)
            DispatchQueue.concurrentPerform(iterations: items.count) { index in results.set(index, work(items[index])) }
            continuation.resume(returning: results.values())
        }
    }
}

/// One slot per index, each written by one iteration of `concurrentPerform` and read after it
/// returns: a buffer allocated once, so the writers never touch shared array bookkeeping.
private final class ResultSlots<R>: @unchecked Sendable {
    private let slots: UnsafeMutableBufferPointer<R?>
    init(count: Int) {
        slots = .allocate(capacity: count)
        slots.initialize(repeating: nil)
    }
    deinit {
        slots.deinitialize()
        slots.deallocate()
    }
    func set(_ index: Int, _ value: R) { slots[index] = value }
    func values() -> [R] { slots.map { $0! } }
}

/// Runs async `work` (network requests, device restores) over `items`, at most `width` at once;
/// results in the order of `items`, whatever order they finish in.
public func concurrentMap<T: Sendable, R: Sendable>(_ items: [T], width: Int,
                                                    _ work: @escaping @Sendable (T) async -> R) async -> [R] {
    await withTaskGroup(of: (Int, R).self) { group in
        var results = [R?](repeating: nil, count: items.count)
        var started = 0
        func startNext() {
            guard started < items.count else { return }
            let index = started
            group.addTask { (index, await work(items[index])) }
            started += 1
        }
        for _ in 0..<min(max(width, 1), items.count) { startNext() }
        while let (index, result) = await group.next() {
            results[index] = result
            startNext()
        }
        return results.map { $0! }
    }
}
