import FailurePolicy

/// `module_function` of a module prefix (particle-firmware-format.md §1.3).
public enum ModuleFunction: UInt8, Sendable, Hashable, Codable, CaseIterable, CustomStringConvertible {
    case none = 0, resource = 1, bootloader = 2, monoFirmware = 3, systemPart = 4, userPart = 5
    case settings = 6, ncpFirmware = 7, radioStack = 8, asset = 9

    /// The name pipelines and `keyline-sim make-firmware --function` use.
    public var name: String {
        switch self {
        case .none: "none"
        case .resource: "resource"
        case .bootloader: "bootloader"
        case .monoFirmware: "mono"
        case .systemPart: "system"
        case .userPart: "user"
        case .settings: "settings"
        case .ncpFirmware: "ncp"
        case .radioStack: "radio-stack"
        case .asset: "asset"
        }
    }

    public var description: String { name }

    /// By name ("system", "user", "radio-stack"; binary-version-reader's "systemPart" etc. too) or number.
    public init?(name: String) {
        let key = name.lowercased()
        if let value = UInt8(key), let function = ModuleFunction(rawValue: value) { self = function; return }
        let aliases: [String: ModuleFunction] = [
            "systempart": .systemPart, "system-part": .systemPart, "userpart": .userPart, "user-part": .userPart,
            "monofirmware": .monoFirmware, "radiostack": .radioStack, "softdevice": .radioStack,
            "ncpfirmware": .ncpFirmware,
        ]
        if let function = ModuleFunction.allCases.first(where: { $0.name == key }) ?? aliases[key] {
            self = function
        } else {
            return nil
        }
    }
}

/// `module_info_flags_t` (particle-firmware-format.md §1.5).
public struct ModuleFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    /// Skip the 24-byte prefix when writing (the SoftDevice must start exactly at 0x1000).
    public static let dropModuleInfo = ModuleFlags(rawValue: 0x01)
    public static let compressed = ModuleFlags(rawValue: 0x02)
    public static let combined = ModuleFlags(rawValue: 0x04)
    public static let encrypted = ModuleFlags(rawValue: 0x08)
    public static let prefixExtensions = ModuleFlags(rawValue: 0x10)
}

/// `module_dependency_t`: the module (function, index) on the device must have version ≥ `version`.
public struct ModuleDependency: Sendable, Hashable {
    public let function: ModuleFunction
    public let index: UInt8
    public let version: UInt16
    public init(function: ModuleFunction, index: UInt8, version: UInt16) {
        self.function = function
        self.index = index
        self.version = version
    }
}

/// A Particle firmware module's header facts: the 24-byte prefix (`module_info_t`), the suffix
/// and the trailing CRC-32 (particle-firmware-format.md §1). Files are hostile input: `parse`
/// checks every offset and length before reading and never traps.
public struct FirmwareModule: Sendable, Hashable {
    public static let prefixSize = 24
    /// The shortest suffix (`module_info_suffix_t` without product data, §1.6).
    public static let minimumSuffixSize = 36
    /// Where the prefix may sit (§1.4): 0; +0x20 after the Realtek header; +0x184 after an STM32F2
    /// vector table; +0x200 after an nRF52840 vector table.
    public static let prefixOffsets = [0, 0x20, 0x184, 0x200]

    public let platformID: UInt16
    public let function: ModuleFunction
    public let index: UInt8
    public let version: UInt16
    public let flags: ModuleFlags
    /// The prefix's `reserved` byte: MCU target on Gen3 (0 main MCU, 33 ESP32 NCP).
    public let mcuTarget: UInt8
    /// Flash address of the file's first byte (the DFU write address).
    public let startAddress: UInt32
    /// One past the last byte before the CRC: the file is `endAddress − startAddress + 4` bytes.
    public let endAddress: UInt32
    /// File offset of the prefix.
    public let prefixOffset: Int
    /// Non-empty dependencies only.
    public let dependencies: [ModuleDependency]
    public let suffixSize: Int
    /// Product data of a 40-byte suffix (Gen2/Gen3); nil for other suffix layouts or 0xFFFF.
    public let productID: UInt16?
    public let productVersion: UInt16?
    /// The SHA-256 field of the suffix; informative only (§1.6: not every module hashes the same bytes).
    public let sha256: [UInt8]
    /// The stored CRC-32 (already checked against the file).
    public let crc32: UInt32

    /// File length (= end − start + 4, checked by `parse`).
    public var length: Int { Int(endAddress - startAddress) + 4 }

    /// The platform the module was built for, if keyline knows it.
    public var platform: Platform? { Platform.all.first { $0.id == platformID } }

    /// What a DFU download writes at `startAddress`: the whole file, or without the prefix when
    /// DROP_MODULE_INFO is set (§1.5; particle-cli writes `file[24:]`, suffix and CRC included).
    public func dfuPayload(of bytes: [UInt8]) -> ArraySlice<UInt8> {
        flags.contains(.dropModuleInfo) ? bytes.dropFirst(Self.prefixSize) : bytes[...]
    }

