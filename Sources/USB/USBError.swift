import CLibUSB
import DeviceBus

/// Why a USB operation failed, with the device it concerns.
public enum USBError: Error, Sendable, Hashable, CustomStringConvertible {
    /// No attached device matched (`what` says what was looked for, e.g. "serial e00fce68…").
    case notFound(what: String)
    /// Another program (or another keyline) holds the device's interface.
    case busy(USBPortPath)
    /// The operating system refused access: on Linux, no udev rule grants this user the device.
    case accessDenied(USBPortPath)
    /// The device went away: unplugged, reset, or re-enumerating in another mode.
    case disconnected(USBPortPath)
    /// Any other libusb failure, with libusb's name for it.
    case libusb(operation: String, code: Int32, name: String, portPath: USBPortPath?)

    /// The udev rule Particle's CLI installs (50-particle.rules), for the access-denied hint.
    public static let udevRuleHint =
        #"add a udev rule such as SUBSYSTEMS=="usb", ATTRS{idVendor}=="2b04", GROUP="plugdev", MODE="0664" "#
        + "to /etc/udev/rules.d/50-particle.rules, run `sudo udevadm control --reload`, add this user to "
        + "the plugdev group, and replug the device"

    public var description: String {
        switch self {
        case .notFound(let what):
            "no attached Particle device matches \(what): check the cable and hub port, and `keyline devices`"
        case .busy(let port):
            "the device on port \(port) is in use by another program (dfu-util, particle-cli, another keyline?): stop it and retry"
        case .accessDenied(let port):
            "access to the device on port \(port) was denied: \(Self.udevRuleHint)"
        case .disconnected(let port):
            "the device on port \(port) disconnected (unplugged, reset or re-enumerating): check the cable and retry"
        case .libusb(let operation, let code, let name, let port):
            "libusb \(operation) failed with \(name) (\(code))" + (port.map { " on port \($0)" } ?? "")
        }
    }

    /// Maps a libusb return code for an operation on the device at `port`.
    static func from(_ code: Int32, operation: String, port: USBPortPath?) -> USBError {
        switch code {
        case LIBUSB_ERROR_ACCESS.rawValue where port != nil: .accessDenied(port!)
        case LIBUSB_ERROR_BUSY.rawValue where port != nil: .busy(port!)
        case LIBUSB_ERROR_NO_DEVICE.rawValue where port != nil: .disconnected(port!)
        default: .libusb(operation: operation, code: code, name: libusbName(code), portPath: port)
        }
    }
}

func libusbName(_ code: Int32) -> String {
    guard let name = libusb_error_name(code) else { return "LIBUSB_ERROR \(code)" }
    return String(cString: name)
}
