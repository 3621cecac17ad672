import DFU
import DeviceBus
import ParticlePlatform
import Foundation
import Simulator
import Testing

/// The simulated bootloaders must answer like Particle's (dfu-protocol.md §1.4, §2; Gen2
/// `usbd_dfu_core.c`, Gen3 `usbd_dfu.cpp`), request by request.
@Suite struct BootloaderBehaviourTests {
    /// Opens alt `alt` and returns the raw request layer in dfuIDLE.
    func raw(_ device: SimulatedDevice, alt: UInt8 = 0) async throws -> DFUInterface {
        let transport = try #require(device.transport)
        try await transport.selectAlternateSetting(interface: 0, alternateSetting: alt)
        let interface = DFUInterface(transport: transport)
        let status = try await interface.getStatus()
        #expect(status.state == .dfuIdle && status.status == .ok)
        return interface
    }

    @Test(arguments: simulatedPlatforms)
    func commandAnswersDnbusyThenDnloadIdle(platform: Platform) async throws {
        let device = try SimulatedDevice(platform: platform, timeScale: 0, seed: 1)
        let dfu = try await raw(device)
        try await dfu.download(block: 0, DfuSeCommand.setAddressPointer(0x1000).bytes)
        #expect(try await dfu.getState() == .dnloadSync)
        #expect(try await dfu.getStatus().state == .dnbusy)
        #expect(try await dfu.getStatus() == DFUStatus(status: .ok, state: .dnloadIdle))
        try await dfu.abort()
        #expect(try await dfu.getStatus().state == .dfuIdle)
    }

    @Test(arguments: simulatedPlatforms)
    func clearStatusOutsideErrorIsAnError(platform: Platform) async throws {
        let device = try SimulatedDevice(platform: platform, timeScale: 0, seed: 1)
        let dfu = try await raw(device)
        // Gen3 stalls as well; both end in dfuERROR/errUNKNOWN.
        _ = try? await dfu.clearStatus()
        #expect(try await dfu.getStatus() == DFUStatus(status: .errUnknown, state: .dfuError))
        try await dfu.clearStatus()
        #expect(try await dfu.getStatus() == DFUStatus(status: .ok, state: .dfuIdle))
    }

    @Test(arguments: gen3Platforms)
    func gen3RejectsWritesToUnerasedFlash(platform: Platform) async throws {
        let device = try SimulatedDevice(platform: platform, timeScale: 0, seed: 4)
        let layout = try DfuSeMemoryLayout(parsing: try await openDFU(device).alternateSettings[0].name)
        let address = layout.segments.first { $0.attributes.contains(.writable) }!.start
        try device.writeMemory(alt: 0, address: address, bytes: [UInt8](repeating: 0x00, count: 16))
        let dfu = try await raw(device)
        try await dfu.dfuseCommand(.setAddressPointer(address))
        try await dfu.download(block: 2, [UInt8](repeating: 0x5A, count: 16))
        await #expect(throws: DFUError.Reason.deviceStatus(.errUnknown, state: .dfuError)) { try await dfu.completeDataBlock() }
    }

    @Test(arguments: gen2Platforms)
    func gen2ProgramsUnerasedFlashSilentlyAsTheAndOfBits(platform: Platform) async throws {
        let device = try SimulatedDevice(platform: platform, timeScale: 0, seed: 4)
        try device.writeMemory(alt: 0, address: 0x0802_0000, bytes: [0xF0, 0x0F, 0xFF, 0x00])
        let dfu = try await raw(device)
        try await dfu.dfuseCommand(.setAddressPointer(0x0802_0000))
        try await dfu.download(block: 2, [0x3C, 0x3C, 0x3C, 0x3C])
        try await dfu.completeDataBlock()  // ST's library ignores MAL_Write failures
        #expect(try device.readMemory(alt: 0, address: 0x0802_0000, length: 4) == [0x30, 0x0C, 0x3C, 0x00])
    }

    @Test(arguments: simulatedPlatforms)
    func outOfRangeAndReadOnlyWrites(platform: Platform) async throws {
        let device = try SimulatedDevice(platform: platform, timeScale: 0, seed: 4)
        let layout = try DfuSeMemoryLayout(parsing: try await openDFU(device).alternateSettings[0].name)
        let end = UInt32(layout.segments.last!.end - 0x100)  // straddles the end of memory
        let readOnly = layout.segments.first { !$0.attributes.contains(.writable) }
        for address in [end] + (readOnly.map { [$0.start] } ?? []) {
            let dfu = try await raw(device)
            let before = try device.readMemory(alt: 0, address: address, length: 0x100)
            try await dfu.dfuseCommand(.setAddressPointer(address))
            try await dfu.download(block: 2, [UInt8](repeating: 0, count: 0x200))
            if platform.mcu == .stm32f2 {
                try await dfu.completeDataBlock()   // silently not written
                try await dfu.abort()
            } else {
                await #expect(throws: DFUError.Reason.deviceStatus(.errUnknown, state: .dfuError)) { try await dfu.completeDataBlock() }
                try await dfu.clearStatus()
            }
            #expect(try device.readMemory(alt: 0, address: address, length: 0x100) == before)
        }
    }