    /// Refuses a module built for another platform (particle-cli `_validateModulesForPlatform`, §2.2).
    public func check(platform: Platform) throws(FirmwareModuleError) {
        guard platformID == platform.id else { throw .wrongPlatform(found: platformID, expected: platform) }
    }

    /// Why a DFU download of this module is refused, or nil: bootloaders, NCP firmware and assets
    /// go through control requests, compressed/combined/encrypted modules through OTA (§6 item 3, §3.5).
    public var dfuRefusal: String? {
        switch function {
        case .bootloader: return "a bootloader is updated through control requests in normal mode, not over DFU (§3.5)"
        case .ncpFirmware: return "NCP firmware is flashed to the radio module in normal mode, not over DFU"
        case .asset, .resource, .settings, .none: return "a module of function \(function) is not flashed over DFU"
        case .systemPart, .userPart, .radioStack, .monoFirmware: break
        }
        if flags.contains(.compressed) { return "the module is compressed; DFU writes bytes verbatim, only OTA decompresses" }
        if flags.contains(.combined) { return "the module is a combined OTA bundle, not a DFU image" }
        if flags.contains(.encrypted) { return "the module is encrypted" }
        return nil
    }
}

extension FirmwareModule {
    /// Parses and checks a module file: prefix found at a known offset, length equal to
    /// `end − start + 4`, a sane suffix, and the CRC-32 (zlib, big-endian) over all but the last 4 bytes.
    public static func parse(_ bytes: [UInt8]) throws(FirmwareModuleError) -> FirmwareModule {
        let minimum = prefixSize + minimumSuffixSize + 4
        guard bytes.count >= minimum else { throw .tooShort(length: bytes.count, minimum: minimum) }

        // Pick the prefix: the candidate whose declared length matches the file; else report the
        // best explanation (a truncated or padded file, or no prefix at all).
        var rejections: [String] = []
        var lengthMismatch: (declared: Int, offset: Int)?
        var chosen: (prefix: Prefix, offset: Int)?
        for offset in prefixOffsets where offset + prefixSize <= bytes.count {
            switch Prefix.read(bytes, at: offset) {
            case .failure(let reason):
                rejections.append("+0x\(String(offset, radix: 16)): \(reason)")
            case .success(let prefix):
                let declared = Int(prefix.end - prefix.start) + 4
                // The prefix must lie inside the module it describes.
                if declared == bytes.count, offset + prefixSize <= declared - minimumSuffixSize - 4 {
                    chosen = (prefix, offset)
                } else if lengthMismatch == nil {
                    lengthMismatch = (declared, offset)
                }
            }
            if chosen != nil { break }
        }
        guard let (prefix, offset) = chosen else {
            if let lengthMismatch {
                if lengthMismatch.declared > bytes.count { throw .truncated(expected: lengthMismatch.declared, actual: bytes.count) }
                throw .lengthMismatch(expected: lengthMismatch.declared, actual: bytes.count)
            }
            throw .noModuleInfo(rejections.joined(separator: "; "))
        }

        // Suffix, read backwards from the CRC (§1.6).
        let crcAt = bytes.count - 4
        let suffixSize = Int(ModuleBytes.le16(bytes, crcAt - 2))
        let room = crcAt - (offset + prefixSize)
        guard suffixSize >= minimumSuffixSize, suffixSize <= room else {
            throw .badSuffix(size: suffixSize, room: room)
        }
        let sha = Array(bytes[(crcAt - 34)..<(crcAt - 2)])
        var productID: UInt16?
        var productVersion: UInt16?
        if suffixSize == 40 {
            let id = ModuleBytes.le16(bytes, crcAt - 40), version = ModuleBytes.le16(bytes, crcAt - 38)
            productID = id == 0xFFFF ? nil : id
            productVersion = version == 0xFFFF ? nil : version
        }

        let stored = ModuleBytes.be32(bytes, crcAt)
        let computed = bytes.withUnsafeBufferPointer { CRC32.zlib(UnsafeBufferPointer(rebasing: $0[0..<crcAt])) }
        guard stored == computed else { throw .crcMismatch(stored: stored, computed: computed) }

        return FirmwareModule(
            platformID: prefix.platformID, function: prefix.function, index: prefix.index, version: prefix.version,
            flags: prefix.flags, mcuTarget: prefix.reserved, startAddress: prefix.start, endAddress: prefix.end,
            prefixOffset: offset, dependencies: prefix.dependencies, suffixSize: suffixSize,
            productID: productID, productVersion: productVersion, sha256: sha, crc32: stored)
    }

    /// The raw prefix fields (§1.2).
    struct Prefix {
        var start: UInt32, end: UInt32, reserved: UInt8, flags: ModuleFlags, version: UInt16
        var platformID: UInt16, function: ModuleFunction, index: UInt8, dependencies: [ModuleDependency]

        enum Result { case success(Prefix), failure(String) }

