import DeviceBus
import HexEncoding

/// The device bus seam's mode (DFU's `USBMode`), under the name this target has always used.
public typealias USBDeviceMode = USBMode

/// One alternate setting of a device's DFU interface: its number and its `iInterface` string,
/// which for DfuSe is the memory layout (dfu-protocol.md §2.3).
public struct USBAlternateSetting: Sendable, Hashable, Codable {
    public var number: UInt8
    public var name: String?

    public init(number: UInt8, name: String?) {
        self.number = number
        self.name = name
    }
}

/// One enumeration of an attached device, as `USBContext.devices()` reports it.
public struct USBDeviceInfo: Sendable, Hashable, CustomStringConvertible {
    public var vendorID: UInt16
    public var productID: UInt16
    /// bcdDevice: the bootloader/firmware's device release number.
    public var deviceRelease: UInt16
    public var portPath: USBPortPath
    /// The bus address; changes every time the device re-enumerates.
    public var address: UInt8
    public var mode: USBDeviceMode
    /// iSerialNumber: on Particle devices the 24-hex device ID (device-os-keys.md §3). Nil when the
    /// device could not be opened (see `openError`) or has no serial.
    public var serialNumber: String?
    public var manufacturer: String?
    public var product: String?
    /// The DFU interface number (any mode), if the device has one.
    public var dfuInterface: UInt8?
    /// The DFU interface's alternate settings with their names (DFU mode).
    public var alternateSettings: [USBAlternateSetting]
    /// Why strings could not be read, e.g. access denied: the device is listed anyway.
    public var openError: USBError?

    public var description: String {
        "\(Hex.word(vendorID)):\(Hex.word(productID)) \(mode) on \(portPath)" + (serialNumber.map { " serial \($0)" } ?? "")
    }
}
