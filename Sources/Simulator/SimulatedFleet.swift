import DeviceKeys
import ParticleDevice
import DeviceBus
import ParticlePlatform
import Foundation
/// A device as the fleet's bus shows it right now: one enumeration of a simulated device at a port.
public struct SimulatedAttachment: Sendable, Hashable, CustomStringConvertible {
    public let port: USBPortPath
    /// The USB device address of this enumeration (1…127, new on every enumeration, like a real bus).
    public let address: UInt8
    public let vendorID: UInt16
    public let productID: UInt16
    public let serialNumber: String
    public let mode: USBMode
    public let transport: SimulatedTransport

    public var device: SimulatedDevice { transport.device }
    /// False once the device re-enumerated or left the bus.
    public var isAttached: Bool { transport.isAttached }
    public var identity: USBDeviceIdentity {
        USBDeviceIdentity(port: port, vendorID: vendorID, productID: productID, serialNumber: serialNumber)
    }
    /// Raw descriptors of this enumeration, captured when it attached (for a libusb stand-in's
    /// get_device/config_descriptor).
    public let deviceDescriptor: [UInt8]
    public let configurationDescriptor: [UInt8]

    /// This enumeration as the device-bus seam lists it.
    public var busDevice: BusDevice { BusDevice(identity: identity, mode: mode, address: address) }

    public var description: String { "\(identity) (\(mode) mode, address \(address))" }
}

/// A bus full of simulated devices, each at a `USBPortPath`. Devices appear, disappear and
/// re-enumerate as real ones do (normal → DFU after request 50, DFU → normal after leave).
///
/// Watch it by polling (`attachedDevices()`, `generation`), by an `AsyncStream` (`changes()`), or
/// with a callback (`addObserver`) for code on its own threads. It is a `DeviceBus` (in-process,
/// with libusb's claim rule) and a `USBDeviceLocator`, so `ParticleDFUDevice` finds a
/// re-enumerated device the same way it would through libusb.
public final class SimulatedFleet: DeviceBus, USBDeviceLocator, @unchecked Sendable {
    public enum Change: Sendable, Hashable {
        case attached(SimulatedAttachment)
        case detached(port: USBPortPath, address: UInt8, serialNumber: String)
    }

    public let timeScale: Double
    /// Where `save()` keeps state; `init` loads devices saved there before.
    public let directory: URL?
    public let seed: UInt64
    /// Save to `directory` after every attach/detach (on the fleet's own queue, never the caller's).
    public let autosave: Bool
    /// When normal-mode devices connect to the cloud (and Gen3 devices make a missing key).
    public let cloudConnection: SimulatedDevice.CloudConnection
    /// The simulated cloud its devices connect to (nil: not modelled, every connection succeeds).
    public let cloudLink: SimulatedCloudLink?
    /// Which hubs are single- or multi-TT (see `HubKind`).
    private let hubs: SimulatedHubs

    private let lock = NSLock()
    private let saveQueue = DispatchQueue(label: "keyline.simulator.fleet.save")
    private var lastSaveError: SimulatorError?
    // Guarded by `lock`.
    private var devices: [USBPortPath: SimulatedDevice] = [:]
    private var attachments: [USBPortPath: SimulatedAttachment] = [:]
    private var nextAddress: [UInt8: UInt8] = [:]
    private var changeCount: UInt64 = 0
    private var observers: [UInt64: @Sendable (Change) -> Void] = [:]
    private var nextObserver: UInt64 = 1

    /// - Parameters:
    ///   - timeScale: real seconds per modelled second for every device (0 = no delays).
    ///   - directory: if given, devices saved there by `save()` are loaded now.
    ///   - seed: derives device IDs of devices added without one.
    ///   - autosave: with a directory, save the fleet after every attach and detach, so a
    ///     simulator process that is killed keeps what devices held at their last re-enumeration
    ///     (e.g. keys written before leaving DFU mode).
    ///   - hubs: the kind of the hub at each hub path (a device at 1-2.3 hangs off hub 1-2); hubs
    ///     not listed are `defaultHub`. A device at a root port (1-5) has its own full-speed bus.
    ///   - cloudConnection: when normal-mode devices connect to the cloud.
    public init(timeScale: Double = 1, directory: URL? = nil, seed: UInt64 = 0, autosave: Bool = false,
                hubs: [USBPortPath: HubKind] = [:], defaultHub: HubKind = .default,
                cloudConnection: SimulatedDevice.CloudConnection = .standard,
                cloudLink: SimulatedCloudLink? = nil) throws(SimulatorError) {
        self.timeScale = timeScale
        self.cloudLink = cloudLink
        self.hubs = SimulatedHubs(kinds: hubs, defaultKind: defaultHub)
        self.cloudConnection = cloudConnection
        self.directory = directory
        self.seed = seed
        self.autosave = autosave && directory != nil
        if let directory { try loadSaved(from: directory) }
    }

    /// Returns once every autosave started so far has finished; the last save's error, if any.
    @discardableResult
    public func waitForPendingSaves() async -> SimulatorError? {
        await withCheckedContinuation { continuation in
            saveQueue.async { continuation.resume() }
        }
        return lock.withLock { lastSaveError }
    }

