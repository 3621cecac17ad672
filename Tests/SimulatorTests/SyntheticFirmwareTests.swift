import DFU
import ParticlePlatform
import Simulator
import Testing

/// Synthetic images are real modules to the parser, at the reference's addresses and sizes.
@Suite struct SyntheticFirmwareModules {
    static let simulated = Platform.all.filter { SimulatedHardware.forPlatform($0) != nil }

    @Test(arguments: simulated)
    func everySlotParsesAndChecks(platform: Platform) throws {
        for region in platform.moduleRegions {
            let bytes = SyntheticFirmware.make(platform: platform, function: region.function, index: region.index, size: nil)
            let module = try FirmwareModule.parse(bytes)
            #expect(module.platformID == platform.id)
            #expect(module.function == region.function)
            #expect(module.index == region.index)
            #expect(module.length == bytes.count)
            #expect(region.contains(address: module.startAddress, length: bytes.count), "\(platform) \(region)")
            try module.check(platform: platform)
            // The simulator's alt 0 accepts every DFU region.
            if region.viaDFU {
                let layout = try DfuSeMemoryLayout(parsing: SimulatedHardware.forPlatform(platform)!.alts[0].layoutString)
                let segments = layout.segments(covering: region.start, length: Int(region.size))
                #expect(segments?.allSatisfy { $0.attributes.contains([.erasable, .writable]) } == true, "\(platform) \(region)")
                #expect(platform.flashRegion(containing: module.startAddress, length: Array(module.dfuPayload(of: bytes)).count) != nil)
            }

            var flipped = bytes
            flipped[bytes.count / 2] ^= 0x40
            #expect(throws: FirmwareModuleError.self) { try FirmwareModule.parse(flipped) }
            #expect(throws: FirmwareModuleError.truncated(expected: bytes.count, actual: bytes.count - 512)) {
                try FirmwareModule.parse(Array(bytes.dropLast(512)))
            }
            let other = platform.id == Platform.photon.id ? Platform.boron : Platform.photon
            #expect(throws: FirmwareModuleError.wrongPlatform(found: platform.id, expected: other)) { try module.check(platform: other) }
        }
    }

    @Test func realSizesAndOffsets() throws {
        let photonSystem = try FirmwareModule.parse(SyntheticFirmware.make(platform: .photon, function: .systemPart, index: 1, size: nil))
        #expect(photonSystem.length == 241_496 && photonSystem.prefixOffset == 0x184 && photonSystem.startAddress == 0x0802_0000)
        let electron3 = try FirmwareModule.parse(SyntheticFirmware.make(platform: .electron, function: .systemPart, index: 3, size: nil))
        #expect(electron3.prefixOffset == 0 && electron3.startAddress == 0x0806_0000)
        let boronSystem = try FirmwareModule.parse(SyntheticFirmware.make(platform: .boron, function: .systemPart, index: 1, size: nil))
        #expect(boronSystem.length == 507_426 && boronSystem.prefixOffset == 0x200)
        let softDevice = SyntheticFirmware.make(platform: .boron, function: .radioStack, index: 0, size: nil)
        let radio = try FirmwareModule.parse(softDevice)
        #expect(radio.flags.contains(.dropModuleInfo) && radio.dfuPayload(of: softDevice).count == 153_024)
        let p2User = try FirmwareModule.parse(SyntheticFirmware.make(platform: .p2, function: .userPart, index: 1, size: 50_000))
        #expect(p2User.length == 53_248 && p2User.startAddress == 0x0860_0000 - 53_248 && p2User.suffixSize == 62)
        let p2Boot = try FirmwareModule.parse(SyntheticFirmware.make(platform: .p2, function: .bootloader, index: 0, size: nil))
        #expect(p2Boot.prefixOffset == 0x20 && p2Boot.dfuRefusal != nil)
        let photonUser = try FirmwareModule.parse(SyntheticFirmware.make(platform: .photon, function: .userPart, index: 1, size: 6000))
        #expect(photonUser.length == 6000 && photonUser.productID == 6)
    }

    @Test func impossibleRequestsAreReported() {
        #expect(throws: SyntheticFirmwareError.self) { try SyntheticFirmware.build(platform: .photon, function: .radioStack, index: 0, size: nil) }
        #expect(throws: SyntheticFirmwareError.self) { try SyntheticFirmware.build(platform: .photon, function: .userPart, index: 1, size: 200_000) }
        #expect(throws: SyntheticFirmwareError.self) { try SyntheticFirmware.build(platform: .photon, function: .userPart, index: 1, size: 10) }
    }

    @Test func deterministic() {
        #expect(SyntheticFirmware.make(platform: .boron, function: .userPart, index: 2, size: nil)
                == SyntheticFirmware.make(platform: .boron, function: .userPart, index: 2, size: nil))
    }
}
