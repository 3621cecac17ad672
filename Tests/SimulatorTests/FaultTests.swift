import DFU
import DeviceBus
import ParticlePlatform
import Foundation
import ParticleDevice
import Simulator
import Testing

/// Each injected fault gives the right typed error, and nothing hangs.
@Suite struct FaultTests {
    @Test(arguments: DFUStatusCode.allCases.filter { $0 != .ok })
    func injectedStatusBecomesATypedErrorAndTheDeviceRecovers(status: DFUStatusCode) async throws {
        // 6000 bytes at 0x1000 cover two 4 KB pages: ERASE #1 and #2, SET ADDRESS #3, first data block #4.
        let device = try SimulatedDevice(platform: .boron, faults: SimulatedFaults(failOperation: .init(number: 4, status: status)),
                                         timeScale: 0, seed: 1)
        let dfu = try await openDFU(device)
        let error = await #expect(throws: DFUError.self) { try await dfu.write(alt: 0, address: 0x1000, bytes: pattern(6000)) }
        #expect(error?.operation == .download)
        #expect(error?.alt == 0)
        #expect(error?.address == 0x1000)
        #expect(error?.reason == .deviceStatus(status, state: .dfuError))
        #expect(error?.recovered == true)
        #expect(error?.description.contains(status.name) == true)
        // Recovered to dfuIDLE with CLRSTATUS: the same write now succeeds.
        try await dfu.write(alt: 0, address: 0x1000, bytes: pattern(6000))
    }

    @Test(arguments: [Platform.photon, .argon])
    func injectedEraseFailureNamesTheSector(platform: Platform) async throws {
        let device = try SimulatedDevice(platform: platform, faults: SimulatedFaults(failOperation: .init(number: 1, status: .errErase)),
                                         timeScale: 0, seed: 1)
        let dfu = try await openDFU(device)
        let segment = try firmwareSegment(dfu)
        let error = await #expect(throws: DFUError.self) { try await dfu.write(alt: 0, address: segment.start + 5, bytes: [1]) }
        #expect(error?.operation == .erase)
        #expect(error?.address == segment.start)
        #expect(error?.deviceStatus == .errErase)
    }

    @Test(arguments: [Platform.electron, .bsom])
    func stallIsReportedAndRecovered(platform: Platform) async throws {
        let device = try SimulatedDevice(platform: platform, timeScale: 0, seed: 1)
        let dfu = try await openDFU(device)
        device.setFaults(SimulatedFaults(stallTransfer: 6))
        let error = await #expect(throws: DFUError.self) { _ = try await dfu.read(alt: 1, address: 34, length: 612) }
        #expect(error?.transferError == .stall)
        #expect(error?.recovered == true)
        #expect(try await dfu.read(alt: 1, address: 34, length: 612).count == 612)
    }

    @Test(arguments: [Platform.p1, .boron])
    func disconnectMidTransfer(platform: Platform) async throws {
        let fleet = try SimulatedFleet(timeScale: 0)
        let device = try fleet.add(platform, at: port(3))
        let dfu = try await openDFU(device)
        device.setFaults(SimulatedFaults(disconnectAfterTransfers: 8))
        let error = await #expect(throws: DFUError.self) { try await dfu.write(alt: 1, address: 3298, bytes: pattern(320)) }
        #expect(error?.transferError == .disconnected)
        #expect(error?.recovered == false)
        #expect(fleet.attachedDevices().isEmpty)
        #expect(!device.isAttached)
        // Power-cycling brings it back (in normal mode).
        device.plugIn(mode: .dfu)
        #expect(await eventually { fleet.attachedDevices().count == 1 })
    }

    @Test func slowDeviceTimesOutInsteadOfHanging() async throws {
        // An nRF52840 page erase is 85 ms; ten times slower, a 20 ms request timeout expires first.
        let device = try SimulatedDevice(platform: .argon, faults: SimulatedFaults(slowdown: 10), timeScale: 1, seed: 1)
        let dfu = try await openDFU(device, timeout: .milliseconds(20))
        let error = await #expect(throws: DFUError.self) { try await dfu.write(alt: 0, address: 0x1000, bytes: [1, 2, 3]) }
        #expect(error?.transferError == .timeout)
        #expect(error?.operation == .erase)
    }

    @Test func noReenumerationAfterLeaveTimesOutTheWait() async throws {
        let fleet = try SimulatedFleet(timeScale: 0.001)
        let device = try fleet.add(.boron, at: port(4), faults: SimulatedFaults(noReenumerationAfterLeave: true))
        try await openDFU(device).leave()
        let match = USBDeviceMatch(serialNumber: device.deviceID, vendorID: 0x2B04, productIDs: [Platform.boron.normalProductID])
        await #expect(throws: USBLocatorError.timedOut(match, after: .milliseconds(300))) {
            _ = try await fleet.waitForDevice(match, timeout: .milliseconds(300))
        }
    }

    @Test func randomFaultPlansAreDeterministicBySeed() {
        for seed in 0..<50 as Range<UInt64> {
            #expect(SimulatedFaults.random(seed: seed) == SimulatedFaults.random(seed: seed))
        }
        let plans = Set((0..<50 as Range<UInt64>).map { SimulatedFaults.random(seed: $0) })
        #expect(plans.count > 10)
    }

    @Test(arguments: [Platform.photon, .boron])
    func corruptKeySlotIsLeftAloneAndReportedAsCorrupt(platform: Platform) async throws {
        let fleet = try SimulatedFleet(timeScale: 0.001)
        let device = try fleet.add(platform, at: port(5), mode: .dfu)
        device.corruptKeySlot(seed: 99)
        let corrupt = device.privateKeySlot()
        try await openDFU(device).leave()   // boots the application, which checks the key
        let normal = try await fleet.waitForDevice(
            USBDeviceMatch(serialNumber: device.deviceID, vendorID: 0x2B04, productIDs: [platform.normalProductID]), timeout: .seconds(10))
        let particle = try await ParticleModeSwitch.enterDFU(normal.transport, identity: normal.identity, locator: fleet)
        #expect(device.statistics.keysGenerated == 0)
        #expect(try await particle.readPrivateKeySlot() == corrupt)
        let error = await #expect(throws: ParticleDeviceError.self) { _ = try await particle.readPrivateKey() }
        guard case .key(.corruptSlot) = error?.reason else {
            Issue.record("expected a corrupt-slot error, got \(String(describing: error))")
            return
        }
    }
}
