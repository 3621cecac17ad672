import DeviceBus
import Foundation

/// A `ControlTransport` to one enumeration (USB session) of a simulated device, like an open
/// libusb handle: once the device re-enumerates or leaves the bus, every call fails with
/// `.disconnected`.
///
/// Opened through `SimulatedFleet.open` it is an owning handle: it holds the DFU interface
/// claim (DFU mode) until `close()`, after which its calls fail with `.disconnected`. Made with
/// `init(device:session:)` it is an unowned view (claims nothing; `close()` does nothing).
///
/// `control` waits with `Task.sleep` (suspends, never blocks the cooperative pool). DFU operations
/// run whole on a thread of their own (`onDeviceThread`), and callers that have their own threads
/// (a socket server serving a C client) use `controlBlocking`; both sleep that thread instead.
public struct SimulatedTransport: ClosableControlTransport, DeviceThreadTransport, Hashable {
    public let device: SimulatedDevice
    /// Which enumeration of the device this transport belongs to.
    public let session: UInt64
    /// The owning handle's state, shared by every copy of this value; nil for an unowned view.
    let handle: SimulatedHandle?

    public init(device: SimulatedDevice, session: UInt64) {
        self.device = device
        self.session = session
        self.handle = nil
    }

    init(device: SimulatedDevice, session: UInt64, handle: SimulatedHandle) {
        self.device = device
        self.session = session
        self.handle = handle
    }

    /// Releases the claimed interface; later calls through this handle fail with `.disconnected`.
    public func close() async { closeBlocking() }

    public func closeBlocking() {
        guard let handle, let interface = handle.close() else { return }
        device.releaseInterface(interface, session: session, owner: handle.owner)
    }

    /// Claims `interface` for `owner` on this enumeration (the stand-in's libusb_claim_interface).
    public func claimInterface(_ interface: UInt8, owner: UInt64) -> SimulatedDevice.ClaimOutcome {
        device.claimInterface(interface, session: session, owner: owner)
    }

    @discardableResult
    public func releaseInterface(_ interface: UInt8, owner: UInt64) -> Bool {
        device.releaseInterface(interface, session: session, owner: owner)
    }

    private func checkOpen() throws(USBTransferError) {
        if handle?.isClosed == true { throw .disconnected }
    }

    public static func == (a: SimulatedTransport, b: SimulatedTransport) -> Bool { a.device === b.device && a.session == b.session }
    public func hash(into hasher: inout Hasher) {
        hasher.combine(ObjectIdentifier(device))
        hasher.combine(session)
    }

    /// Whether the enumeration this transport belongs to is still on the bus.
    public var isAttached: Bool { device.isCurrent(session) }

    public func control(_ setup: ControlSetup, data: [UInt8], timeout: Duration) async throws(USBTransferError) -> [UInt8] {
        try checkOpen()
        if let ready = try device.reserve(session: session, setup: setup) {
            let wait = ready - ContinuousClock.now
            if wait > timeout {
                // The device NAKs until it is done; the host gives up first.
                try await sleep(until: ContinuousClock.now + timeout)
                throw .timeout
            }
            try await sleep(until: ready)
        }
        return try device.execute(session: session, setup: setup, data: data)
    }

    public func selectAlternateSetting(interface: UInt8, alternateSetting: UInt8) async throws(USBTransferError) {
        _ = try await control(Self.setInterface(interface, alternateSetting), data: [], timeout: .seconds(1))
    }

    /// The same transfer for a caller on its own thread: sleeps that thread, not a task.
    public func controlBlocking(_ setup: ControlSetup, data: [UInt8], timeout: Duration) throws(USBTransferError) -> [UInt8] {
        try controlOnThread(setup, data: data, timeout: timeout) { deadline in
            let wait = deadline - ContinuousClock.now
            if wait > .zero { Thread.sleep(forTimeInterval: seconds(wait)) }
        }
    }