        /// Base checks as binary-version-reader scores candidates (§2.1): end > start, a known
        /// function other than NONE, empty dependencies all zero.
        static func read(_ bytes: [UInt8], at offset: Int) -> Result {
            let start = ModuleBytes.le32(bytes, offset), end = ModuleBytes.le32(bytes, offset + 4)
            guard end > start else { return .failure("end address 0x\(ModuleBytes.hex(end)) is not after start 0x\(ModuleBytes.hex(start))") }
            let rawFunction = bytes[offset + 14]
            guard let function = ModuleFunction(rawValue: rawFunction), function != .none else {
                return .failure("module function \(rawFunction) is not one of 1…9")
            }
            var dependencies: [ModuleDependency] = []
            for at in [offset + 16, offset + 20] {
                let depFunction = bytes[at], depIndex = bytes[at + 1], depVersion = ModuleBytes.le16(bytes, at + 2)
                if depFunction == 0 {
                    guard depIndex == 0, depVersion == 0 else { return .failure("an empty dependency is not all zeros") }
                    continue
                }
                guard let f = ModuleFunction(rawValue: depFunction) else {
                    return .failure("dependency function \(depFunction) is not one of 1…9")
                }
                dependencies.append(ModuleDependency(function: f, index: depIndex, version: depVersion))
            }
            return .success(Prefix(
                start: start, end: end, reserved: bytes[offset + 8], flags: ModuleFlags(rawValue: bytes[offset + 9]),
                version: ModuleBytes.le16(bytes, offset + 10), platformID: ModuleBytes.le16(bytes, offset + 12), function: function,
                index: bytes[offset + 15], dependencies: dependencies))
        }
    }
}

/// Byte assembly for the module parser. Callers check bounds first; prefix and suffix are
/// little-endian, the trailing CRC big-endian (§1.1, §1.6).
enum ModuleBytes {
    static func le16(_ b: [UInt8], _ at: Int) -> UInt16 { UInt16(b[at]) | UInt16(b[at + 1]) << 8 }
    static func le32(_ b: [UInt8], _ at: Int) -> UInt32 {
        UInt32(b[at]) | UInt32(b[at + 1]) << 8 | UInt32(b[at + 2]) << 16 | UInt32(b[at + 3]) << 24
    }
    static func be32(_ b: [UInt8], _ at: Int) -> UInt32 {
        UInt32(b[at]) << 24 | UInt32(b[at + 1]) << 16 | UInt32(b[at + 2]) << 8 | UInt32(b[at + 3])
    }
    static func hex(_ value: UInt32) -> String { String(value, radix: 16) }
}

/// CRC-32 as zlib computes it (reflected 0xEDB88320, init and xorout 0xFFFFFFFF; §1.6).
public enum CRC32 {
    public static func zlib(_ bytes: UnsafeBufferPointer<UInt8>) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        table.withUnsafeBufferPointer { table in
            for byte in bytes { crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        }
        return ~crc
    }

    public static func zlib(_ bytes: [UInt8]) -> UInt32 { bytes.withUnsafeBufferPointer { zlib($0) } }

    private static let table: [UInt32] = (0..<256).map { n in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }
}

/// What is wrong with a firmware file. Always bad input: retrying cannot help.
public enum FirmwareModuleError: Error, Sendable, Equatable, CustomStringConvertible, ClassifiedError {
    case tooShort(length: Int, minimum: Int)
    /// No plausible `module_info_t` at any known offset (reason per offset).
    case noModuleInfo(String)
    /// The prefix declares more bytes than the file holds.
    case truncated(expected: Int, actual: Int)
    /// The file is longer than the prefix declares.
    case lengthMismatch(expected: Int, actual: Int)
    case badSuffix(size: Int, room: Int)
    case crcMismatch(stored: UInt32, computed: UInt32)
    case wrongPlatform(found: UInt16, expected: Platform)

    public var failureClass: FailureClass { .badInput }

    public var description: String {
        switch self {
        case let .tooShort(length, minimum):
            "the file is \(length) bytes; a firmware module has at least \(minimum) (prefix, suffix, CRC)"
        case let .noModuleInfo(reasons):
            "no Particle module prefix found (\(reasons)); is this a Particle firmware binary?"
        case let .truncated(expected, actual):
            "the file is truncated: its module prefix declares \(expected) bytes, the file has \(actual)"
        case let .lengthMismatch(expected, actual):
            "the file is \(actual) bytes but its module prefix declares \(expected)"
        case let .badSuffix(size, room):
            "the module suffix size \(size) is impossible (at least \(minimumSuffix), at most \(room) here)"
        case let .crcMismatch(stored, computed):
            "CRC-32 check failed (stored 0x\(pad8(stored)), computed 0x\(pad8(computed))): the file is corrupt"
        case let .wrongPlatform(found, expected):
            "the module is built for \(Platform.all.first { $0.id == found }.map { "\($0.displayName) (platform \(found))" } ?? "unknown platform \(found)"), not \(expected.displayName) (platform \(expected.id))"
        }
    }

    private var minimumSuffix: Int { FirmwareModule.minimumSuffixSize }
    private func pad8(_ v: UInt32) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: max(0, 8 - s.count)) + s
    }
}
