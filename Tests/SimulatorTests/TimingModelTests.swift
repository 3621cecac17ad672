import DFU
import DeviceBus
import Foundation
import ParticleDevice
import Simulator
import Testing

/// The reported poll timeout, Gen3 DETACH and the Gen3 compat user-part erase (issue 13).
@Suite struct BootloaderTimingTests {
    static let getStatus = ControlSetup(requestType: 0xA1, request: 3, value: 0, index: 0, length: 6)

    static func command(_ bytes: [UInt8]) -> ControlSetup {
        ControlSetup(requestType: 0x21, request: 1, value: 0, index: 0, length: UInt16(bytes.count))
    }

    static func poll(_ reply: [UInt8]) -> UInt32 { UInt32(reply[1]) | UInt32(reply[2]) << 8 | UInt32(reply[3]) << 16 }

    /// Gen2 DCT ERASE: 500 ms × the time scale in the dfuDNBUSY reply, and the same value in the
    /// next (dfuDNLOAD-IDLE) reply: it stays until the next busy reply (dfu-protocol.md §5.3).
    @Test(arguments: [(0.0, UInt32(0)), (0.1, UInt32(50)), (1.0, UInt32(500))])
    func gen2DCTErasePollTimeoutIsScaledAndHeld(scale: Double, expected: UInt32) async throws {
        let device = try SimulatedDevice(platform: .photon, mode: .dfu, timeScale: scale, seed: 1)
        let transport = try #require(device.transport)
        try await transport.selectAlternateSetting(interface: 0, alternateSetting: 1)
        let erase: [UInt8] = [0x41, 0, 0, 0, 0]
        _ = try await transport.control(Self.command(erase), data: erase, timeout: .seconds(5))
        let busy = try await transport.control(Self.getStatus, data: [], timeout: .seconds(5))
        #expect(busy[4] == DFUState.dnbusy.rawValue && Self.poll(busy) == expected)
        let idle = try await transport.control(Self.getStatus, data: [], timeout: .seconds(5))
        #expect(idle[4] == DFUState.dnloadIdle.rawValue && Self.poll(idle) == expected)
        // The next busy reply replaces it: Set Address reports 1 ms (× scale, rounded).
        let setAddress: [UInt8] = [0x21, 0, 0, 0, 0]
        _ = try await transport.control(Self.command(setAddress), data: setAddress, timeout: .seconds(5))
        let next = try await transport.control(Self.getStatus, data: [], timeout: .seconds(5))
        #expect(next[4] == DFUState.dnbusy.rawValue && Self.poll(next) == UInt32((1 * scale).rounded()))
    }

    /// Gen3 DETACH in DFU mode: the reply goes out, the bootloader leaves the bus and comes back
    /// in DFU mode as a new enumeration; the old handle is dead.
    @Test func gen3DetachReattachesInDFUMode() async throws {
        let fleet = try SimulatedFleet(timeScale: 0.001, seed: 2)
        let device = try fleet.add(.argon, at: port(1), mode: .dfu)
        let first = try #require(fleet.attachedDevices().first)
        var changes = fleet.changes().makeAsyncIterator()
        _ = try await first.transport.control(ControlSetup(requestType: 0x21, request: 0, value: 1000, index: 0, length: 0),
                                              data: [], timeout: .seconds(1))
        guard case .detached(let gone, _, _) = await changes.next(), case .attached(let again) = await changes.next() else {
            Issue.record("the bootloader did not drop off the bus and come back")
            return
        }
        #expect(gone == port(1))
        #expect(again.mode == .dfu && again.serialNumber == device.deviceID && again.address != first.address)
        #expect(!first.isAttached)
        let status = try await again.transport.control(Self.getStatus, data: [], timeout: .seconds(1))
        #expect(status[4] == DFUState.dfuIdle.rawValue)
    }

    /// Gen2 DETACH in DFU mode stays on the bus (the ST library treats it as ABORT).
    @Test func gen2DetachStaysAttached() async throws {
        let device = try SimulatedDevice(platform: .photon, mode: .dfu, timeScale: 0, seed: 1)
        let transport = try #require(device.transport)
        _ = try await transport.control(ControlSetup(requestType: 0x21, request: 0, value: 1000, index: 0, length: 0),
                                        data: [], timeout: .seconds(1))
        try await Task.sleep(for: .milliseconds(50))
        #expect(transport.isAttached)
    }

