import DeviceBus
import FailurePolicy

/// Why the simulator could not do what was asked.
public enum SimulatorError: Error, Sendable, Hashable, CustomStringConvertible, ClassifiedError {
    case unsupportedPlatform(String)
    case invalidDeviceID(String, platform: String)
    case portInUse(USBPortPath)
    case noDevice(USBPortPath)
    case noSuchAlt(UInt8)
    case stateFile(path: String, detail: String)
    /// Another handle holds the device's DFU interface (libusb: LIBUSB_ERROR_BUSY).
    case busy(USBPortPath)
    /// That enumeration of the device is gone: unplugged or re-enumerated (LIBUSB_ERROR_NO_DEVICE).
    case disconnected(USBPortPath)

    public var description: String {
        switch self {
        case .unsupportedPlatform(let name): "the simulator has no model of \(name) devices (the Core is not simulated)"
        case .invalidDeviceID(let id, let platform): "\"\(id)\" is not a valid \(platform) device ID (24 lowercase hex digits with the platform's prefix)"
        case .portInUse(let port): "port \(port) already has a simulated device; remove it first"
        case .noDevice(let port): "no simulated device at port \(port)"
        case .noSuchAlt(let alt): "the simulated device has no alt \(alt)"
        case .stateFile(let path, let detail): "simulated device state \(path): \(detail)"
        case .busy(let port): "the simulated device on port \(port) is in use by another handle: close it first"
        case .disconnected(let port): "the simulated device on port \(port) disconnected (unplugged or re-enumerated)"
        }
    }
}

extension SimulatorError {
    public var failureClass: FailureClass {
        switch self {
        // The same rule as USBError: another owner may let go; a re-enumeration settles.
        case .busy, .disconnected: .retryable
        case .stateFile: .needsOperator
        case .unsupportedPlatform, .invalidDeviceID, .portInUse, .noDevice, .noSuchAlt: .badInput
        }
    }
}