    private func scheduleAutosave() {
        guard autosave else { return }
        saveQueue.async { [weak self] in
            guard let self else { return }
            do throws(SimulatorError) {
                try self.save()
                self.lock.withLock { self.lastSaveError = nil }
            } catch {
                self.lock.withLock { self.lastSaveError = error }
            }
        }
    }

    // MARK: - Devices

    /// Plugs a new simulated device in at `port`.
    @discardableResult
    public func add(_ platform: Platform, at port: USBPortPath, mode: USBMode = .dfu, deviceID: String? = nil,
                    protected: Bool = false, faults: SimulatedFaults = .none,
                    factoryKey: DevicePrivateKey? = nil) throws(SimulatorError) -> SimulatedDevice {
        let device = try SimulatedDevice(platform: platform, deviceID: deviceID, mode: mode, protected: protected,
                                         faults: faults, timeScale: timeScale, seed: portSeed(port), cloudConnection: cloudConnection,
                                         cloudLink: cloudLink, factoryKey: factoryKey)
        try insert(device, at: port)
        return device
    }

    /// The device ID `add` gives a device of `platform` at `port` when none is named.
    public func plannedDeviceID(_ platform: Platform, at port: USBPortPath) -> String {
        SimulatedDevice.makeDeviceID(platform: platform, seed: portSeed(port))
    }

    private func portSeed(_ port: USBPortPath) -> UInt64 {
        port.ports.reduce(seed &* 31 &+ UInt64(port.bus)) { $0 &* 257 &+ UInt64($1) }
    }

    /// Plugs an existing device (e.g. one loaded from disk) in at `port`.
    public func insert(_ device: SimulatedDevice, at port: USBPortPath) throws(SimulatorError) {
        try lock.locked { () throws(SimulatorError) in
            guard devices[port] == nil else { throw .portInUse(port) }
            devices[port] = device
        }
        device.setTranslator(hubs.translator(for: port))
        device.setBusObserver { [weak self] device, event in self?.busEvent(device, event, port: port) }
        if let session = device.currentSession() {
            busEvent(device, .attached(session: session, mode: device.currentMode), port: port)
        }
    }

    /// Unplugs and forgets the device at `port`.
    public func remove(at port: USBPortPath) throws(SimulatorError) {
        let device = try lock.locked { () throws(SimulatorError) -> SimulatedDevice in
            guard let device = devices.removeValue(forKey: port) else { throw .noDevice(port) }
            return device
        }
        device.unplug()
        device.setBusObserver(nil)
        let gone = lock.withLock { attachments.removeValue(forKey: port) }
        if let gone { publish(.detached(port: port, address: gone.address, serialNumber: gone.serialNumber)) }
    }

    /// Every device in the fleet, attached or not, by port.
    public var allDevices: [(port: USBPortPath, device: SimulatedDevice)] {
        lock.withLock { devices.sorted { $0.key < $1.key }.map { ($0.key, $0.value) } }
    }

    public func device(at port: USBPortPath) -> SimulatedDevice? { lock.withLock { devices[port] } }

    /// Whether the hub at `path` (e.g. 1-2 for ports 1-2.1 …) is single- or multi-TT.
    public func hubKind(at path: USBPortPath) -> HubKind { hubs.kind(ofHubAt: path) }

    /// The slowest device's device-bound modelled time up to the answer to its leave-DFU request
    /// (`Statistics.modelledTimeToLeave`): the least a batch over this fleet can take, bus
    /// included, with an infinitely fast host. It ends where a batch's wall ends (the station is
    /// done with a device once it is asked to leave), so `limit / wall` compares with 1.0.
    public var deviceBoundLimit: (port: USBPortPath, time: Duration)? {
        allDevices.map { ($0.port, $0.device.statistics.modelledTimeToLeave) }.max { $0.1 < $1.1 }
    }

    // MARK: - Bus view

    /// What is on the bus now, sorted by port.
    public func attachedDevices() -> [SimulatedAttachment] {
        lock.withLock { attachments.values.sorted { $0.port < $1.port } }
    }

    /// Increases on every attach and detach: poll it to notice changes cheaply.
    public var generation: UInt64 { lock.withLock { changeCount } }

    /// Calls `handler` (on the thread that caused the change) for every later change. Keep the
    /// handler short; it must not call back into the fleet synchronously while holding its own locks.
    @discardableResult
    public func addObserver(_ handler: @escaping @Sendable (Change) -> Void) -> UInt64 {
        lock.withLock {
            let token = nextObserver
            nextObserver += 1
            observers[token] = handler
            return token
        }
    }

    public func removeObserver(_ token: UInt64) {
        _ = lock.withLock { observers.removeValue(forKey: token) }
    }

    /// Every later change, as a stream; it ends when the consumer stops iterating.
    public func changes() -> AsyncStream<Change> {
        let (stream, continuation) = AsyncStream.makeStream(of: Change.self, bufferingPolicy: .unbounded)
        let token = addObserver { continuation.yield($0) }
        continuation.onTermination = { [weak self] _ in self?.removeObserver(token) }
        return stream
    }