    /// nRF52840 bootloader ≥ 3.1: a valid module written at 0xB4000 erases the page at 0xD4000
    /// (particle-firmware-format.md, "Bootloader side effects worth simulating"); bytes that are
    /// not a valid module for this platform do not.
    @Test func gen3ValidUserPartAt0xB4000ErasesCompatPage() async throws {
        let device = try SimulatedDevice(platform: .boron, mode: .dfu, timeScale: 0, seed: 1)
        let marker = [UInt8](repeating: 0x5A, count: 64)
        try device.writeMemory(alt: 0, address: 0xD4000, bytes: marker)
        let particle = try await ParticleDFUDevice.open(try #require(device.transport))

        let otherPlatform = SyntheticFirmware.make(platform: .argon, function: .userPart, index: 2, size: 8192)
        try await particle.write(alt: 0, address: 0xB4000, bytes: otherPlatform)
        #expect(try device.readMemory(alt: 0, address: 0xD4000, length: 64) == marker)

        let image = SyntheticFirmware.make(platform: .boron, function: .userPart, index: 2, size: 8192)
        try await particle.write(alt: 0, address: 0xB4000, bytes: image)
        #expect(try device.readMemory(alt: 0, address: 0xD4000, length: 4096).allSatisfy { $0 == 0xFF })
        #expect(try device.readMemory(alt: 0, address: 0xB4000, length: image.count) == image)
    }
}

/// When Device OS makes a missing key (device-os-keys.md §1.6).
@Suite struct KeyGenerationMomentTests {
    /// Polls (sleeping) until `condition` holds or about `seconds` pass.
    static func eventually(_ seconds: Double = 10, _ condition: () -> Bool) async throws -> Bool {
        for _ in 0..<Int(seconds * 100) {
            if condition() { return true }
            try await Task.sleep(for: .milliseconds(10))
        }
        return condition()
    }

    /// Gen2 makes its key at boot with a blank slot, then resets once more before it enumerates.
    @Test func gen2GeneratesAtBootThenResets() async throws {
        let device = try SimulatedDevice(platform: .photon, mode: .dfu, timeScale: 0.001, seed: 3, cloudConnection: .never)
        #expect(device.privateKeySlot().first == 0xFF)
        device.plugIn(mode: .normal)
        #expect(try await Self.eventually { device.isAttached && device.currentMode == .normal })
        #expect(device.statistics.keysGenerated == 1)
        #expect(device.statistics.resetsAfterKeyGeneration == 1)
        #expect(device.privateKeySlot().first != 0xFF)
        // With a key in the slot the next boot neither generates nor resets.
        device.plugIn(mode: .normal)
        #expect(try await Self.eventually { device.isAttached && device.statistics.enumerations >= 2 })
        #expect(device.statistics.keysGenerated == 1 && device.statistics.resetsAfterKeyGeneration == 1)
    }

    /// Gen3 boots without making a key; its first cloud connection makes it. In DFU mode with a
    /// blank slot there is no key to read.
    @Test func gen3GeneratesAtFirstCloudConnectionNotAtBoot() async throws {
        let device = try SimulatedDevice(platform: .boron, mode: .dfu, timeScale: 0.001, seed: 4, cloudConnection: .never)
        device.plugIn(mode: .normal)
        #expect(try await Self.eventually { device.isAttached && device.currentMode == .normal })
        try await Task.sleep(for: .milliseconds(50))
        #expect(device.statistics.keysGenerated == 0 && device.privateKeySlot().first == 0xFF)
        #expect(device.statistics.resetsAfterKeyGeneration == 0)
        #expect(device.connectToCloud())
        #expect(device.statistics.keysGenerated == 1 && device.statistics.cloudConnections == 1)
        #expect(device.privateKeySlot().first != 0xFF)
    }

    @Test func gen3BlankDeviceInDFUModeHasNoKey() async throws {
        let fleet = try SimulatedFleet(timeScale: 0, seed: 5)
        let device = try fleet.add(.argon, at: port(1), mode: .dfu)
        #expect(!device.connectToCloud())  // the bootloader runs no application
        let particle = try await ParticleDFUDevice.open(try #require(device.transport))
        #expect(try await particle.readPrivateKeySlot().first == 0xFF)
        #expect(device.statistics.keysGenerated == 0)
    }

    /// The modelled cloud delay: a normal-mode Gen3 device makes its key on its own after it.
    @Test func gen3CloudConnectionFollowsTheModelledDelay() async throws {
        let fleet = try SimulatedFleet(timeScale: 0.01, seed: 6, cloudConnection: .after(.seconds(2)))
        let device = try fleet.add(.boron, at: port(1), mode: .normal)
        #expect(device.statistics.keysGenerated == 0)
        #expect(try await Self.eventually { device.statistics.keysGenerated == 1 })
        #expect(device.statistics.cloudConnections == 1)
    }
}