    /// A transfer on the calling thread, waiting out the device's latency with `sleep`.
    func controlOnThread(_ setup: ControlSetup, data: [UInt8], timeout: Duration,
                         sleep: (ContinuousClock.Instant) throws(USBTransferError) -> Void) throws(USBTransferError) -> [UInt8] {
        try checkOpen()
        if let ready = try device.reserve(session: session, setup: setup) {
            let now = ContinuousClock.now
            if ready - now > timeout {
                // The device NAKs until it is done; the host gives up first.
                try sleep(now + timeout)
                throw .timeout
            }
            try sleep(ready)
        }
        return try device.execute(session: session, setup: setup, data: data)
    }

    /// Runs a whole DFU operation on a thread of its own, where the device's latency (flash
    /// erase and program times) sleeps that thread; cancelling the caller wakes those sleeps.
    public func onDeviceThread<T: Sendable, E: Error>(_ body: @escaping @Sendable (any BlockingControl) throws(E) -> T) async throws(E) -> T {
        let transport = self
        return try await DeviceThread.run(name: "sim \(device.deviceID)") { (step) throws(E) -> T in
            try body(ThreadControl(transport: transport, step: step))
        }
    }

    /// Synchronous control on the operation's thread.
    struct ThreadControl: BlockingControl {
        let transport: SimulatedTransport
        let step: DeviceStep

        func control(_ setup: ControlSetup, data: [UInt8], timeout: Duration) throws(USBTransferError) -> [UInt8] {
            try transport.controlOnThread(setup, data: data, timeout: timeout) { deadline throws(USBTransferError) in
                try step.sleep(until: deadline)
            }
        }

        func selectAlternateSetting(interface: UInt8, alternateSetting: UInt8) throws(USBTransferError) {
            _ = try control(SimulatedTransport.setInterface(interface, alternateSetting), data: [], timeout: .seconds(1))
        }
    }

    public func selectAlternateSettingBlocking(interface: UInt8, alternateSetting: UInt8) throws(USBTransferError) {
        _ = try controlBlocking(Self.setInterface(interface, alternateSetting), data: [], timeout: .seconds(1))
    }

    /// libusb_reset_device: a bootloader in dfuMANIFEST-WAIT-RESET leaves DFU mode; any other
    /// device re-enumerates in the same mode. This transport is dead afterwards either way.
    public func resetDevice() throws(USBTransferError) {
        try checkOpen()
        try device.usbReset(session: session)
    }

    static func setInterface(_ interface: UInt8, _ alt: UInt8) -> ControlSetup {
        ControlSetup(requestType: 0x01, request: 11, value: UInt16(alt), index: UInt16(interface), length: 0)
    }

    private func sleep(until deadline: ContinuousClock.Instant) async throws(USBTransferError) {
        do {
            try await Task.sleep(until: deadline, clock: .continuous)
        } catch {
            throw .cancelled
        }
    }
}

/// An owning handle's state: its claim owner token, the interface it claimed, and whether it
/// was closed.
final class SimulatedHandle: @unchecked Sendable {
    let owner: UInt64
    private let lock = NSLock()
    private var interface: UInt8?   // guarded by lock
    private var closed = false      // guarded by lock

    init(owner: UInt64, claimed interface: UInt8?) {
        self.owner = owner
        self.interface = interface
    }

    var isClosed: Bool { lock.withLock { closed } }

    /// Marks the handle closed; returns the interface to release (nil if none or already closed).
    func close() -> UInt8? {
        lock.withLock {
            guard !closed else { return nil }
            closed = true
            defer { interface = nil }
            return interface
        }
    }

    private static let counterLock = NSLock()
    nonisolated(unsafe) private static var counter: UInt64 = 0

    /// A new claim owner: one per open handle, in-process or stand-in connection.
    static func makeOwner() -> UInt64 {
        counterLock.withLock {
            counter += 1
            return counter
        }
    }
}

private func seconds(_ d: Duration) -> TimeInterval {
    Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
}
