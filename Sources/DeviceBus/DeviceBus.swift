/// The device-bus seam: what a station needs from USB to own its devices — enumerate (with
/// serials), open with the DFU interface claimed exclusively, close, and (through
/// `DeviceBusWatcher`) arrivals and departures. `USB.USBContext` implements it over libusb, the
/// simulator's fleet in-process.
///
/// The claim rule every implementation keeps: a device's DFU interface is held by one open
/// handle at a time; a second `open` fails as busy until the first is closed. A handle belongs to
/// one enumeration: once the device re-enumerates (normal → DFU, leaving DFU, reset, unplug) its
/// transfers fail with `.disconnected` and its claim is gone, so no claim survives a
/// re-enumeration.

/// Whether a Particle device runs its application (CDC serial, vendor control requests) or its
/// bootloader's DFU mode (DfuSe interface, protocol 2; dfu-protocol.md §1.1).
public enum USBMode: String, Sendable, Hashable, Codable, CustomStringConvertible {
    case normal, dfu
    public var description: String { rawValue }
}

/// One enumeration of an attached device: who it is, in which mode, and its bus address (new on
/// every enumeration, so it tells a re-enumerated device from the handle-holding one before).
public struct BusDevice: Sendable, Hashable, CustomStringConvertible {
    public var identity: USBDeviceIdentity
    public var mode: USBMode
    public var address: UInt8

    public init(identity: USBDeviceIdentity, mode: USBMode, address: UInt8) {
        self.identity = identity
        self.mode = mode
        self.address = address
    }

    public var port: USBPortPath { identity.port }

    public var description: String { "\(identity) (\(mode) mode, address \(address))" }
}

/// A device arriving on or departing from the bus (a re-enumeration is a departure of the old
/// enumeration followed by an arrival of the new one).
public enum BusChange: Sendable, Hashable {
    case arrived(BusDevice)
    case departed(BusDevice)

    public var device: BusDevice {
        switch self {
        case .arrived(let device), .departed(let device): device
        }
    }
}

/// An open handle that can be given back: `close()` releases the claimed interface (so another
/// owner can open the device) and makes later transfers fail with `.disconnected`. Idempotent.
public protocol ClosableControlTransport: ControlTransport {
    func close() async
}

public protocol DeviceBus: Sendable {
    /// Every attached Particle device, serials included. Blocking work (libusb) happens on the
    /// bus's own thread, never the caller's.
    func enumerate() async throws -> [BusDevice]

    /// Opens this enumeration of the device; in DFU mode the DFU interface is claimed exclusively
    /// (a device another handle holds fails as busy, an error whose `failureClass` is
    /// `.retryable`). A device that re-enumerated since `device` was listed fails as disconnected.
    func open(_ device: BusDevice) async throws -> any ClosableControlTransport
}
