import DeviceKeys
import ParticlePlatform

/// Firmware images for the demo and the tests: real Particle binaries cannot ship with keyline,
/// so these carry a valid module prefix, suffix, SHA-256 and CRC-32 at the real addresses and
/// sizes of particle-firmware-format.md §1–5, around deterministic filler bytes.
public enum SyntheticFirmware {
    /// An image for `platform`'s (function, index) slot, `size` bytes (nil: a real module's size,
    /// §5). Traps if the platform has no such slot or the size cannot fit; callers with untrusted
    /// arguments use `build`.
    public static func make(platform: Platform, function: ModuleFunction, index: UInt8, size: Int?) -> [UInt8] {
        do {
            return try build(platform: platform, function: function, index: index, size: size)
        } catch {
            preconditionFailure("SyntheticFirmware.make: \(error)")
        }
    }

    /// `make`, with impossible requests reported instead of trapping.
    public static func build(platform: Platform, function: ModuleFunction, index: UInt8, size: Int?) throws(SyntheticFirmwareError) -> [UInt8] {
        guard let region = platform.moduleRegion(function: function, index: index) else {
            throw .noSlot(platform: platform.name, function: function, index: index,
                          known: platform.moduleRegions.map { "\($0.function) \($0.index)" })
        }
        let layout = Layout(platform: platform, region: region)
        var length = size ?? defaultSize(platform: platform, function: function, index: index)
        if layout.endsAtRegionEnd {
            // P2 user parts are whole 4 KB pages ending at 0x08600000 (§3.4).
            length = (length + 4095) / 4096 * 4096
        }
        let minimum = layout.prefixOffset + FirmwareModule.prefixSize + layout.suffixSize + 4
        guard length >= minimum, length <= Int(region.size) else {
            throw .badSize(requested: length, minimum: minimum, maximum: Int(region.size), region: region.description)
        }
        let start = layout.endsAtRegionEnd ? UInt32(region.end - UInt64(length)) : region.start

        var bytes = filler(count: length, seed: UInt32(platform.id) << 16 | UInt32(function.rawValue) << 8 | UInt32(index))
        if let stackPointer = layout.vectorTableStackPointer {
            put32(&bytes, 0, stackPointer)
            put32(&bytes, 4, start + 0x201)   // a reset handler inside the module (Thumb bit set)
        }
        if layout.realtekHeader {
            // Realtek image header signature words (§1.4).
            put32(&bytes, 0, 0x9696_9999)
            put32(&bytes, 4, 0xFC66_CC3F)
        }

        // Prefix (§1.2).
        let p = layout.prefixOffset
        put32(&bytes, p, start)
        put32(&bytes, p + 4, start + UInt32(length - 4))
        bytes[p + 8] = 0
        bytes[p + 9] = function == .radioStack ? ModuleFlags.dropModuleInfo.rawValue : 0
        put16(&bytes, p + 10, moduleVersion(platform: platform, function: function))
        put16(&bytes, p + 12, platform.id)
        bytes[p + 14] = function.rawValue
        bytes[p + 15] = index
        for i in 16..<24 { bytes[p + i] = 0 }
        if function == .userPart {
            // A user part depends on system part 1 (§1.9 dependency chains).
            bytes[p + 16] = ModuleFunction.systemPart.rawValue
            bytes[p + 17] = 1
            put16(&bytes, p + 18, moduleVersion(platform: platform, function: .systemPart))
        }

        // Suffix (§1.6), written backwards from the CRC.
        let crcAt = length - 4
        let suffixStart = crcAt - layout.suffixSize
        for i in suffixStart..<crcAt { bytes[i] = 0xFF }
        put16(&bytes, crcAt - 2, UInt16(layout.suffixSize))
        put16(&bytes, crcAt - 36, 0)   // reserved
        let productID: UInt16 = function == .userPart ? platform.id : 0xFFFF   // PRODUCT_VERSION() writes the platform ID (§1.6)
        let productVersion: UInt16 = function == .userPart ? 1 : 0xFFFF
        switch layout.suffixSize {
        case 40:
            put16(&bytes, crcAt - 40, productID)
            put16(&bytes, crcAt - 38, productVersion)
        case 62:
            // DYNAMIC_LOCATION (type 2, 16 bytes) then PRODUCT_DATA (type 1, 10 bytes).
            put16(&bytes, suffixStart, 2); put16(&bytes, suffixStart + 2, 16)
            put32(&bytes, suffixStart + 4, start)
            put32(&bytes, suffixStart + 8, start)
            put32(&bytes, suffixStart + 12, start + 0x400)
            put16(&bytes, suffixStart + 16, 1); put16(&bytes, suffixStart + 18, 10)
            put16(&bytes, suffixStart + 20, 0xFFFF); put16(&bytes, suffixStart + 22, productID)
            put16(&bytes, suffixStart + 24, productVersion)
        default:
            break
        }
        // SHA-256 of [0, len − 38), then the CRC-32 of [0, len − 4), big-endian (§1.6).
        let sha = SHA256Digest.hash(Array(bytes[0..<(length - 38)]))
        bytes.replaceSubrange((crcAt - 34)..<(crcAt - 2), with: sha)
        let crc = bytes.withUnsafeBufferPointer { CRC32.zlib(UnsafeBufferPointer(rebasing: $0[0..<crcAt])) }
        bytes[crcAt] = UInt8(crc >> 24)
        bytes[crcAt + 1] = UInt8((crc >> 16) & 0xFF)
        bytes[crcAt + 2] = UInt8((crc >> 8) & 0xFF)
        bytes[crcAt + 3] = UInt8(crc & 0xFF)
        return bytes
    }

