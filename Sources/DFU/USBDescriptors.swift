import DeviceBus
import HexEncoding

/// Standard USB descriptors (USB 2.0 §9.6) and the DFU functional descriptor (DFU 1.1 §4.1.3),
/// parsed from raw bytes and read with GET_DESCRIPTOR through a `ControlTransport`, the way
/// particle-usb does (reference dfu-protocol.md §4.2: config first 9 bytes for wTotalLength, then all).

public enum USBDescriptorType: UInt8, Sendable {
    case device = 1
    case configuration = 2
    case string = 3
    case interface = 4
    case endpoint = 5
    case dfuFunctional = 0x21
}

/// USB 2.0 table 9-8, 18 bytes.
public struct USBDeviceDescriptor: Sendable, Hashable {
    public var usbVersion: UInt16
    public var deviceClass: UInt8
    public var deviceSubClass: UInt8
    public var deviceProtocol: UInt8
    public var maxPacketSize0: UInt8
    public var vendorID: UInt16
    public var productID: UInt16
    public var deviceVersion: UInt16
    public var manufacturerIndex: UInt8
    public var productIndex: UInt8
    public var serialNumberIndex: UInt8
    public var configurationCount: UInt8

    public init(usbVersion: UInt16 = 0x0200, deviceClass: UInt8 = 0, deviceSubClass: UInt8 = 0, deviceProtocol: UInt8 = 0,
                maxPacketSize0: UInt8 = 64, vendorID: UInt16, productID: UInt16, deviceVersion: UInt16,
                manufacturerIndex: UInt8 = 1, productIndex: UInt8 = 2, serialNumberIndex: UInt8 = 3, configurationCount: UInt8 = 1) {
        self.usbVersion = usbVersion
        self.deviceClass = deviceClass
        self.deviceSubClass = deviceSubClass
        self.deviceProtocol = deviceProtocol
        self.maxPacketSize0 = maxPacketSize0
        self.vendorID = vendorID
        self.productID = productID
        self.deviceVersion = deviceVersion
        self.manufacturerIndex = manufacturerIndex
        self.productIndex = productIndex
        self.serialNumberIndex = serialNumberIndex
        self.configurationCount = configurationCount
    }

    public init(bytes b: [UInt8]) throws(DFUError.Reason) {
        guard b.count >= 18, b[0] >= 18, b[1] == USBDescriptorType.device.rawValue else {
            throw .descriptor("device descriptor is \(b.count) bytes \(Hex.dump(b)), expected 18 bytes of type 1")
        }
        usbVersion = le16(b, 2)
        deviceClass = b[4]
        deviceSubClass = b[5]
        deviceProtocol = b[6]
        maxPacketSize0 = b[7]
        vendorID = le16(b, 8)
        productID = le16(b, 10)
        deviceVersion = le16(b, 12)
        manufacturerIndex = b[14]
        productIndex = b[15]
        serialNumberIndex = b[16]
        configurationCount = b[17]
    }

    public var bytes: [UInt8] {
        [18, USBDescriptorType.device.rawValue] + le16Bytes(usbVersion)
            + [deviceClass, deviceSubClass, deviceProtocol, maxPacketSize0]
            + le16Bytes(vendorID) + le16Bytes(productID) + le16Bytes(deviceVersion)
            + [manufacturerIndex, productIndex, serialNumberIndex, configurationCount]
    }
}

/// USB 2.0 table 9-12, 9 bytes.
public struct USBInterfaceDescriptor: Sendable, Hashable {
    public var interfaceNumber: UInt8
    public var alternateSetting: UInt8
    public var endpointCount: UInt8
    public var interfaceClass: UInt8
    public var interfaceSubClass: UInt8
    public var interfaceProtocol: UInt8
    public var stringIndex: UInt8

