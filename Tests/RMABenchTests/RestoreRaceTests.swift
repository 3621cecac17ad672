import DeviceBus
import ParticlePlatform
import RMABench
import DeviceKeys
import Foundation
import Registry
import Simulator
import Testing
import TestSupport

/// A restore whose registration changes while it runs: the registry is read again right before
/// the write, so a key superseded meanwhile is never written back.
@Suite("Restore against a changing registry", .serialized)
struct RestoreRaceTests {
    /// The fleet, but the first time a device is opened (after the restore read the registration
    /// and checked the backup, before it writes) `onOpen` runs: another bench superseding the key.
    final class InterleavingBus: DeviceBus, @unchecked Sendable {
        let fleet: SimulatedFleet
        let onOpen: @Sendable () async throws -> Void
        private let lock = NSLock()
        private var opened = false

        init(fleet: SimulatedFleet, onOpen: @escaping @Sendable () async throws -> Void) {
            self.fleet = fleet
            self.onOpen = onOpen
        }

        func enumerate() async throws -> [BusDevice] { try await fleet.enumerate() }

        func open(_ device: BusDevice) async throws -> any ClosableControlTransport {
            let first = lock.withLock { () -> Bool in
                defer { opened = true }
                return !opened
            }
            if first { try await onOpen() }
            return try await fleet.open(device)
        }
    }

    @Test("a registration superseded after the restore read it is refused, and the DCT is unchanged",
          .timeLimit(.minutes(2)))
    func supersededDuringRestore() async throws {
        try await TestPostgres.withMigratedDatabase { registry in
            let scratch = try ScratchDirectory(label: "restore-race")
            defer { scratch.remove() }
            // Escrowed and registered as a bench does it (keys send), held by the device, then the slot is damaged.
            let photon = try await RegisteredPhoton(registry, scratch: scratch, product: "race", seed: 61)
            let (fleet, device, identity) = (photon.fleet, photon.device, photon.identity)
            try device.writeMemory(alt: 1, address: UInt32(Platform.photon.privateKeySlot.offset), bytes: photon.paddedSlot)
            device.corruptKeySlot(seed: 3)
            let dct = try device.readMemory(alt: 1, address: 0, length: 16 * 1024)

            let deviceID = device.deviceID
            let bus = InterleavingBus(fleet: fleet) {
                _ = try await registry.supersedeKey(productID: "race", deviceID: deviceID, reason: "re-keyed at another bench",
                                                    station: "other-bench")
            }
            let bench = BenchDevices(bus: bus, timeout: .seconds(10))
            defer { bench.stop() }
            let restorer = KeyRestore(registry: registry, identities: [identity], devices: bench, station: "rma")
            await #expect(throws: RestoreError.registrationChanged(deviceID: deviceID, registrationID: photon.registrationID)) {
                _ = try await restorer.restore(RestoreRequest(deviceID: deviceID))
            }
            #expect(try device.readMemory(alt: 1, address: 0, length: 16 * 1024) == dct)
            let restorations = try await registry.restorations(productID: "race", deviceID: deviceID)
            #expect(restorations.map(\.outcome) == [.failed])
            #expect(restorations.first?.detail == "registrationChanged")
        }
    }
}
