import FailurePolicy
import Foundation

/// ONE enumeration loop for a whole station: it polls `bus.enumerate()` every `interval` while
/// it is started and someone watches (`changes()`) or waits (`waitForDevice`), and feeds them
/// all from that one listing. With 64 devices re-enumerating at once this is one listing per
/// interval, not 64 waiters each listing the bus (and opening devices) every 50 ms.
///
/// The watcher itself never blocks: the loop is a task that suspends in `enumerate()` (the bus
/// does its blocking work on its own thread) and in `Task.sleep`.
///
/// Polling starts with `start()`; waiters and subscribers that come earlier wait for it.
/// `stop()` ends every `changes()` stream and cancels every pending wait.
public final class DeviceBusWatcher: USBDeviceLocator, Sendable {
    private let bus: any DeviceBus
    private let interval: Duration
    private let state = Locked(WatcherState())

    public init(bus: any DeviceBus, interval: Duration = .milliseconds(100)) {
        self.bus = bus
        self.interval = interval
    }

    public func start() {
        let spawn = state.withLock { state -> Bool in
            state.started = true
            return state.claimLoopIfNeeded()
        }
        if spawn { spawnLoop() }
    }

    public func stop() {
        let (subscribers, waiters) = state.withLock { state in
            state.started = false
            defer {
                state.subscribers = [:]
                state.waiters = [:]
            }
            return (Array(state.subscribers.values), Array(state.waiters.values))
        }
        subscribers.forEach { $0.finish() }
        waiters.forEach { $0.continuation.resume(returning: .cancelled) }
    }

    /// How many `waitForDevice` calls are registered right now (tests wait on it instead of sleeping).
    var waiterCount: Int { state.withLock { $0.waiters.count } }

    /// What the last enumeration found (empty before the first).
    public var devices: [BusDevice] { state.withLock { $0.devices } }

    /// Arrivals and departures seen by enumerations from now on. After an idle spell (nobody
    /// watching or waiting) the first listing is compared with the last one seen, so a change
    /// while idle is reported then rather than lost. The stream ends with `stop()`.
    public func changes() -> AsyncStream<BusChange> {
        let (stream, continuation) = AsyncStream.makeStream(of: BusChange.self, bufferingPolicy: .unbounded)
        let id = state.withLock { $0.makeID() }
        continuation.onTermination = { [weak self] _ in
            self?.state.withLock { _ = $0.subscribers.removeValue(forKey: id) }
        }
        let spawn = state.withLock { state -> Bool in
            state.subscribers[id] = continuation
            return state.claimLoopIfNeeded()
        }
        if spawn { spawnLoop() }
        return stream
    }

    /// Waits for the next enumeration that lists a matching device, then opens it (claiming its
    /// DFU interface). An open that fails for a retryable reason (busy: another owner may let go;
    /// gone again: still settling) is tried again on a later listing until `timeout`; then the
    /// last such failure is reported as `.openFailed`. Other open failures are final at once.
    public func waitForDevice(_ match: USBDeviceMatch, timeout: Duration) async throws(USBLocatorError) -> USBOpenedDevice {
        let deadline = ContinuousClock.now + timeout
        var lastFailure: (identity: USBDeviceIdentity, reason: String)?
        while true {
            switch await nextSighting(of: match, until: deadline) {
            case .timedOut:
                if let lastFailure { throw .openFailed(lastFailure.identity, lastFailure.reason) }
                throw .timedOut(match, after: timeout)
            case .cancelled:
                throw .cancelled(match)
            case .found(let device):
                do {
                    let transport = try await bus.open(device)
                    return USBOpenedDevice(identity: device.identity, transport: transport)
                } catch {
                    if Task.isCancelled { throw .cancelled(match) }
                    let reason = String(describing: error)
                    guard error.failureClass == .retryable else { throw .openFailed(device.identity, reason) }
                    lastFailure = (device.identity, reason)
                }
            }
        }
    }

    // MARK: - waiting for one listing

    enum Sighting: Sendable {
        case found(BusDevice)
        case timedOut
        case cancelled
    }

