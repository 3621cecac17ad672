import DFU
import DeviceBus
import ParticlePlatform
import DeviceKeys
import Foundation
import ParticleDevice
import Simulator
import Testing

/// The platforms the simulator must model (issue 3): Gen2 STM32F2, Gen3 nRF52840, rtl872x.
let simulatedPlatforms: [Platform] = [.photon, .p1, .electron, .argon, .boron, .bsom, .p2]
let gen2Platforms: [Platform] = [.photon, .p1, .electron]
let gen3Platforms: [Platform] = [.argon, .boron, .bsom, .p2]

func port(_ n: Int, bus: UInt8 = 1) -> USBPortPath { USBPortPath(bus: bus, ports: [1, UInt8(n)]) }

func openDFU(_ device: SimulatedDevice, timeout: Duration = .seconds(5)) async throws -> DfuSeDevice {
    let transport = try #require(device.transport)
    return try await DfuSeDevice.open(transport, requestTimeout: timeout)
}

/// The first readable+erasable+writeable segment of alt 0 (where firmware goes).
func firmwareSegment(_ dfu: DfuSeDevice) throws -> DfuSeMemoryLayout.Segment {
    try #require(try dfu.layout(alt: 0).segments.first { $0.attributes == [.readable, .erasable, .writable] })
}

func pattern(_ count: Int, seed: UInt8 = 3) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed) &+ ($0 >> 8)) }
}

/// Waits (with a limit) until `condition` holds; for effects that happen on a device's own queue.
func eventually(_ limit: Duration = .seconds(10), _ condition: () -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + limit
    while !condition() {
        guard ContinuousClock.now < deadline else { return false }
        try? await Task.sleep(for: .milliseconds(5))
    }
    return true
}

@Suite struct DescriptorsAndIdentityTests {
    @Test(arguments: simulatedPlatforms)
    func dfuModeDescriptors(platform: Platform) async throws {
        let device = try SimulatedDevice(platform: platform, mode: .dfu, timeScale: 0, seed: 11)
        let dfu = try await openDFU(device)
        #expect(dfu.device.vendorID == 0x2B04)
        #expect(dfu.device.productID == platform.dfuProductID)
        #expect(dfu.functional.bytes == [0x09, 0x21, 0x0B, 0xFF, 0x00, 0x00, 0x10, 0x1A, 0x01])
        #expect(dfu.serialNumber == device.deviceID)
        #expect(platform.isValidDeviceID(device.deviceID))
        #expect(dfu.productName == "\(platform.displayName) DFU Mode")
        #expect(dfu.alternateSettings[0].name.hasPrefix("@Internal Flash   /"))
        #expect(dfu.alternateSettings[1].name.hasPrefix("@DCT Flash   /0x00000000/"))
        let dct = try dfu.layout(alt: 1)
        #expect(dct.size == 16 * 1024)
        // Gen2's DCT is 'g' (erase is a no-op there); Gen3's is 'e' (never erased).
        #expect(dct.segments[0].attributes.contains(.erasable) == (platform.mcu == .stm32f2))
        #expect(try await dfu.supportedCommands() == (platform.mcu == .stm32f2 ? [0x00, 0x21, 0x41] : [0x00, 0x21, 0x41, 0xFA, 0xFB]))
    }

    @Test func deviceIDPatterns() throws {
        for seed in 0..<20 as Range<UInt64> {
            #expect(SimulatedDevice.makeDeviceID(platform: .boron, seed: seed).hasPrefix("e00fce68"))
            #expect(SimulatedDevice.makeDeviceID(platform: .p2, seed: seed).hasPrefix("0a10aced2021"))
            #expect(Platform.photon.isValidDeviceID(SimulatedDevice.makeDeviceID(platform: .photon, seed: seed)))
        }
        #expect(SimulatedDevice.makeDeviceID(platform: .argon, seed: 5) == SimulatedDevice.makeDeviceID(platform: .argon, seed: 5))
        #expect(throws: SimulatorError.self) { try SimulatedDevice(platform: .boron, deviceID: "0123456789abcdef01234567") }
        #expect(throws: SimulatorError.self) { try SimulatedDevice(platform: .core) }
    }