    public init(interfaceNumber: UInt8, alternateSetting: UInt8, endpointCount: UInt8 = 0, interfaceClass: UInt8,
                interfaceSubClass: UInt8, interfaceProtocol: UInt8, stringIndex: UInt8) {
        self.interfaceNumber = interfaceNumber
        self.alternateSetting = alternateSetting
        self.endpointCount = endpointCount
        self.interfaceClass = interfaceClass
        self.interfaceSubClass = interfaceSubClass
        self.interfaceProtocol = interfaceProtocol
        self.stringIndex = stringIndex
    }

    /// Class 0xFE subclass 0x01 (DFU 1.1 §4.2.3).
    public var isDFU: Bool { interfaceClass == 0xFE && interfaceSubClass == 0x01 }
    /// Protocol 2 = DFU mode, 1 = run-time (DFU 1.1 §4.1.2 / §4.2.3).
    public var isDFUMode: Bool { isDFU && interfaceProtocol == 2 }

    public var bytes: [UInt8] {
        [9, USBDescriptorType.interface.rawValue, interfaceNumber, alternateSetting, endpointCount,
         interfaceClass, interfaceSubClass, interfaceProtocol, stringIndex]
    }
}

/// The DFU functional descriptor (DFU 1.1 §4.1.3, reference §1.1). Particle devices send
/// `09 21 0B FF 00 00 10 1A 01`.
public struct DFUFunctionalDescriptor: Sendable, Hashable {
    public struct Attributes: OptionSet, Sendable, Hashable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        public static let canDownload = Attributes(rawValue: 1 << 0)
        public static let canUpload = Attributes(rawValue: 1 << 1)
        public static let manifestationTolerant = Attributes(rawValue: 1 << 2)
        public static let willDetach = Attributes(rawValue: 1 << 3)
    }

    public var attributes: Attributes
    public var detachTimeoutMilliseconds: UInt16
    public var transferSize: UInt16
    /// 0x0110 plain DFU 1.1, 0x011A ST DfuSe. DFU 1.0 descriptors (7 bytes) have none: 0x0100.
    public var dfuVersion: UInt16

    public init(attributes: Attributes, detachTimeoutMilliseconds: UInt16, transferSize: UInt16, dfuVersion: UInt16) {
        self.attributes = attributes
        self.detachTimeoutMilliseconds = detachTimeoutMilliseconds
        self.transferSize = transferSize
        self.dfuVersion = dfuVersion
    }

    /// What Particle bootloaders of both generations report (reference §1.1).
    public static let particle = DFUFunctionalDescriptor(
        attributes: [.canDownload, .canUpload, .willDetach], detachTimeoutMilliseconds: 255, transferSize: 4096, dfuVersion: 0x011A)

    public init(bytes b: [UInt8]) throws(DFUError.Reason) {
        guard b.count >= 7, b[1] == USBDescriptorType.dfuFunctional.rawValue, b[0] == 7 || b[0] >= 9 else {
            throw .descriptor("DFU functional descriptor \(Hex.dump(b)) is not 7 or 9 bytes of type 0x21")
        }
        attributes = Attributes(rawValue: b[2])
        detachTimeoutMilliseconds = le16(b, 3)
        transferSize = le16(b, 5)
        dfuVersion = b[0] >= 9 && b.count >= 9 ? le16(b, 7) : 0x0100
    }

    public var isDfuSe: Bool { dfuVersion == 0x011A }

    public var bytes: [UInt8] {
        [9, USBDescriptorType.dfuFunctional.rawValue, attributes.rawValue] + le16Bytes(detachTimeoutMilliseconds)
            + le16Bytes(transferSize) + le16Bytes(dfuVersion)
    }
}

/// A configuration descriptor with what follows it (USB 2.0 §9.6.3): interfaces and the DFU
/// functional descriptor wherever it appears (Particle puts it after the last alt, reference §1.1).
public struct USBConfiguration: Sendable, Hashable {
    public var configurationValue: UInt8
    public var attributes: UInt8
    public var maxPowerUnits: UInt8
    public var stringIndex: UInt8
    public var interfaces: [USBInterfaceDescriptor]
    public var dfuFunctional: DFUFunctionalDescriptor?

