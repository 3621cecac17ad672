import DeviceBus
import Foundation
import ParticleDevice
import Simulator
import Testing

/// A normal-mode device that accepts a service request and then reports it pending forever.
final class ForeverPendingTransport: ControlTransport, @unchecked Sendable {
    func control(_ setup: ControlSetup, data: [UInt8], timeout: Duration) async throws(USBTransferError) -> [UInt8] {
        switch setup.request {
        case 1: [2, 0, 0, 0, 0, 0, 7, 0]  // INIT: flags has-id, status OK, id 7
        case 2: [0, 0, 0, 0, 2, 0]        // CHECK: status PENDING
        default: throw .stall
        }
    }
    func selectAlternateSetting(interface: UInt8, alternateSetting: UInt8) async throws(USBTransferError) {}
}

@Suite struct CancellationTests {
    @Test func aCancelledServiceRequestStopsPolling() async {
        let requests = ParticleControlRequests(transport: ForeverPendingTransport(), timeout: .seconds(30))
        let task = Task { () async throws(ParticleDeviceError) -> [UInt8] in try await requests.send(.dfuMode, step: .enterDFU) }
        task.cancel()
        let result = await task.result
        // Without the cancellation check this polls for 30 s and then reports "still pending".
        guard case .failure(let failure) = result, let error = failure as? ParticleDeviceError, case .transfer(.cancelled) = error.reason else {
            Issue.record("expected a cancelled transfer, got \(result)")
            return
        }
        #expect(error.step == .enterDFU)
    }

    @Test func aCancelledWaitForAFleetDeviceSaysCancelled() async throws {
        let fleet = try SimulatedFleet(timeScale: 0)
        let match = USBDeviceMatch(serialNumber: String(repeating: "0", count: 24), vendorID: 0x2B04, productIDs: [0xD00D])
        let task = Task { () async throws(USBLocatorError) -> USBOpenedDevice in try await fleet.waitForDevice(match, timeout: .seconds(30)) }
        task.cancel()
        let result = await task.result
        guard case .failure(let failure) = result, let error = failure as? USBLocatorError else {
            Issue.record("expected a failure, got \(result)")
            return
        }
        #expect(error == .cancelled(match))
    }
}

@Suite struct StateFileTests {
    @Test func savedStateWithKeysIsOwnerOnly() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("keyline-state-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let fleet = try SimulatedFleet(timeScale: 0, directory: directory, seed: 4)
        try fleet.add(.boron, at: USBPortPath(bus: 1, ports: [1]), mode: .dfu)
        try fleet.save()

        func permissions(_ url: URL) throws -> Int {
            try #require(FileManager.default.attributesOfItem(atPath: url.path)[.posixPermissions] as? Int)
        }
        let folders = try FileManager.default.contentsOfDirectory(at: directory, includingPropertiesForKeys: nil)
            .filter { $0.hasDirectoryPath }
        #expect(folders.count == 1)
        for folder in folders {
            #expect(try permissions(folder) == 0o700, "\(folder.lastPathComponent)")
            let files = try FileManager.default.contentsOfDirectory(at: folder, includingPropertiesForKeys: nil)
            #expect(files.contains { $0.lastPathComponent == "alt1.bin" })
            for file in files { #expect(try permissions(file) == 0o600, "\(file.lastPathComponent)") }
        }
        #expect(try permissions(directory.appendingPathComponent("fleet.json")) == 0o600)

        // And it loads back.
        let again = try SimulatedFleet(timeScale: 0, directory: directory)
        #expect(again.allDevices.count == 1)
    }
}
