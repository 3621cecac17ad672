import DeviceKeys

/// How a platform talks to the cloud, which decides its key algorithm and DCT slots
/// (particle-cli-keys.md §1: `features` contains 'tcp' → tcp, otherwise udp).
public enum CloudProtocol: String, Sendable, Codable, CaseIterable {
    case tcp, udp

    public var keyAlgorithm: KeyAlgorithm { self == .tcp ? .rsa : .ec }
    /// Device OS default cloud port (device-os-keys.md §1.3).
    public var defaultPort: UInt16 { self == .tcp ? 5683 : 5684 }
}

/// MCU family: decides the DFU memory map and how device IDs are formed.
public enum MCU: String, Sendable, Codable {
    case stm32f1, stm32f2, nrf52840, rtl872x
}

/// A byte range in the DCT as DFU alt 1 addresses it (alt 1 addresses are `application_dct_t`
/// offsets, device-os-keys.md §2; Core: external flash addresses).
public struct DCTSlot: Sendable, Hashable, Codable {
    public let offset: Int
    public let size: Int
    public init(offset: Int, size: Int) {
        self.offset = offset
        self.size = size
    }
    public var range: Range<Int> { offset..<(offset + size) }
}

/// The server public key region as `particle keys server` writes it: key DER, 0xFF fill and the
/// `ServerAddress` at `addressOffset` (particle-cli-keys.md §4, `keys-specs.js`).
public struct ServerKeySlot: Sendable, Hashable, Codable {
    public let slot: DCTSlot
    /// Offset of the ServerAddress inside the blob (384 TCP, 192 UDP).
    public let addressOffset: Int
    /// The port is big-endian at address + 66 (`ServerAddress.port`, ota_flash_hal.h).
    public var portOffset: Int { addressOffset + ServerAddress.portOffset }
}

/// One row of the platform table — the only place platform facts live.
public struct Platform: Sendable, Hashable, Codable, CustomStringConvertible {
    /// The device-constants name, as `particle` and our pipelines spell it ("boron").
    public let name: String
    public let displayName: String
    /// Device OS platform ID (build/platform-id.mk).
    public let id: UInt16
    public let vendorID: UInt16
    public let normalProductID: UInt16
    public let dfuProductID: UInt16
    public let mcu: MCU
    public let cloudProtocol: CloudProtocol
    public let privateKeySlot: DCTSlot
    public let serverKeySlot: ServerKeySlot

    public var keyAlgorithm: KeyAlgorithm { cloudProtocol.keyAlgorithm }
    public var generation: Int {
        switch mcu {
        case .stm32f1: 1
        case .stm32f2: 2
        case .nrf52840, .rtl872x: 3
        }
    }

    /// Fixed leading hex digits of device IDs on this MCU (device-os-keys.md §3): nRF52840 IDs start
    /// with the little-endian prefix 0x68ce0fe0, rtl872x with 0a10aced2021 then the Wi-Fi MAC; STM32
    /// IDs are the chip's 96-bit UID and have no fixed prefix.
    public var deviceIDPrefix: String? {
        switch mcu {
        case .nrf52840: "e00fce68"
        case .rtl872x: "0a10aced2021"
        case .stm32f1, .stm32f2: nil
        }
    }

    public var description: String { name }
}

extension Platform {
    // Slots shared by every platform after the Core (particle-cli-keys.md §4; dct.h static asserts).
    static let tcpPrivateKey = DCTSlot(offset: 34, size: 612)
    static let udpPrivateKey = DCTSlot(offset: 3106, size: 192)
    static let tcpServerKey = ServerKeySlot(slot: DCTSlot(offset: 2082, size: 512), addressOffset: 384)
    static let udpServerKey = ServerKeySlot(slot: DCTSlot(offset: 3298, size: 320), addressOffset: 192)
    // The Core keeps keys in external flash (keys-specs.js `generation1`).
    static let coreTCPPrivateKey = DCTSlot(offset: 0x2000, size: 1024)
    static let coreTCPServerKey = ServerKeySlot(slot: DCTSlot(offset: 0x1000, size: 2048), addressOffset: 384)

