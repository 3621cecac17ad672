@testable import DeviceBus
import FailurePolicy
import Foundation
import ParticleDevice
import Simulator
import Testing
import TestSupport

/// A bus that counts its enumerations, to see how often the station lists the bus.
final class CountingBus: DeviceBus, @unchecked Sendable {
    let inner: any DeviceBus
    private let lock = NSLock()
    private var count = 0
    init(_ inner: any DeviceBus) { self.inner = inner }
    var enumerations: Int { lock.withLock { count } }
    func enumerate() async throws -> [BusDevice] {
        lock.withLock { count += 1 }
        return try await inner.enumerate()
    }
    func open(_ device: BusDevice) async throws -> any ClosableControlTransport { try await inner.open(device) }
}

/// The device-bus seam: one watcher per station, one owner per device, no handle across a
/// re-enumeration — in-process, over the simulated fleet.
@Suite struct DeviceBusTests {
    static func dfuMatch(_ device: SimulatedDevice) -> USBDeviceMatch {
        USBDeviceMatch(serialNumber: device.deviceID, vendorID: device.platform.vendorID, productIDs: [device.platform.dfuProductID])
    }

    static let getDeviceDescriptor = ControlSetup(requestType: 0x80, request: 6, value: 0x0100, index: 0, length: 18)

    @Test func oneWatcherListsTheBusOncePerIntervalForEveryWaiter() async throws {
        let fleet = try SimulatedFleet(timeScale: 0, seed: 41)
        // Devices made now, plugged in later: the waiters know their serials up front.
        let devices = try (1...8).map { index in
            try SimulatedDevice(platform: .photon, mode: .dfu, timeScale: 0, seed: 1000 + UInt64(index))
        }
        let bus = CountingBus(fleet)
        let interval = Duration.milliseconds(50)
        let watcher = DeviceBusWatcher(bus: bus, interval: interval)
        watcher.start()
        defer { watcher.stop() }

        let start = ContinuousClock.now
        let opened = try await withThrowingTaskGroup(of: USBOpenedDevice.self) { group in
            for device in devices {
                group.addTask { try await watcher.waitForDevice(Self.dfuMatch(device), timeout: .seconds(20)) }
            }
            // Let the waiters wait through a few listings of a bus without them (a fixed sleep is
            // not enough on a loaded machine: the waiting tasks may not even have started).
            try await waitUntil(poll: .milliseconds(10), "bus.enumerations >= 4") { bus.enumerations >= 4 }
            for (index, device) in devices.enumerated() {
                try fleet.insert(device, at: USBPortPath(bus: 1, ports: [UInt8(index + 1)]))
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        let elapsed = ContinuousClock.now - start
        #expect(Set(opened.map { $0.identity.serialNumber }) == Set(devices.map { $0.deviceID }))
        // One listing per interval for all eight (plus the first at once and one of slack);
        // eight waiters polling on their own would list the bus about eight times as often.
        let perInterval = Int((elapsed / interval).rounded(.up))
        #expect(bus.enumerations <= perInterval + 2, "\(bus.enumerations) listings in \(elapsed)")
        for device in opened { await device.transport.close() }
    }

    @Test func arrivalsAndDeparturesReachSubscribers() async throws {
        let fleet = try SimulatedFleet(timeScale: 0, seed: 42)
        let watcher = DeviceBusWatcher(bus: fleet, interval: .milliseconds(10))
        let changes = watcher.changes()
        watcher.start()
        defer { watcher.stop() }
        var iterator = changes.makeAsyncIterator()

        let port = USBPortPath(bus: 1, ports: [3])
        let boron = try fleet.add(.boron, at: port, mode: .dfu)
        guard case .arrived(let first)? = await iterator.next() else { Issue.record("no arrival"); return }
        #expect(first.identity.serialNumber == boron.deviceID && first.mode == .dfu && first.port == port)
        #expect(watcher.devices == [first])

        boron.unplug()
        #expect(await iterator.next() == .departed(first))

        boron.plugIn(mode: .dfu)
        guard case .arrived(let again)? = await iterator.next() else { Issue.record("no second arrival"); return }
        #expect(again.identity == first.identity)
        #expect(again.address != first.address)
    }

    @Test func aClaimedDeviceIsBusyUntilItsHandleCloses() async throws {
        let fleet = try SimulatedFleet(timeScale: 0, seed: 43)
        let port = USBPortPath(bus: 1, ports: [1])
        try fleet.add(.photon, at: port, mode: .dfu)
        let listed = try #require(try await fleet.enumerate().first)

        let first = try await fleet.open(listed)
        await #expect(throws: SimulatorError.busy(port)) { _ = try await fleet.open(listed) }
        #expect(SimulatorError.busy(port).failureClass == .retryable)
        await first.close()
        // A closed handle is dead, and the device can be opened again.
        await #expect(throws: USBTransferError.disconnected) {
            _ = try await first.control(Self.getDeviceDescriptor, data: [], timeout: .seconds(1))
        }
        let second = try await fleet.open(listed)
        _ = try await ParticleDFUDevice.open(second, port: port)
        await second.close()
    }

    @Test func noHandleSurvivesAReenumeration() async throws {
        let fleet = try SimulatedFleet(timeScale: 0, seed: 44)
        let port = USBPortPath(bus: 1, ports: [2])
        let boron = try fleet.add(.boron, at: port, mode: .dfu)
        let watcher = DeviceBusWatcher(bus: fleet, interval: .milliseconds(10))
        watcher.start()
        defer { watcher.stop() }
        let held = try await watcher.waitForDevice(Self.dfuMatch(boron), timeout: .seconds(5))

        boron.plugIn(mode: .dfu)   // power-cycled into DFU mode again: a new enumeration
        // The old handle was never closed, yet its claim went with its enumeration.
        let fresh = try await watcher.waitForDevice(Self.dfuMatch(boron), timeout: .seconds(5))
        await #expect(throws: USBTransferError.disconnected) {
            _ = try await held.transport.control(Self.getDeviceDescriptor, data: [], timeout: .seconds(1))
        }
        _ = try await ParticleDFUDevice.open(fresh.transport, port: port).readPrivateKeySlot()
        await fresh.transport.close()
    }