    @Test(arguments: simulatedPlatforms)
    func leaveStatusAndReenumeration(platform: Platform) async throws {
        let fleet = try SimulatedFleet(timeScale: 0.001)
        let device = try fleet.add(platform, at: port(1), mode: .dfu)
        let dfu = try await raw(device)
        try await dfu.download(block: 2, [])
        let status = try await dfu.getStatus()
        // Gen2 reports dfuDNLOAD-IDLE "for dfu-util"; Gen3 reports dfuMANIFEST.
        #expect(status.state == (platform.mcu == .stm32f2 ? .dnloadIdle : .manifest))
        let opened = try await fleet.waitForDevice(
            USBDeviceMatch(serialNumber: device.deviceID, vendorID: 0x2B04, productIDs: [platform.normalProductID]), timeout: .seconds(10))
        #expect(opened.identity.port == port(1))
        await #expect(throws: DFUError.Reason.transfer(.disconnected, request: .getStatus)) { _ = try await dfu.getStatus() }
    }

    @Test func gen2UploadBlockOneCorruptsTheStateByte() async throws {
        let device = try SimulatedDevice(platform: .photon, timeScale: 0, seed: 4)
        let dfu = try await raw(device)
        await #expect(throws: DFUError.Reason.transfer(.stall, request: .upload)) { _ = try await dfu.upload(block: 1, length: 16) }
        // The ST library stored 0x0F in the state byte: the reply no longer parses.
        await #expect(throws: DFUError.Reason.self) { _ = try await dfu.getStatus() }
    }

    @Test func gen3MassEraseIsRefusedWithErrTarget() async throws {
        let device = try SimulatedDevice(platform: .boron, timeScale: 0, seed: 4)
        let dfu = try await raw(device)
        await #expect(throws: DFUError.Reason.deviceStatus(.errTarget, state: .dfuError)) { try await dfu.dfuseCommand(.massErase) }
    }

    /// At time scale 1 the DCT reports ST's values (scaled values: TimingModelTests).
    @Test func gen2DCTReportsItsPollTimeouts() async throws {
        let device = try SimulatedDevice(platform: .photon, timeScale: 1, seed: 4)
        let dfu = try await raw(device, alt: 1)
        try await dfu.download(block: 0, DfuSeCommand.erasePage(0).bytes)
        #expect(try await dfu.getStatus().pollTimeoutMilliseconds == 500)
        // Gen2 passes back through dfuDNLOAD-SYNC: the next GETSTATUS says dfuDNLOAD-IDLE, and the
        // poll timeout stays until the next busy reply.
        let idle = try await dfu.getStatus()
        #expect(idle.state == .dnloadIdle && idle.pollTimeoutMilliseconds == 500)
        try await dfu.download(block: 0, DfuSeCommand.setAddressPointer(0).bytes)
        #expect(try await dfu.getStatus().pollTimeoutMilliseconds == 1)
    }

    @Test func undefinedRequestsStall() async throws {
        let device = try SimulatedDevice(platform: .argon, timeScale: 0, seed: 4)
        let dfu = try await raw(device)
        await #expect(throws: USBTransferError.stall) {
            _ = try await dfu.transport.control(ControlSetup(requestType: 0xA1, request: 9, value: 0, index: 0, length: 1), data: [], timeout: .seconds(1))
        }
        #expect(try await dfu.getStatus().state == .dfuError)
        await #expect(throws: USBTransferError.stall) {
            try await dfu.transport.selectAlternateSetting(interface: 0, alternateSetting: 7)
        }
    }
}

@Suite struct StandardRequestTests {
    @Test(arguments: [Platform.photon, .boron])
    func functionalDescriptorByItself(platform: Platform) async throws {
        let device = try SimulatedDevice(platform: platform, timeScale: 0, seed: 1)
        let reader = USBDescriptorReader(transport: try #require(device.transport))
        let bytes = try await reader.raw(type: .dfuFunctional, index: 0, length: 9)
        #expect(try DFUFunctionalDescriptor(bytes: bytes) == .particle)
        // Normal mode has no DFU functional descriptor to give.
        let normal = try SimulatedDevice(platform: platform, mode: .normal, timeScale: 0, seed: 1)
        await #expect(throws: DFUError.Reason.transfer(.stall, request: nil)) {
            _ = try await USBDescriptorReader(transport: try #require(normal.transport)).raw(type: .dfuFunctional, index: 0, length: 9)
        }
    }
}
