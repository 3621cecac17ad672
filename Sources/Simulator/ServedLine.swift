import DeviceBus
import Foundation

/// A simulated line served to programs that load the libusb stand-in (`keyline-sim serve`): the
/// fleet (restored from a state folder, or built from a `FleetSpec` plan into an empty one) behind
/// a `StandInServer` on a Unix socket.
public final class ServedLine: Sendable {
    public let fleet: SimulatedFleet
    private let server: StandInServer
    private let keepsState: Bool

    /// Binds the socket before any simulated device exists: a device boots on its own queue (and
    /// may be generating a key with OpenSSL), and a process exiting under it (a socket that
    /// cannot be bound) would race OpenSSL's exit-time cleanup.
    public init(socket: String, plan: FleetSpec.FleetPlan, timeScale: Double, stateDirectory: URL?, seed: UInt64,
                cloudConnection: SimulatedDevice.CloudConnection, accessDenied: Set<USBPortPath>) throws {
        fleet = try SimulatedFleet(timeScale: timeScale, directory: stateDirectory, seed: seed, autosave: stateDirectory != nil,
                                   hubs: plan.hubs, cloudConnection: cloudConnection)
        keepsState = stateDirectory != nil
        server = StandInServer(socketPath: socket, fleet: fleet, accessDenied: accessDenied)
        try server.start()
        // Devices saved by an earlier run come back; the plan fills only an empty state folder.
        if fleet.allDevices.isEmpty {
            for device in plan.devices {
                try fleet.add(device.platform, at: device.port, mode: device.mode, protected: device.protected, faults: device.faults)
            }
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
