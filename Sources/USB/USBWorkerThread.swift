import Foundation

/// One dedicated thread that runs blocking work (libusb's synchronous calls) in order. Each open
/// device and each `USBContext` owns one, so a device that blocks for seconds in a sector erase
/// holds up only its own thread, never Swift's cooperative pool and never another device.
final class USBWorkerThread: @unchecked Sendable {
    private let condition = NSCondition()
    private var work: [@Sendable () -> Void] = []
    private var finished = false

    init(name: String) {
        let thread = Thread { [self] in run() }
        thread.name = name
        thread.start()
    }

    /// Runs `body` on the worker thread and resumes the caller with its result.
    func perform<T: Sendable, E: Error>(_ body: @escaping @Sendable () throws(E) -> T) async throws(E) -> T {
        let result: Result<T, E> = await withCheckedContinuation { continuation in
            enqueue {
                do throws(E) {
                    continuation.resume(returning: .success(try body()))
                } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
        }
        return try result.get()
    }

    /// Queues `body` without waiting; used for cleanup from `deinit`.
    func enqueue(_ body: @escaping @Sendable () -> Void) {
        condition.lock()
        work.append(body)
        condition.signal()
        condition.unlock()
    }

    /// Lets the thread exit once the queued work is done.
    func finish() {
        condition.lock()
        finished = true
        condition.signal()
        condition.unlock()
    }

    private func run() {
        while true {
            condition.lock()
            while work.isEmpty && !finished { condition.wait() }
            if work.isEmpty && finished {
                condition.unlock()
                return
            }
            let next = work.removeFirst()
            condition.unlock()
            next()
        }
    }
}
