import DeviceBus
import Foundation

/// A simulated line served to programs that load the libusb stand-in (`keyline-sim serve`): the
/// fleet (restored from a state folder, or built from a `FleetSpec` plan into an empty one) behind
/// a `StandInServer` on a Unix socket, its devices connecting to a simulated cloud if one is given.
public final class ServedLine: Sendable {
    public let fleet: SimulatedFleet
    private let server: StandInServer
    private let keepsState: Bool

    /// Binds the socket before any simulated device exists: a device boots on its own queue (and
    /// may be generating a key with OpenSSL), and a process exiting under it (a socket that
    /// cannot be bound) would race OpenSSL's exit-time cleanup. Then, into an empty fleet, plugs in
    /// the planned devices in their factory state, after telling the cloud (if any) what it holds
    /// for them, so no device connects before the cloud knows its factory key.
    public init(socket: String, plan: FleetSpec.FleetPlan, timeScale: Double, stateDirectory: URL?, seed: UInt64,
                cloudConnection: SimulatedDevice.CloudConnection, accessDenied: Set<USBPortPath>,
                cloudLink: SimulatedCloudLink? = nil, factory: FactoryState = .blank) async throws {
        fleet = try SimulatedFleet(timeScale: timeScale, directory: stateDirectory, seed: seed, autosave: stateDirectory != nil,
                                   hubs: plan.hubs, cloudConnection: cloudConnection, cloudLink: cloudLink)
        keepsState = stateDirectory != nil
        server = StandInServer(socketPath: socket, fleet: fleet, accessDenied: accessDenied)
        try server.start()
        // Devices saved by an earlier run come back; the plan fills only an empty state folder.
        guard fleet.allDevices.isEmpty else { return }
        let kinds = factory.assign(count: plan.devices.count, seed: seed)
        var keys: [FactoryKeys] = []
        for (device, kind) in zip(plan.devices, kinds) {
            keys.append(try FactoryKeys.make(kind, platform: device.platform))
        }
        if let cloudLink {
            try await cloudLink.client.registerFactory(zip(plan.devices, keys).map { device, keys in
                SimulatedCloudClient.FactoryDevice(deviceID: fleet.plannedDeviceID(device.platform, at: device.port),
                                                   platform: device.platform.name, publicKey: keys.cloudKey)
            })
        }
        for (device, keys) in zip(plan.devices, keys) {
            try fleet.add(device.platform, at: device.port, mode: device.mode, protected: device.protected, faults: device.faults,
                          factoryKey: keys.slotKey)
        }
    }

    /// Stops serving and, with a state folder, saves what the devices hold.
    public func stop() async throws {
        server.stop()
        if keepsState {
            await fleet.waitForPendingSaves()
            try fleet.save()
        }
    }
}