    /// Where the prefix sits and which suffix a real module of this kind has (§1.4, §1.6).
    struct Layout {
        var prefixOffset = 0
        var vectorTableStackPointer: UInt32?
        var realtekHeader = false
        var suffixSize = 40
        var endsAtRegionEnd = false

        init(platform: Platform, region: FlashRegion) {
            let function = region.function
            switch platform.mcu {
            case .stm32f1, .stm32f2:
                // Bootloader and system parts after a 0x184-byte vector table, except the Electron's
                // module 3 and user parts (+0).
                if function == .bootloader || (function == .systemPart && !(platform.id == Platform.electron.id && region.index == 3)) {
                    prefixOffset = 0x184
                    vectorTableStackPointer = 0x2002_0000   // & 0x2FF10000 == 0x20000000
                }
            case .nrf52840:
                if function == .bootloader || function == .systemPart || function == .monoFirmware {
                    prefixOffset = 0x200
                    vectorTableStackPointer = 0x2001_0000   // & 0x2FFC0000 == 0x20000000
                }
                if function == .radioStack { suffixSize = 36 }
            case .rtl872x:
                suffixSize = 62
                if function == .bootloader && region.index != 2 {
                    prefixOffset = 0x20
                    realtekHeader = true
                }
                endsAtRegionEnd = function == .userPart
            }
        }
    }

    /// Real module sizes, §5 (Device OS 2.3.1 for Gen2, 4.1.0 for Gen3; P2 system part and
    /// prebootloaders are estimates: no binary was found).
    public static func defaultSize(platform: Platform, function: ModuleFunction, index: UInt8) -> Int {
        switch (platform.mcu, function) {
        case (.stm32f2, .bootloader): return platform.id == Platform.p1.id ? 15_784 : platform.id == Platform.electron.id ? 15_672 : 15_124
        case (.stm32f2, .systemPart):
            if platform.id == Platform.electron.id { return [1: 114_012, 2: 123_052, 3: 87_468][index] ?? 114_012 }
            return index == 1 ? 241_496 : platform.id == Platform.p1.id ? 261_112 : 260_984
        case (.stm32f2, .userPart): return platform.id == Platform.electron.id ? 5_404 : 5_324
        case (.nrf52840, .bootloader): return 45_844
        case (.nrf52840, .radioStack): return 153_048
        case (.nrf52840, .systemPart):
            let sizes: [String: Int] = ["argon": 469_386, "bsom": 507_626, "b5som": 500_570, "esomx": 507_346, "tracker": 528_954]
            return sizes[platform.name] ?? 507_426
        case (.nrf52840, .userPart): return index == 1 ? 11_012 : 11_214
        case (.rtl872x, .bootloader): return index == 0 ? 53_524 : index == 1 ? 8_192 : 65_536
        case (.rtl872x, .systemPart): return 1_048_576
        case (.rtl872x, .userPart): return 49_152
        default: return 16_384
        }
    }

    /// Module versions of the same releases (§1.9).
    static func moduleVersion(platform: Platform, function: ModuleFunction) -> UInt16 {
        switch (platform.mcu, function) {
        case (_, .userPart): 6
        case (_, .radioStack): 202
        case (.stm32f2, .bootloader): 1006
        case (.nrf52840, .bootloader): 1200
        case (.rtl872x, .bootloader): 2000
        case (.stm32f1, _), (.stm32f2, _): 2302
        case (.nrf52840, _): 4100
        case (.rtl872x, _): 5002
        }
    }

    /// Deterministic bytes (xorshift32), so the same request always gives the same image.
    static func filler(count: Int, seed: UInt32) -> [UInt8] {
        var state = seed &* 2_654_435_761 | 1
        var out = [UInt8](repeating: 0, count: count)
        out.withUnsafeMutableBufferPointer { buffer in
            var i = 0
            while i < buffer.count {
                state ^= state << 13; state ^= state >> 17; state ^= state << 5
                var word = state
                for _ in 0..<4 where i < buffer.count {
                    buffer[i] = UInt8(truncatingIfNeeded: word)
                    word >>= 8
                    i += 1
                }
            }
        }
        return out
    }

    static func put16(_ b: inout [UInt8], _ at: Int, _ v: UInt16) {
        b[at] = UInt8(v & 0xFF); b[at + 1] = UInt8(v >> 8)
    }

    static func put32(_ b: inout [UInt8], _ at: Int, _ v: UInt32) {
        for i in 0..<4 { b[at + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(i))) }
    }
}

public enum SyntheticFirmwareError: Error, Sendable, Equatable, CustomStringConvertible {
    case noSlot(platform: String, function: ModuleFunction, index: UInt8, known: [String])
    case badSize(requested: Int, minimum: Int, maximum: Int, region: String)

    public var description: String {
        switch self {
        case let .noSlot(platform, function, index, known):
            "\(platform) has no \(function) module with index \(index); it has: \(known.joined(separator: ", "))"
        case let .badSize(requested, minimum, maximum, region):
            "a size of \(requested) bytes does not fit: at least \(minimum), at most \(maximum) (\(region))"
        }
    }
}