    private static func particle(_ name: String, _ displayName: String, id: UInt16, mcu: MCU, _ cloudProtocol: CloudProtocol) -> Platform {
        Platform(
            name: name, displayName: displayName, id: id, vendorID: 0x2B04,
            normalProductID: 0xC000 | id, dfuProductID: 0xD000 | id, mcu: mcu, cloudProtocol: cloudProtocol,
            privateKeySlot: cloudProtocol == .tcp ? tcpPrivateKey : udpPrivateKey,
            serverKeySlot: cloudProtocol == .tcp ? tcpServerKey : udpServerKey)
    }

    // IDs and VID:PIDs: Device OS build/platform-id.mk (particle-cli-keys.md §5, device-os-keys.md §3).
    // Particle PIDs are 0xC000 | id (normal/CDC) and 0xD000 | id (DFU), VID 0x2B04.
    public static let core = Platform(
        name: "core", displayName: "Core", id: 0, vendorID: 0x1D50, normalProductID: 0x607D, dfuProductID: 0x607F,
        mcu: .stm32f1, cloudProtocol: .tcp, privateKeySlot: coreTCPPrivateKey, serverKeySlot: coreTCPServerKey)
    public static let photon = particle("photon", "Photon", id: 6, mcu: .stm32f2, .tcp)
    public static let p1 = particle("p1", "P1", id: 8, mcu: .stm32f2, .tcp)
    public static let electron = particle("electron", "Electron", id: 10, mcu: .stm32f2, .udp)
    public static let argon = particle("argon", "Argon", id: 12, mcu: .nrf52840, .udp)
    public static let boron = particle("boron", "Boron", id: 13, mcu: .nrf52840, .udp)
    public static let xenon = particle("xenon", "Xenon", id: 14, mcu: .nrf52840, .udp)
    public static let esomx = particle("esomx", "E SoM X", id: 15, mcu: .nrf52840, .udp)
    public static let asom = particle("asom", "A SoM", id: 22, mcu: .nrf52840, .udp)
    public static let bsom = particle("bsom", "B SoM", id: 23, mcu: .nrf52840, .udp)
    public static let xsom = particle("xsom", "X SoM", id: 24, mcu: .nrf52840, .udp)
    public static let b5som = particle("b5som", "B5 SoM", id: 25, mcu: .nrf52840, .udp)
    public static let tracker = particle("tracker", "Tracker", id: 26, mcu: .nrf52840, .udp)
    public static let trackerm = particle("trackerm", "Tracker M", id: 28, mcu: .rtl872x, .udp)
    public static let p2 = particle("p2", "Photon 2 / P2", id: 32, mcu: .rtl872x, .udp)
    public static let msom = particle("msom", "M SoM", id: 35, mcu: .rtl872x, .udp)

    public static let all: [Platform] = [
        core, photon, p1, electron, argon, boron, xenon, esomx, asom, bsom, xsom, b5som, tracker, trackerm, p2, msom,
    ]

    /// Looks a platform up by its name ("boron", case-insensitive) or numeric platform ID ("13").
    public static func named(_ name: String) throws(PlatformError) -> Platform {
        let key = name.lowercased()
        if let platform = all.first(where: { $0.name == key }) { return platform }
        if let id = UInt16(key), let platform = all.first(where: { $0.id == id }) { return platform }
        throw .unknownPlatform(name)
    }

    /// Whether `deviceID` is a well-formed device ID for this platform: 24 lowercase hex digits
    /// (the USB iSerial, device-os-keys.md §3) with the MCU's fixed prefix.
    public func isValidDeviceID(_ deviceID: String) -> Bool {
        deviceID.utf8.count == 24
            && deviceID.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
            && (deviceIDPrefix.map { deviceID.hasPrefix($0) } ?? true)
    }
}

public enum PlatformError: Error, Sendable, Equatable, CustomStringConvertible {
    case unknownPlatform(String)

    public var description: String {
        switch self {
        case .unknownPlatform(let name):
            "unknown platform '\(name)'; known platforms: \(Platform.all.map(\.name).joined(separator: ", "))"
        }
    }
}
