import DFU
import DeviceBus
import ParticlePlatform
import FailurePolicy
import ParticleDevice

/// A device at a bench, chosen and opened in DFU mode through the station's one bus watcher.
/// The RMA restore and the `keys` device commands share it; the provisioning runner's workflow
/// does the same through its own context.
public final class BenchDevices: Sendable {
    public let bus: any DeviceBus
    public let watcher: DeviceBusWatcher
    public let timeout: Duration

    public init(bus: any DeviceBus, timeout: Duration = .seconds(20)) {
        self.bus = bus
        self.watcher = DeviceBusWatcher(bus: bus)
        self.timeout = timeout
        watcher.start()
    }

    public func stop() { watcher.stop() }

    /// The Particle devices attached now with their platform (unknown USB IDs are left out).
    public func attached() async throws -> [(device: BusDevice, platform: Platform)] {
        try await bus.enumerate().compactMap { device in
            Platform.matching(vendorID: device.identity.vendorID, productID: device.identity.productID)
                .map { (device, $0.platform) }
        }
    }

    /// `deviceID`, or the only device attached (as particle-cli does in non-interactive mode:
    /// several attached without a choice is an error listing them).
    public func choose(_ deviceID: String?) async throws -> (deviceID: String, platform: Platform) {
        let devices = try await attached()
        if let deviceID {
            let wanted = deviceID.lowercased()
            if let found = devices.first(where: { $0.device.identity.serialNumber?.lowercased() == wanted }) {
                return (wanted, found.platform)
            }
            throw BenchError.notAttached(deviceID: wanted, waited: .zero)
        }
        let identified = devices.compactMap { entry in
            entry.device.identity.serialNumber.map { ($0.lowercased(), entry.platform, entry.device.port.description) }
        }
        switch identified.count {
        case 0: throw BenchError.noDevices
        case 1: return (identified[0].0, identified[0].1)
        default: throw BenchError.severalDevices(identified.map { "\($0.0) (\($0.1.name), port \($0.2))" })
        }
    }

    /// Waits (up to `timeout`) for the device with this ID to be attached, in either mode, and
    /// opens it; its platform is what its USB ID says. Nothing is sent to it.
    public func find(_ deviceID: String) async throws -> (opened: USBOpenedDevice, platform: Platform) {
        let wanted = deviceID.lowercased()
        var productIDs: Set<UInt16> = []
        for platform in Platform.all where platform.vendorID == Platform.photon.vendorID {
            productIDs.insert(platform.normalProductID)
            productIDs.insert(platform.dfuProductID)
        }
        let opened: USBOpenedDevice
        do {
            opened = try await watcher.waitForDevice(
                USBDeviceMatch(serialNumber: wanted, vendorID: Platform.photon.vendorID, productIDs: productIDs),
                timeout: timeout)
        } catch .timedOut {
            throw BenchError.notAttached(deviceID: wanted, waited: timeout)
        }
        guard let (platform, _) = Platform.matching(vendorID: opened.identity.vendorID, productID: opened.identity.productID) else {
            await opened.transport.close()
            throw BenchError.notAttached(deviceID: wanted, waited: timeout)
        }
        return (opened, platform)
    }

    /// The device in DFU mode (switched from normal mode if needed).
    public func openDFU(_ opened: USBOpenedDevice, platform: Platform) async throws -> ParticleDFUDevice {
        if opened.identity.productID == platform.normalProductID {
            return try await ParticleModeSwitch.enterDFU(opened.transport, identity: opened.identity,
                                                         locator: watcher, timeout: timeout)
        }
        do {
            return try await ParticleDFUDevice.open(opened.transport, port: opened.identity.port, expecting: platform)
        } catch {
            await opened.transport.close()
            throw error
        }
    }

    /// Finds and opens `deviceID` in DFU mode.
    public func openDFU(_ deviceID: String) async throws -> ParticleDFUDevice {
        let (opened, platform) = try await find(deviceID)
        return try await openDFU(opened, platform: platform)
    }

    /// Leaves DFU mode (a device already leaving counts as left) and gives the handle back.
    public static func leave(_ device: ParticleDFUDevice) async throws {
        if let failure = await leaveReportingFailure(device) { throw failure }
    }

    /// `leave` for a device whose key is already written and read back: it must be recorded
    /// whatever happens next (an I/O error on the final GETSTATUS is not proof it left), so the
    /// failure is returned for a warning, not thrown. The handle is given back either way.
    public static func leaveReportingFailure(_ device: ParticleDFUDevice) async -> ParticleDeviceError? {
        let failure = await device.leaveDFU()
        await close(device)
        return failure
    }

    public static func close(_ device: ParticleDFUDevice) async {
        await (device.dfu.transport as? any ClosableControlTransport)?.close()
    }

    /// Whether the device's DCT (alt 1) is closed by Device Protection (its layout says `…Kb`).
    public static func isProtected(_ device: ParticleDFUDevice) -> Bool {
        device.dfu.isProtected(alt: ParticleDFUDevice.dctAlt)
    }
}

/// Choosing a device at a bench.
public enum BenchError: Error, Sendable, Hashable, CustomStringConvertible, ClassifiedError {
    case notAttached(deviceID: String, waited: Duration)
    case noDevices
    case severalDevices([String])

    public var description: String {
        switch self {
        case .notAttached(let id, let waited):
            "device \(id) is not attached" + (waited > .zero ? " (waited \(waited.components.seconds) s)" : "")
                + "; plug it in (normal or DFU mode) and run again"
        case .noDevices: "No devices found: plug in one Particle device (normal or DFU mode)"
        case .severalDevices(let list):
            "Multiple devices found; choose one with --device ID, or connect only one: " + list.joined(separator: ", ")
        }
    }

    public var failureClass: FailureClass {
        switch self {
        case .notAttached, .noDevices: .badDevice
        case .severalDevices: .badInput
        }
    }
}