    @Test func aWaiterOpensABusyDeviceOnceItsOwnerLetsGo() async throws {
        let fleet = try SimulatedFleet(timeScale: 0, seed: 45)
        let photon = try fleet.add(.photon, at: USBPortPath(bus: 1, ports: [4]), mode: .dfu)
        let owner = try fleet.openHandle(try #require(fleet.attachedDevices().first).busDevice)
        let watcher = DeviceBusWatcher(bus: fleet, interval: .milliseconds(10))
        watcher.start()
        defer { watcher.stop() }

        // Held for the whole wait: the last open failure (busy) is reported, for an operator.
        do {
            _ = try await watcher.waitForDevice(Self.dfuMatch(photon), timeout: .milliseconds(200))
            Issue.record("opened a device another handle holds")
        } catch {
            guard case .openFailed(_, let reason) = error else { Issue.record("\(error)"); return }
            #expect(reason.contains("in use"))
            #expect(error.failureClass == .needsOperator)
        }
        // Let go during the wait: the waiter gets it.
        let waiting = Task { try await watcher.waitForDevice(Self.dfuMatch(photon), timeout: .seconds(10)) }
        try await Task.sleep(for: .milliseconds(100))
        owner.closeBlocking()
        let opened = try await waiting.value
        await opened.transport.close()
    }

    @Test func enterDFUClosesTheNormalHandleAndAcceptsADeviceAlreadyInDFU() async throws {
        let fleet = try SimulatedFleet(timeScale: 0, seed: 46)
        let watcher = DeviceBusWatcher(bus: fleet, interval: .milliseconds(10))
        watcher.start()
        defer { watcher.stop() }
        let boron = try fleet.add(.boron, at: USBPortPath(bus: 1, ports: [5]), mode: .normal)
        let normal = try await watcher.waitForDevice(
            USBDeviceMatch(serialNumber: boron.deviceID, vendorID: 0x2B04, productIDs: [boron.platform.normalProductID]), timeout: .seconds(5))

        let dfu = try await ParticleModeSwitch.enterDFU(normal.transport, identity: normal.identity, locator: watcher, timeout: .seconds(5))
        #expect(dfu.deviceID == boron.deviceID)
        await #expect(throws: USBTransferError.disconnected) {
            _ = try await normal.transport.control(Self.getDeviceDescriptor, data: [], timeout: .seconds(1))
        }

        // Already in DFU mode: opened on the handle given, no request, no wait for a second handle
        // (which would be busy while this one holds the interface).
        let again = try await ParticleModeSwitch.enterDFU(dfu.dfu.transport, identity: try #require(watcher.devices.first).identity,
                                                          locator: watcher, timeout: .milliseconds(300))
        #expect(again.deviceID == boron.deviceID)
    }

    @Test func aCancelledWaitAndAStoppedWatcherSayCancelled() async throws {
        let fleet = try SimulatedFleet(timeScale: 0)
        let watcher = DeviceBusWatcher(bus: fleet, interval: .milliseconds(10))
        watcher.start()
        let match = USBDeviceMatch(serialNumber: String(repeating: "0", count: 24), vendorID: 0x2B04, productIDs: [0xD00D])
        let task = Task { () async throws(USBLocatorError) -> USBOpenedDevice in try await watcher.waitForDevice(match, timeout: .seconds(30)) }
        task.cancel()
        await #expect(throws: USBLocatorError.cancelled(match)) { _ = try await task.value }

        let stopped = Task { () async throws(USBLocatorError) -> USBOpenedDevice in try await watcher.waitForDevice(match, timeout: .seconds(30)) }
        // Stopped once the wait is registered (a fixed sleep lost the race on a loaded host: the
        // wait registered after stop() and ran into its 30 s timeout).
        try await waitUntil("the wait to register") { watcher.waiterCount == 1 }
        watcher.stop()
        await #expect(throws: USBLocatorError.cancelled(match)) { _ = try await stopped.value }
    }

    @Test func usbFailuresAreClassified() {
        #expect(USBTransferError.timeout.failureClass == .retryable)
        #expect(USBTransferError.disconnected.failureClass == .retryable)
        #expect(USBTransferError.io("LIBUSB_ERROR_IO").failureClass == .retryable)
        #expect(USBTransferError.stall.failureClass == .badDevice)
        #expect(USBTransferError.cancelled.failureClass == .needsOperator)
        let match = USBDeviceMatch(serialNumber: "x", vendorID: 1, productIDs: [2])
        #expect(USBLocatorError.timedOut(match, after: .seconds(1)).failureClass == .retryable)
        #expect(USBLocatorError.cancelled(match).failureClass == .needsOperator)
    }
}
