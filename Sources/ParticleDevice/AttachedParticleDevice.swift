import DeviceBus
import HexEncoding
import ParticlePlatform

/// One attached device as `keyline devices` lists it (also its JSON form): where it is, its mode,
/// the platform its VID:PID names, and its device ID. Naming the platform is this target's
/// knowledge, not the bus's.
public struct AttachedParticleDevice: Codable, Equatable, Sendable {
    public var port: String
    public var bus: UInt8
    public var ports: [UInt8]
    public var mode: String
    public var platform: String?
    public var platformID: UInt16?
    public var deviceID: String?
    public var vendorID: String
    public var productID: String
    public var address: UInt8
    /// Why the device could not be opened to read its strings (e.g. no udev rule); listed anyway.
    public var error: String?
    /// A normal-mode device's cloud connection (control request 300), if it was read.
    public var cloud: CloudConnectionStatus?
    /// Why the cloud connection status could not be read.
    public var cloudError: String?
    /// With a pipeline that lists the jig's ports: whether this port is one of them (a device on
    /// another port is not touched, not even to read its cloud status), and the port's nickname.
    public var permitted: Bool?
    public var portName: String?

    public init(_ device: BusDevice, openError: String?) {
        port = device.port.description
        bus = device.port.bus
        ports = device.port.ports
        mode = device.mode.rawValue
        let match = Platform.matching(vendorID: device.identity.vendorID, productID: device.identity.productID)
        platform = match?.platform.name
        platformID = match?.platform.id
        deviceID = device.identity.serialNumber?.lowercased()
        vendorID = Hex.word(device.identity.vendorID)
        productID = Hex.word(device.identity.productID)
        address = device.address
        error = openError
    }
}