    @Test(arguments: [Platform.photon, .boron])
    func normalModeAnswersDeviceIDAndIsNotDFU(platform: Platform) async throws {
        let device = try SimulatedDevice(platform: platform, mode: .normal, timeScale: 0, seed: 3)
        let transport = try #require(device.transport)
        #expect(try await ParticleControlRequests(transport: transport).deviceID() == device.deviceID)
        let reader = USBDescriptorReader(transport: transport)
        #expect(try await reader.deviceDescriptor().productID == platform.normalProductID)
        await #expect(throws: DFUError.self) { _ = try await DfuSeDevice.open(transport) }
    }
}

@Suite struct ClientAgainstSimulatorTests {
    @Test(arguments: simulatedPlatforms)
    func writeReadVerifyEraseLeave(platform: Platform) async throws {
        let device = try SimulatedDevice(platform: platform, mode: .dfu, timeScale: 0, seed: 7)
        let dfu = try await openDFU(device)
        let segment = try firmwareSegment(dfu)
        let data = pattern(10_000)
        let progress = ProgressLog()
        try await dfu.write(alt: 0, address: segment.start, bytes: data, progress: progress.record)
        #expect(try await dfu.read(alt: 0, address: segment.start, length: data.count) == data)
        #expect(try device.readMemory(alt: 0, address: segment.start, length: data.count) == data)
        #expect(progress.last(.writing) == DFUProgress(phase: .writing, bytesDone: data.count, totalBytes: data.count))
        #expect(progress.last(.verifying)?.bytesDone == data.count)
        #expect(progress.isMonotonic)

        // Writing again over programmed flash works because the client erases what it covers.
        let second = pattern(5000, seed: 99)
        try await dfu.write(alt: 0, address: segment.start, bytes: second)
        #expect(try await dfu.read(alt: 0, address: segment.start, length: 5000) == second)

        try await dfu.erase(alt: 0, address: segment.start, length: 1)
        #expect(try await dfu.read(alt: 0, address: segment.start, length: 64) == [UInt8](repeating: 0xFF, count: 64))
        try await dfu.leave()
    }

    @Test(arguments: simulatedPlatforms)
    func writeErasesOnlyTheSectorsItCovers(platform: Platform) async throws {
        let device = try SimulatedDevice(platform: platform, mode: .dfu, timeScale: 0, seed: 8)
        let dfu = try await openDFU(device)
        let segment = try firmwareSegment(dfu)
        let sector = segment.sectorSize
        // Something already in the next sector must survive a write confined to the first one.
        let neighbour = pattern(256, seed: 42)
        try device.writeMemory(alt: 0, address: segment.start + sector, bytes: neighbour)
        let data = pattern(Int(sector) - 100)
        try await dfu.write(alt: 0, address: segment.start + 50, bytes: data)
        #expect(try device.readMemory(alt: 0, address: segment.start + sector, length: 256) == neighbour)
        #expect(device.statistics.sectorsErased == 1)
        // A write straddling the boundary erases both.
        try await dfu.write(alt: 0, address: segment.start + sector - 10, bytes: pattern(20))
        #expect(device.statistics.sectorsErased == 3)
        #expect(try device.readMemory(alt: 0, address: segment.start + sector + 10, length: 16) == [UInt8](repeating: 0xFF, count: 16))
    }

    @Test(arguments: simulatedPlatforms)
    func dctSlotWriteKeepsTheRestOfTheDCT(platform: Platform) async throws {
        let device = try SimulatedDevice(platform: platform, mode: .dfu, timeScale: 0, seed: 9)
        let dct = pattern(8391, seed: 5)
        try device.writeMemory(alt: 1, address: 0, bytes: dct)
        let dfu = try await openDFU(device)
        let slot = platform.serverKeySlot.slot
        let blob = pattern(slot.size, seed: 77)
        try await dfu.write(alt: 1, address: UInt32(slot.offset), bytes: blob)
        var expected = dct
        expected.replaceSubrange(slot.range, with: blob)
        #expect(try device.readMemory(alt: 1, address: 0, length: 8391) == expected)
        #expect(try await dfu.read(alt: 1, address: UInt32(slot.offset), length: slot.size) == blob)
    }

