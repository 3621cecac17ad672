import Age
import DeviceBus
import ParticlePlatform
import RMABench
import DeviceKeys
import Escrow
import Foundation
import Registry
import Simulator
import Testing
import TestSupport

/// A Photon in DFU mode on a fresh fleet whose key `original` is escrowed to a directory store in
/// `scratch` and registered for `product`, as a bench does it (`keys send`): what a restore needs.
/// The device's key slot is left as the test wants it (blank until written).
struct RegisteredPhoton {
    let fleet: SimulatedFleet
    let device: SimulatedDevice
    let original: DevicePrivateKey
    let identity: X25519Identity
    let registrationID: Int64

    init(_ registry: RegistryDatabase, scratch: ScratchDirectory, product: String, seed: UInt64) async throws {
        _ = try await registry.createProduct(id: product, name: "Restore test \(product)")
        fleet = try SimulatedFleet(timeScale: 0, seed: seed)
        let device = try fleet.add(.photon, at: USBPortPath(bus: 1, ports: [1, 1]), mode: .dfu)
        self.device = device
        let fleet = self.fleet
        try await waitUntil(poll: .milliseconds(10), "!fleet.attachedDevices().isEmpty") { !fleet.attachedDevices().isEmpty }
        original = try DevicePrivateKey.generate(.rsa)
        identity = X25519Identity.generate()
        let escrow = BenchEscrow(registry: registry, store: DirectoryEscrowStore(root: scratch.file("store")),
                                 recipients: [identity.recipient], station: "bench")
        let object = try await escrow.escrow(original, deviceID: device.deviceID, platform: "photon", product: product,
                                             label: "test", reason: "test")
        let registration = try await BenchKeyRegistration(registry: registry, station: "bench").register(
            original.publicKey, deviceID: device.deviceID, product: product, backup: object, supersede: false, reason: "test")
        #expect(registration.superseded == nil)
        registrationID = registration.registered.id
    }

    /// The original key as keyline writes a slot: its DER, then 0xFF to the slot's end.
    var paddedSlot: [UInt8] {
        let slot = Platform.photon.privateKeySlot
        return original.der + [UInt8](repeating: 0xFF, count: slot.size - original.der.count)
    }
}