    public init(configurationValue: UInt8 = 1, attributes: UInt8 = 0xC0, maxPowerUnits: UInt8 = 50, stringIndex: UInt8 = 0,
                interfaces: [USBInterfaceDescriptor], dfuFunctional: DFUFunctionalDescriptor?) {
        self.configurationValue = configurationValue
        self.attributes = attributes
        self.maxPowerUnits = maxPowerUnits
        self.stringIndex = stringIndex
        self.interfaces = interfaces
        self.dfuFunctional = dfuFunctional
    }

    public init(bytes b: [UInt8]) throws(DFUError.Reason) {
        guard b.count >= 9, b[1] == USBDescriptorType.configuration.rawValue else {
            throw .descriptor("configuration descriptor \(Hex.dump(b)) is not of type 2")
        }
        let total = Int(le16(b, 2))
        guard total <= b.count else {
            throw .descriptor("configuration descriptor says wTotalLength \(total) but \(b.count) bytes came")
        }
        configurationValue = b[5]
        stringIndex = b[6]
        attributes = b[7]
        maxPowerUnits = b[8]
        interfaces = []
        dfuFunctional = nil
        var offset = Int(b[0])
        while offset + 2 <= total {
            let length = Int(b[offset])
            guard length >= 2, offset + length <= total else {
                throw .descriptor("configuration descriptor has a bad sub-descriptor length \(length) at byte \(offset)")
            }
            let sub = Array(b[offset..<offset + length])
            switch sub[1] {
            case USBDescriptorType.interface.rawValue where length >= 9:
                interfaces.append(USBInterfaceDescriptor(interfaceNumber: sub[2], alternateSetting: sub[3], endpointCount: sub[4],
                                                         interfaceClass: sub[5], interfaceSubClass: sub[6],
                                                         interfaceProtocol: sub[7], stringIndex: sub[8]))
            case USBDescriptorType.dfuFunctional.rawValue where dfuFunctional == nil:
                dfuFunctional = try DFUFunctionalDescriptor(bytes: sub)
            default:
                break
            }
            offset += length
        }
    }

    /// Config(9) + N×interface(9) + functional(9), the STM32 library order.
    public var bytes: [UInt8] {
        let body = interfaces.flatMap(\.bytes) + (dfuFunctional?.bytes ?? [])
        let interfaceCount = Set(interfaces.map(\.interfaceNumber)).count
        return [9, USBDescriptorType.configuration.rawValue] + le16Bytes(UInt16(9 + body.count))
            + [UInt8(interfaceCount), configurationValue, stringIndex, attributes, maxPowerUnits] + body
    }
}

/// USB string descriptors: index 0 is the LANGID list, others UTF-16LE (USB 2.0 §9.6.7).
public enum USBStringDescriptor {
    public static let englishUS: UInt16 = 0x0409

    public static func encode(_ string: String) -> [UInt8] {
        let units = Array(string.utf16.prefix(126))
        return [UInt8(2 + units.count * 2), USBDescriptorType.string.rawValue] + units.flatMap { le16Bytes($0) }
    }

    public static func encodeLanguages(_ languages: [UInt16] = [englishUS]) -> [UInt8] {
        [UInt8(2 + languages.count * 2), USBDescriptorType.string.rawValue] + languages.flatMap { le16Bytes($0) }
    }

    /// Decodes what came, tolerating a bLength larger than the bytes received (dfu-util does too).
    public static func decode(_ b: [UInt8]) throws(DFUError.Reason) -> String {
        guard b.count >= 2, b[1] == USBDescriptorType.string.rawValue else {
            throw .descriptor("string descriptor \(Hex.dump(b)) is not of type 3")
        }
        let end = min(Int(b[0]), b.count)
        var units: [UInt16] = []
        var i = 2
        while i + 1 < end {
            units.append(le16(b, i))
            i += 2
        }
        return String(decoding: units, as: UTF16.self)
    }
}

