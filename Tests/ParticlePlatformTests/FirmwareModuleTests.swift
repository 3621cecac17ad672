import FailurePolicy
import ParticlePlatform
import Testing

/// The parser on hand-made bytes (synthetic images of every platform: SimulatorTests).
@Suite struct FirmwareModuleParsing {
    /// A minimal valid module: prefix at 0, 40-byte suffix, zlib CRC big-endian.
    static func module(platform: UInt16 = 6, function: UInt8 = 5, start: UInt32 = 0x080A_0000, length: Int = 256) -> [UInt8] {
        var b = [UInt8](repeating: 0xAB, count: length)
        func put32(_ at: Int, _ v: UInt32) { for i in 0..<4 { b[at + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(i))) } }
        put32(0, start)
        put32(4, start + UInt32(length - 4))
        b[8] = 0; b[9] = 0; b[10] = 6; b[11] = 0
        b[12] = UInt8(platform & 0xFF); b[13] = UInt8(platform >> 8)
        b[14] = function; b[15] = 1
        for i in 16..<24 { b[i] = 0 }
        b[length - 6] = 40; b[length - 5] = 0
        let crc = CRC32.zlib(Array(b[0..<(length - 4)]))
        b[length - 4] = UInt8(crc >> 24); b[length - 3] = UInt8((crc >> 16) & 0xFF)
        b[length - 2] = UInt8((crc >> 8) & 0xFF); b[length - 1] = UInt8(crc & 0xFF)
        return b
    }

    @Test func crc32IsZlibs() {
        // The standard check value of CRC-32/ISO-HDLC (zlib).
        #expect(CRC32.zlib(Array("123456789".utf8)) == 0xCBF4_3926)
    }

    @Test func parsesAValidModule() throws {
        let m = try FirmwareModule.parse(Self.module())
        #expect(m.platformID == 6)
        #expect(m.function == .userPart)
        #expect(m.index == 1)
        #expect(m.startAddress == 0x080A_0000)
        #expect(m.length == 256)
        #expect(m.prefixOffset == 0)
        #expect(m.suffixSize == 40)
        #expect(m.dfuRefusal == nil)
        try m.check(platform: .photon)
    }

    @Test func refusesDamage() {
        var flipped = Self.module()
        flipped[100] ^= 0x01
        #expect(throws: FirmwareModuleError.self) { try FirmwareModule.parse(flipped) }
        do { _ = try FirmwareModule.parse(flipped) } catch {
            guard case .crcMismatch = error else { Issue.record("expected crcMismatch, got \(error)"); return }
        }
        #expect(throws: FirmwareModuleError.truncated(expected: 256, actual: 200)) { try FirmwareModule.parse(Array(Self.module().prefix(200))) }
        #expect(throws: FirmwareModuleError.lengthMismatch(expected: 256, actual: 260)) { try FirmwareModule.parse(Self.module() + [0, 0, 0, 0]) }
        #expect(throws: FirmwareModuleError.tooShort(length: 10, minimum: 64)) { try FirmwareModule.parse([UInt8](repeating: 0, count: 10)) }
        #expect(throws: FirmwareModuleError.self) { try FirmwareModule.parse([UInt8](repeating: 0xFF, count: 4096)) }
        var badSuffix = Self.module()
        badSuffix[250] = 0xFF; badSuffix[251] = 0xFF
        #expect(throws: FirmwareModuleError.self) { try FirmwareModule.parse(badSuffix) }
    }

    @Test func hostileHeadersNeverTrap() {
        // end before start, absurd lengths, every function byte: parse reports, never traps.
        var state: UInt32 = 0x1234_5678
        for _ in 0..<2000 {
            var bytes = Self.module()
            for _ in 0..<4 {
                state ^= state << 13; state ^= state >> 17; state ^= state << 5
                bytes[Int(state % 24)] = UInt8(truncatingIfNeeded: state >> 8)
            }
            _ = try? FirmwareModule.parse(bytes)
            _ = try? FirmwareModule.parse(Array(bytes.prefix(Int(state % 256))))
        }
    }

    @Test func refusesAnotherPlatformsModule() throws {
        let boron = try FirmwareModule.parse(Self.module(platform: 13))
        #expect(throws: FirmwareModuleError.wrongPlatform(found: 13, expected: .photon)) { try boron.check(platform: .photon) }
        #expect(FirmwareModuleError.wrongPlatform(found: 13, expected: .photon).description.contains("Boron"))
        #expect(FirmwareModuleError.crcMismatch(stored: 1, computed: 2).failureClass == .badInput)
    }

    @Test func bootloadersAreNotDFUImages() throws {
        #expect(try FirmwareModule.parse(Self.module(function: 2)).dfuRefusal != nil)
    }

    @Test func functionNames() {
        for function in ModuleFunction.allCases { #expect(ModuleFunction(name: function.name) == function) }
        #expect(ModuleFunction(name: "systemPart") == .systemPart)
        #expect(ModuleFunction(name: "toaster") == nil)
    }
}

/// Flash maps (particle-firmware-format.md §3).
@Suite struct PlatformFlashMaps {
    @Test func realAddresses() {
        #expect(Platform.photon.moduleRegion(function: .userPart, index: 1)?.start == 0x080A_0000)
        #expect(Platform.electron.moduleRegion(function: .systemPart, index: 3)?.start == 0x0806_0000)
        #expect(Platform.boron.moduleRegion(function: .userPart, index: 2)?.start == 0x000B_4000)
        #expect(Platform.boron.moduleRegion(function: .radioStack, index: 0)?.start == 0x1000)
        #expect(Platform.p2.moduleRegion(function: .systemPart, index: 1)?.start == 0x0806_0000)
        #expect(Platform.p2.moduleRegion(function: .userPart, index: 1)?.end == 0x0860_0000)
    }

    @Test func bootloadersAreOutsideTheDFUMap() {
        for platform in Platform.all {
            #expect(!platform.flashMap.contains { $0.function == .bootloader })
            #expect(platform.flashRegion(containing: 0, length: 4096) == nil)
        }
    }

    @Test func regionsBound() {
        let user = Platform.photon.moduleRegion(function: .userPart, index: 1)!
        #expect(user.contains(address: 0x080A_0000, length: 128 * 1024))
        #expect(!user.contains(address: 0x080A_0000, length: 128 * 1024 + 1))
        #expect(!user.contains(address: 0x0809_FFFF, length: 2))
        #expect(Platform.photon.flashRegion(containing: 0x0800_0000, length: 16) == nil)
    }
}
