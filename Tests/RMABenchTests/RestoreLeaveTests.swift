import DFU
import DeviceBus
import ParticlePlatform
import RMABench
import DeviceKeys
import Foundation
import Registry
import Simulator
import Testing
import TestSupport

/// A restored device that does not leave DFU mode: its original key is written and read back,
/// so the restore is recorded as done, with the leave failure in the report and the row.
@Suite("Restore when the device does not leave DFU mode")
struct RestoreLeaveTests {
    /// The fleet, but once a device is told to leave DFU (DfuSe's zero-length DNLOAD, AN3156 §3)
    /// every later transfer of that handle fails with an I/O error: the final GETSTATUS never
    /// answers, which is no proof the device left.
    final class NoLeaveBus: DeviceBus, @unchecked Sendable {
        let fleet: SimulatedFleet
        init(fleet: SimulatedFleet) { self.fleet = fleet }
        func enumerate() async throws -> [BusDevice] { try await fleet.enumerate() }
        func open(_ device: BusDevice) async throws -> any ClosableControlTransport {
            NoLeaveTransport(inner: try await fleet.open(device))
        }
    }

    final class NoLeaveTransport: ClosableControlTransport, @unchecked Sendable {
        let inner: any ClosableControlTransport
        private let lock = NSLock()
        private var leaving = false
        init(inner: any ClosableControlTransport) { self.inner = inner }

        func control(_ setup: ControlSetup, data: [UInt8], timeout: Duration) async throws(USBTransferError) -> [UInt8] {
            if lock.withLock({ leaving }) { throw .io("LIBUSB_ERROR_IO") }
            let reply = try await inner.control(setup, data: data, timeout: timeout)
            if setup.requestType == 0x21 && setup.request == 1 && setup.length == 0 { lock.withLock { leaving = true } }
            return reply
        }

        func selectAlternateSetting(interface: UInt8, alternateSetting: UInt8) async throws(USBTransferError) {
            try await inner.selectAlternateSetting(interface: interface, alternateSetting: alternateSetting)
        }

        func close() async { await inner.close() }
    }

    @Test("the key is restored and recorded; the leave failure is reported, not thrown", .timeLimit(.minutes(2)))
    func restoredWithoutLeaving() async throws {
        try await TestPostgres.withMigratedDatabase { registry in
            let scratch = try ScratchDirectory(label: "restore-leave")
            defer { scratch.remove() }
            let photon = try await RegisteredPhoton(registry, scratch: scratch, product: "leave", seed: 62)
            let (fleet, device, identity) = (photon.fleet, photon.device, photon.identity)
            let slot = Platform.photon.privateKeySlot
            // The slot is blank: the restore writes the original key into it.
            #expect(try device.readMemory(alt: 1, address: UInt32(slot.offset), length: slot.size) == [UInt8](repeating: 0xFF, count: slot.size))

            let bench = BenchDevices(bus: NoLeaveBus(fleet: fleet), timeout: .seconds(10))
            defer { bench.stop() }
            let restorer = KeyRestore(registry: registry, identities: [identity], devices: bench, station: "rma")
            let report = try await restorer.restore(RestoreRequest(deviceID: device.deviceID, ticket: "RMA-7"))

            #expect(report.foundKey == "blank")
            let failure = try #require(report.leaveFailure)
            #expect(failure.contains("LIBUSB_ERROR_IO"), "\(failure)")
            let written = try device.readMemory(alt: 1, address: UInt32(slot.offset), length: slot.size)
            #expect(written == photon.paddedSlot)
            #expect(device.currentMode == .dfu)
            let restorations = try await registry.restorations(productID: "leave", deviceID: device.deviceID)
            #expect(restorations.map(\.outcome) == [.restored])
            #expect(restorations.first?.registrationID == photon.registrationID)
            #expect(restorations.first?.detail?.contains("did not leave DFU mode") == true, "\(restorations)")
        }
    }
}