    /// Resolves at the first enumeration (after this call) that lists a match, or at the deadline,
    /// or when the task is cancelled or the watcher stopped.
    private func nextSighting(of match: USBDeviceMatch, until deadline: ContinuousClock.Instant) async -> Sighting {
        let id = state.withLock { $0.makeID() }
        // Only resolves a registered waiter; one registering after the deadline sees it passed.
        let timer = Task { [weak self] in
            try? await Task.sleep(until: deadline, clock: .continuous)
            guard !Task.isCancelled else { return }
            self?.resolve(id, .timedOut)
        }
        defer { timer.cancel() }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Sighting, Never>) in
                let (immediate, spawn) = state.withLock { state -> (Sighting?, Bool) in
                    // Read under the lock so a cancel racing this registration is never missed:
                    // the flag is set before the cancellation handler takes the lock.
                    if Task.isCancelled { return (.cancelled, false) }
                    if ContinuousClock.now >= deadline { return (.timedOut, false) }
                    state.waiters[id] = Waiter(match: match, continuation: continuation)
                    return (nil, state.claimLoopIfNeeded())
                }
                if let immediate { continuation.resume(returning: immediate) }
                if spawn { spawnLoop() }
            }
        } onCancel: {
            resolve(id, .cancelled)
        }
    }

    private func resolve(_ id: UInt64, _ outcome: Sighting) {
        let waiter = state.withLock { $0.waiters.removeValue(forKey: id) }
        waiter?.continuation.resume(returning: outcome)
    }

    // MARK: - the loop

    private func spawnLoop() {
        Task { await self.poll() }
    }

    /// Runs while started and in demand; exactly one at a time (`WatcherState.polling`).
    private func poll() async {
        while true {
            let listed: [BusDevice]?
            do { listed = try await bus.enumerate() } catch {
                // A hub resetting or a bus hiccup: keep the last listing, try again next interval.
                listed = nil
            }
            if let listed { publish(listed) }
            let goOn = state.withLock { $0.keepPolling() }
            guard goOn else { return }
            try? await Task.sleep(for: interval)
            guard state.withLock({ $0.keepPolling() }) else { return }
        }
    }

    private func publish(_ listed: [BusDevice]) {
        let (changes, subscribers, found) = state.withLock { state in
            let before = Set(state.devices), after = Set(listed)
            let changes = before.subtracting(after).sorted(by: Self.portOrder).map(BusChange.departed)
                + after.subtracting(before).sorted(by: Self.portOrder).map(BusChange.arrived)
            state.devices = listed
            var found: [(CheckedContinuation<Sighting, Never>, BusDevice)] = []
            for (id, waiter) in state.waiters {
                guard let device = listed.first(where: { waiter.match.matches($0.identity) }) else { continue }
                state.waiters[id] = nil
                found.append((waiter.continuation, device))
            }
            return (changes, Array(state.subscribers.values), found)
        }
        for subscriber in subscribers {
            for change in changes { subscriber.yield(change) }
        }
        for (continuation, device) in found { continuation.resume(returning: .found(device)) }
    }

    private static func portOrder(_ a: BusDevice, _ b: BusDevice) -> Bool {
        a.port != b.port ? a.port < b.port : a.address < b.address
    }
}

struct Waiter {
    var match: USBDeviceMatch
    var continuation: CheckedContinuation<DeviceBusWatcher.Sighting, Never>
}

struct WatcherState {
    var started = false
    /// A loop task is running (or about to).
    var polling = false
    var devices: [BusDevice] = []
    var subscribers: [UInt64: AsyncStream<BusChange>.Continuation] = [:]
    var waiters: [UInt64: Waiter] = [:]
    private var nextID: UInt64 = 1

    mutating func makeID() -> UInt64 {
        defer { nextID += 1 }
        return nextID
    }

    var inDemand: Bool { started && !(subscribers.isEmpty && waiters.isEmpty) }

    /// True if the caller must start the loop (it was not running and is now needed).
    mutating func claimLoopIfNeeded() -> Bool {
        guard inDemand, !polling else { return false }
        polling = true
        return true
    }

    /// Whether the running loop goes on; when not, it is marked stopped in the same step, so a
    /// waiter arriving next starts a new one.
    mutating func keepPolling() -> Bool {
        if inDemand { return true }
        polling = false
        return false
    }
}

/// State behind a lock, for the few synchronous entry points (`devices`, `changes()`).
final class Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func withLock<T>(_ body: (inout Value) throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}