    @Test func refusesReadOnlyAndOutOfRangeBeforeTouchingTheDevice() async throws {
        let device = try SimulatedDevice(platform: .photon, mode: .dfu, timeScale: 0, seed: 1)
        let dfu = try await openDFU(device)
        let before = device.statistics.controlTransfers
        await #expect(throws: DFUError(operation: .download, alt: 0, address: 0x0800_0000, reason: .notWritable)) {
            try await dfu.write(alt: 0, address: 0x0800_0000, bytes: [1, 2, 3])
        }
        await #expect(throws: DFUError(operation: .download, alt: 0, address: 0x080F_FFFF, reason: .outsideMemoryLayout(length: 2))) {
            try await dfu.write(alt: 0, address: 0x080F_FFFF, bytes: [1, 2])
        }
        await #expect(throws: DFUError(operation: .upload, alt: 1, address: 0x4000, reason: .outsideMemoryLayout(length: 1))) {
            _ = try await dfu.read(alt: 1, address: 0x4000, length: 1)
        }
        await #expect(throws: DFUError.self) { _ = try await dfu.read(alt: 5, address: 0, length: 1) }
        #expect(device.statistics.controlTransfers == before)
        // The bootloader (read-only 'a') is still readable.
        #expect(try await dfu.read(alt: 0, address: 0x0800_0000, length: 16).count == 16)
    }

    @Test(arguments: gen3Platforms)
    func protectedDeviceGivesAClearError(platform: Platform) async throws {
        let device = try SimulatedDevice(platform: platform, mode: .dfu, protected: true, timeScale: 0, seed: 2)
        let dfu = try await openDFU(device)
        #expect(dfu.isProtected(alt: 1))
        await #expect(throws: DFUError(operation: .upload, alt: 1, address: 3106, reason: .deviceProtected)) {
            _ = try await dfu.read(alt: 1, address: 3106, length: 192)
        }
        let error = await #expect(throws: DFUError.self) { try await dfu.write(alt: 1, address: 3106, bytes: [1]) }
        #expect(error?.reason == .deviceProtected)
        #expect(error?.description.contains("protected") == true)
    }

    @Test(arguments: gen3Platforms)
    func protectedBootloaderRefusesRawUploadWithErrVendor(platform: Platform) async throws {
        let device = try SimulatedDevice(platform: platform, mode: .dfu, protected: true, timeScale: 0, seed: 2)
        let dfu = try await openDFU(device)
        try await dfu.transport.selectAlternateSetting(interface: 0, alternateSetting: 1)
        let reply = try await dfu.interface.upload(block: 2, length: 192)
        #expect(reply.isEmpty)
        let status = try await dfu.interface.getStatus()
        #expect(status.state == .dfuError && status.status == .errVendor)
        let reader = USBDescriptorReader(transport: dfu.transport)
        #expect(try await reader.string(index: status.stringIndex) == "Device is in protected mode")
        #expect(try await reader.string(index: 0xFA) == "sm=p")
    }
}

/// Collects progress reports (thread-safe) for checking.
final class ProgressLog: @unchecked Sendable {
    private let lock = NSLock()
    private var entries: [DFUProgress] = []
    var record: DFUProgressHandler { { [self] p in lock.withLock { entries.append(p) } } }
    func last(_ phase: DFUProgress.Phase) -> DFUProgress? { lock.withLock { entries.last { $0.phase == phase } } }
    var isMonotonic: Bool {
        lock.withLock {
            Dictionary(grouping: entries, by: \.phase).values.allSatisfy { list in zip(list, list.dropFirst()).allSatisfy { $0.bytesDone <= $1.bytesDone } }
        }
    }
}

@Suite struct DfuSeFileDownloadTests {
    @Test(arguments: [Platform.photon, .boron])
    func everyTargetGoesToItsAlt(platform: Platform) async throws {
        let device = try SimulatedDevice(platform: platform, mode: .dfu, timeScale: 0, seed: 12)
        let dfu = try await openDFU(device)
        let firmware = try firmwareSegment(dfu)
        let server = platform.serverKeySlot.slot
        let file = DfuSeFile(targets: [
            .init(alt: 0, elements: [.init(address: firmware.start, data: pattern(9000))]),
            .init(alt: 1, elements: [.init(address: UInt32(server.offset), data: pattern(server.size, seed: 9))]),
        ])
        try await dfu.download(try DfuSeFile(bytes: file.bytes))
        #expect(try device.readMemory(alt: 0, address: firmware.start, length: 9000) == pattern(9000))
        #expect(try device.readMemory(alt: 1, address: UInt32(server.offset), length: server.size) == pattern(server.size, seed: 9))
    }
}