    private func busEvent(_ device: SimulatedDevice, _ event: SimulatedDevice.BusEvent, port: USBPortPath) {
        let change: Change? = lock.withLock {
            guard devices[port] === device else { return nil }
            switch event {
            case .attached(let session, let mode):
                let descriptors = device.descriptors(for: mode)
                let address = nextAddress[port.bus, default: 1]
                nextAddress[port.bus] = address >= 127 ? 1 : address + 1
                let attachment = SimulatedAttachment(
                    port: port, address: address, vendorID: device.platform.vendorID,
                    productID: device.platform.productID(mode), serialNumber: device.deviceID, mode: mode,
                    transport: SimulatedTransport(device: device, session: session),
                    deviceDescriptor: descriptors.device, configurationDescriptor: descriptors.configuration)
                attachments[port] = attachment
                changeCount += 1
                return .attached(attachment)
            case .detached(let session):
                guard let current = attachments[port], current.transport.session == session else { return nil }
                attachments[port] = nil
                changeCount += 1
                return .detached(port: port, address: current.address, serialNumber: current.serialNumber)
            }
        }
        if let change {
            scheduleAutosave()
            publish(change)
        }
    }

    private func publish(_ change: Change) {
        let handlers = lock.withLock { Array(observers.values) }
        for handler in handlers { handler(change) }
    }

    // MARK: - DeviceBus, USBDeviceLocator

    public func enumerate() async throws -> [BusDevice] {
        attachedDevices().map(\.busDevice)
    }

    public func open(_ device: BusDevice) async throws -> any ClosableControlTransport {
        try openHandle(device)
    }

    /// Opens that enumeration as an owning handle, claiming the DFU interface (0) in DFU mode,
    /// as `USBContext.open` does through libusb. Normal mode claims nothing (vendor requests go
    /// to the device). Throws `.busy` while another handle (in-process or through the stand-in)
    /// holds it, `.disconnected` if the device re-enumerated or left since it was listed.
    public func openHandle(_ device: BusDevice) throws(SimulatorError) -> SimulatedTransport {
        guard let attachment = lock.withLock({ attachments[device.port] }), attachment.address == device.address
        else { throw .disconnected(device.port) }
        let owner = SimulatedHandle.makeOwner()
        let interface: UInt8? = attachment.mode == .dfu ? 0 : nil
        if let interface {
            switch attachment.transport.claimInterface(interface, owner: owner) {
            case .claimed: break
            case .busy: throw .busy(device.port)
            case .gone: throw .disconnected(device.port)
            }
        } else if !attachment.isAttached {
            throw .disconnected(device.port)
        }
        return SimulatedTransport(device: attachment.device, session: attachment.transport.session,
                                  handle: SimulatedHandle(owner: owner, claimed: interface))
    }

    /// Waits as a station does, through a `DeviceBusWatcher` (polling every 10 ms), and opens the
    /// device with its DFU interface claimed: close the transport to let another owner open it.
    public func waitForDevice(_ match: USBDeviceMatch, timeout: Duration) async throws(USBLocatorError) -> USBOpenedDevice {
        let watcher = DeviceBusWatcher(bus: self, interval: .milliseconds(10))
        watcher.start()
        defer { watcher.stop() }
        return try await watcher.waitForDevice(match, timeout: timeout)
    }

    // MARK: - Persistence

    struct FleetRecord: Codable {
        var ports: [String: USBPortPath]
    }

    /// Saves every device under `directory` (or the fleet's own directory): `fleet.json` maps a
    /// folder per device to its port.
    public func save(to directory: URL? = nil) throws(SimulatorError) {
        guard let directory = directory ?? self.directory else {
            throw .stateFile(path: "(none)", detail: "the fleet has no directory to save to")
        }
        var record = FleetRecord(ports: [:])
        for (port, device) in allDevices {
            let folder = "\(port.description)-\(device.deviceID)"
            try device.save(to: directory.appendingPathComponent(folder))
            record.ports[folder] = port
        }
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try PrivateStateFiles.write(encoder.encode(record), to: directory.appendingPathComponent("fleet.json"))
        } catch {
            throw .stateFile(path: directory.path, detail: "\(error)")
        }
    }

    private func loadSaved(from directory: URL) throws(SimulatorError) {
        let file = directory.appendingPathComponent("fleet.json")
        guard FileManager.default.fileExists(atPath: file.path) else { return }
        let record: FleetRecord
        do {
            record = try JSONDecoder().decode(FleetRecord.self, from: Data(contentsOf: file))
        } catch {
            throw .stateFile(path: file.path, detail: "\(error)")
        }
        for (folder, port) in record.ports.sorted(by: { $0.value < $1.value }) {
            let device = try SimulatedDevice.load(from: directory.appendingPathComponent(folder), timeScale: timeScale,
                                                  cloudConnection: cloudConnection, cloudLink: cloudLink)
            try insert(device, at: port)
        }
    }
}
