import DFU
import Foundation

/// A `ControlTransport` to one enumeration (USB session) of a simulated device, like an open
/// libusb handle: once the device re-enumerates or leaves the bus, every call fails with
/// `.disconnected`.
///
/// `control` waits with `Task.sleep` (suspends, never blocks the cooperative pool). Callers that
/// run on their own threads (a socket server serving a C client) use `controlBlocking`, which
/// sleeps the calling thread instead.
public struct SimulatedTransport: ControlTransport, Hashable {
    public let device: SimulatedDevice
    /// Which enumeration of the device this transport belongs to.
    public let session: UInt64

    public init(device: SimulatedDevice, session: UInt64) {
        self.device = device
        self.session = session
    }

    public static func == (a: SimulatedTransport, b: SimulatedTransport) -> Bool { a.device === b.device && a.session == b.session }
    public func hash(into hasher: inout Hasher) {
        hasher.combine(ObjectIdentifier(device))
        hasher.combine(session)
    }

    /// Whether the enumeration this transport belongs to is still on the bus.
    public var isAttached: Bool { device.isCurrent(session) }

    public func control(_ setup: ControlSetup, data: [UInt8], timeout: Duration) async throws(USBTransferError) -> [UInt8] {
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
        if let ready = try device.reserve(session: session, setup: setup) {
            let wait = ready - ContinuousClock.now
            if wait > timeout {
                Thread.sleep(forTimeInterval: seconds(timeout))
                throw .timeout
            }
            if wait > .zero { Thread.sleep(forTimeInterval: seconds(wait)) }
        }
        return try device.execute(session: session, setup: setup, data: data)
    }

    public func selectAlternateSettingBlocking(interface: UInt8, alternateSetting: UInt8) throws(USBTransferError) {
        _ = try controlBlocking(Self.setInterface(interface, alternateSetting), data: [], timeout: .seconds(1))
    }

    /// libusb_reset_device: a bootloader in dfuMANIFEST-WAIT-RESET leaves DFU mode; any other
    /// device re-enumerates in the same mode. This transport is dead afterwards either way.
    public func resetDevice() throws(USBTransferError) {
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

private func seconds(_ d: Duration) -> TimeInterval {
    Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
}