/// GET_DESCRIPTOR requests (USB 2.0 §9.4.3) over the transport; each call runs on the device's
/// thread (`USBDescriptorSession` does the work).
public struct USBDescriptorReader: Sendable {
    public let transport: any ControlTransport
    /// libusb's inline helpers use 1000 ms (reference §3.6).
    public var timeout: Duration

    public init(transport: any ControlTransport, timeout: Duration = .seconds(1)) {
        self.transport = transport
        self.timeout = timeout
    }

    private func run<T: Sendable>(_ body: @escaping @Sendable (USBDescriptorSession) throws(DFUError.Reason) -> T) async throws(DFUError.Reason) -> T {
        let timeout = timeout
        return try await transport.withBlockingControl { (control) throws(DFUError.Reason) -> T in
            try body(USBDescriptorSession(control: control, timeout: timeout))
        }
    }

    public func raw(type: USBDescriptorType, index: UInt8, language: UInt16 = 0, length: UInt16) async throws(DFUError.Reason) -> [UInt8] {
        try await run { (reader) throws(DFUError.Reason) in try reader.raw(type: type, index: index, language: language, length: length) }
    }

    public func deviceDescriptor() async throws(DFUError.Reason) -> USBDeviceDescriptor {
        try await run { (reader) throws(DFUError.Reason) in try reader.deviceDescriptor() }
    }

    public func configuration(index: UInt8 = 0) async throws(DFUError.Reason) -> USBConfiguration {
        try await run { (reader) throws(DFUError.Reason) in try reader.configuration(index: index) }
    }

    /// The string at `index` in the device's first language; nil for index 0 (no string).
    public func string(index: UInt8) async throws(DFUError.Reason) -> String? {
        try await run { (reader) throws(DFUError.Reason) in try reader.string(index: index) }
    }
}

/// GET_DESCRIPTOR requests on the device's thread.
public struct USBDescriptorSession {
    public let control: any BlockingControl
    /// libusb's inline helpers use 1000 ms (reference §3.6).
    public var timeout: Duration

    public init(control: any BlockingControl, timeout: Duration = .seconds(1)) {
        self.control = control
        self.timeout = timeout
    }

    public func raw(type: USBDescriptorType, index: UInt8, language: UInt16 = 0, length: UInt16) throws(DFUError.Reason) -> [UInt8] {
        let setup = ControlSetup(requestType: 0x80, request: 6, value: UInt16(type.rawValue) << 8 | UInt16(index),
                                 index: language, length: length)
        do {
            return try control.control(setup, data: [], timeout: timeout)
        } catch {
            throw .transfer(error, request: nil)
        }
    }

    public func deviceDescriptor() throws(DFUError.Reason) -> USBDeviceDescriptor {
        try USBDeviceDescriptor(bytes: try raw(type: .device, index: 0, length: 18))
    }

    public func configuration(index: UInt8 = 0) throws(DFUError.Reason) -> USBConfiguration {
        let head = try raw(type: .configuration, index: index, length: 9)
        guard head.count >= 4 else { throw .descriptor("configuration descriptor header is \(head.count) bytes") }
        let total = le16(head, 2)
        return try USBConfiguration(bytes: try raw(type: .configuration, index: index, length: total))
    }

    /// The string at `index` in the device's first language; nil for index 0 (no string).
    public func string(index: UInt8) throws(DFUError.Reason) -> String? {
        guard index != 0 else { return nil }
        let languages = try raw(type: .string, index: 0, length: 255)
        let language = languages.count >= 4 ? le16(languages, 2) : USBStringDescriptor.englishUS
        return try USBStringDescriptor.decode(try raw(type: .string, index: index, language: language, length: 255))
    }
}

@inline(__always) func le16(_ b: [UInt8], _ i: Int) -> UInt16 { UInt16(b[i]) | UInt16(b[i + 1]) << 8 }
@inline(__always) func le16Bytes(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8)] }
