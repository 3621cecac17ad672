import Foundation

/// The synchronous side of a transport, used on a device's own thread: the DFU and DfuSe logic
/// (requests, GETSTATUS polling with its bwPollTimeout waits, the upload/download loops) runs
/// here as plain blocking code, so a whole operation costs one hand-off to the device thread and
/// one back, not two per control transfer. Not `Sendable`: it belongs to the thread it was handed to.
public protocol BlockingControl {
    /// One control transfer, blocking this thread; same contract as `ControlTransport.control`.
    func control(_ setup: ControlSetup, data: [UInt8], timeout: Duration) throws(USBTransferError) -> [UInt8]

    /// SET_INTERFACE, blocking this thread.
    func selectAlternateSetting(interface: UInt8, alternateSetting: UInt8) throws(USBTransferError)

    /// The operation this control serves: whether the awaiting task was cancelled, and the waits
    /// (bwPollTimeout) that stop early when it is.
    var step: DeviceStep { get }
}

/// A transport that owns a thread (libusb's per-device worker, a simulated device's thread) and
/// can run a whole operation on it.
public protocol DeviceThreadTransport: ControlTransport {
    /// Runs `body` on the device's thread with synchronous control transfers and resumes the
    /// caller with its result. Cancelling the calling task cancels the `DeviceStep`: a transfer in
    /// progress finishes (or times out); waits and the checks between blocks stop with `.cancelled`.
    func onDeviceThread<T: Sendable, E: Error>(_ body: @escaping @Sendable (any BlockingControl) throws(E) -> T) async throws(E) -> T
}

extension ControlTransport {
    /// Runs `body` with synchronous control: on the transport's own thread when it has one
    /// (`DeviceThreadTransport`), otherwise on a thread started for this call that waits for the
    /// transport's async calls one by one (transports that are only async: test doubles, wrappers).
    /// Either way `body` never runs on Swift's cooperative pool.
    public func withBlockingControl<T: Sendable, E: Error>(_ body: @escaping @Sendable (any BlockingControl) throws(E) -> T) async throws(E) -> T {
        if let owner = self as? any DeviceThreadTransport {
            return try await owner.onDeviceThread(body)
        }
        let transport: any ControlTransport = self
        return try await DeviceThread.run(name: "dfu (async transport)") { (step) throws(E) -> T in
            try body(AsyncTransportControl(transport: transport, step: step))
        }
    }
}

/// Cancellation and waits for one operation on a device thread. Created by `DeviceStep.run`,
/// cancelled from the awaiting task's cancellation handler.
public final class DeviceStep: @unchecked Sendable {
    private let condition = NSCondition()
    private var cancelled = false                         // guarded by condition
    private var onCancel: (@Sendable () -> Void)?          // guarded by condition

    public init() {}

    public var isCancelled: Bool {
        condition.lock()
        defer { condition.unlock() }
        return cancelled
    }

    /// Marks the step cancelled and wakes its waits. Idempotent.
    public func cancel() {
        condition.lock()
        let hook = cancelled ? nil : onCancel
        cancelled = true
        onCancel = nil
        condition.broadcast()
        condition.unlock()
        hook?()
    }

    /// Throws `.cancelled` if the step was cancelled (the check between transfer blocks).
    public func checkCancellation() throws(USBTransferError) {
        if isCancelled { throw .cancelled }
    }

    /// Blocks this thread until `deadline`; throws `.cancelled` as soon as the step is cancelled
    /// (a deadline already past returns at once).
    public func sleep(until deadline: ContinuousClock.Instant) throws(USBTransferError) {
        condition.lock()
        defer { condition.unlock() }
        while true {
            let remaining = deadline - ContinuousClock.now
            guard remaining > .zero else { return }
            if cancelled { throw .cancelled }
            let seconds = Double(remaining.components.seconds) + Double(remaining.components.attoseconds) / 1e18
            _ = condition.wait(until: Date(timeIntervalSinceNow: seconds))
        }
    }

    public func sleep(for duration: Duration) throws(USBTransferError) {
        try sleep(until: ContinuousClock.now + duration)
    }

    /// Blocks this thread on an async operation (run as a task of its own, cancelled with the
    /// step). For bridging async-only transports; never call it from the cooperative pool.
    public func block<T: Sendable>(on operation: @escaping @Sendable () async -> T) -> T {
        let box = ResultBox<T>()
        let task = Task { box.put(await operation()) }
        condition.lock()
        let alreadyCancelled = cancelled
        if !alreadyCancelled { onCancel = { task.cancel() } }
        condition.unlock()
        if alreadyCancelled { task.cancel() }
        let result = box.take()
        condition.lock()
        onCancel = nil
        condition.unlock()
        return result
    }

    /// Runs an operation on some thread under a new step: `start` hands the step and a completion
    /// to that thread, which calls the completion exactly once. Cancelling the awaiting task
    /// cancels the step.
    public static func run<T: Sendable, E: Error>(
        _ start: (DeviceStep, @escaping @Sendable (Result<T, E>) -> Void) -> Void
    ) async throws(E) -> T {
        let step = DeviceStep()
        let result: Result<T, E> = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Result<T, E>, Never>) in
                start(step) { continuation.resume(returning: $0) }
            }
        } onCancel: {
            step.cancel()
        }
        return try result.get()
    }
}

/// Threads started for one operation each (a simulated device's step, an async transport bridged
/// to blocking calls).
public enum DeviceThread {
    /// Runs `body` on a new thread and resumes the caller with its result.
    public static func run<T: Sendable, E: Error>(name: String, _ body: @escaping @Sendable (DeviceStep) throws(E) -> T) async throws(E) -> T {
        try await DeviceStep.run { (step, finish: @escaping @Sendable (Result<T, E>) -> Void) in
            let thread = Thread {
                do throws(E) {
                    finish(.success(try body(step)))
                } catch {
                    finish(.failure(error))
                }
            }
            thread.name = name
            thread.start()
        }
    }
}

/// Synchronous control over a transport that is only async: each call blocks the (dedicated)
/// thread on the async call. Only for transports that have no thread of their own.
struct AsyncTransportControl: BlockingControl {
    let transport: any ControlTransport
    let step: DeviceStep

    func control(_ setup: ControlSetup, data: [UInt8], timeout: Duration) throws(USBTransferError) -> [UInt8] {
        let transport = transport
        return try step.block { () async -> Result<[UInt8], USBTransferError> in
            do throws(USBTransferError) {
                return .success(try await transport.control(setup, data: data, timeout: timeout))
            } catch {
                return .failure(error)
            }
        }.get()
    }

    func selectAlternateSetting(interface: UInt8, alternateSetting: UInt8) throws(USBTransferError) {
        let transport = transport
        try step.block { () async -> Result<Void, USBTransferError> in
            do throws(USBTransferError) {
                return .success(try await transport.selectAlternateSetting(interface: interface, alternateSetting: alternateSetting))
            } catch {
                return .failure(error)
            }
        }.get()
    }
}

/// A one-shot hand-over of a value between threads.
final class ResultBox<T: Sendable>: @unchecked Sendable {
    private let condition = NSCondition()
    private var value: T?

    func put(_ value: T) {
        condition.lock()
        self.value = value
        condition.signal()
        condition.unlock()
    }

    func take() -> T {
        condition.lock()
        defer { condition.unlock() }
        while value == nil { condition.wait() }
        return value!
    }
}
