import DFU
import DeviceKeys

/// A failure talking to a Particle device, with the device, port and step it concerned.
/// Never carries key bytes.
public struct ParticleDeviceError: Error, Sendable, CustomStringConvertible {
    public enum Step: String, Sendable, Hashable, Codable {
        case open = "open DFU device"
        case identify = "identify platform"
        case readDeviceID = "read device ID"
        case enterDFU = "switch to DFU mode"
        case waitForDFU = "wait for DFU mode"
        case readKey = "read device key"
        case writeKey = "write device key"
        case readServerKey = "read server key"
        case writeServerKey = "write server key"
        case leave = "leave DFU mode"
        case read = "read memory"
        case write = "write memory"
    }

    public enum Reason: Sendable {
        case dfu(DFUError)
        case transfer(USBTransferError)
        case locator(USBLocatorError)
        case key(DeviceKeyError)
        /// The key cannot live in this platform's slot (wrong algorithm, too large …), checked as
        /// `keyline keys inspect --platform` checks it.
        case keySlot(KeySlotError)
        case unknownDevice(vendorID: UInt16, productID: UInt16)
        case platformMismatch(expected: String, found: String)
        case invalidDeviceID(String)
        case wrongSize(expected: Int, actual: Int)
        case requestFailed(request: UInt16, result: Int32)
        case unexpectedReply(String)
    }

    public var step: Step
    public var deviceID: String?
    public var port: USBPortPath?
    public var reason: Reason

    public init(step: Step, deviceID: String? = nil, port: USBPortPath? = nil, reason: Reason) {
        self.step = step
        self.deviceID = deviceID
        self.port = port
        self.reason = reason
    }

    public var description: String {
        var who = "device"
        if let deviceID { who += " \(deviceID)" }
        if let port { who += " at port \(port)" }
        let why: String
        switch reason {
        case .dfu(let error): why = error.description
        case .transfer(let error): why = error.description
        case .locator(let error): why = error.description
        case .key(let error): why = "\(error)"
        case .keySlot(let error): why = error.description
        case .unknownDevice(let vid, let pid):
            why = "USB ID \(hex4(vid)):\(hex4(pid)) is not a known Particle device"
        case .platformMismatch(let expected, let found):
            why = "expected a \(expected) but the device is a \(found)"
        case .invalidDeviceID(let id):
            why = "serial \"\(id)\" is not a valid device ID for this platform"
        case .wrongSize(let expected, let actual):
            why = "expected \(expected) bytes, got \(actual)"
        case .requestFailed(let request, let result):
            why = "control request \(request) failed with Device OS error \(result)"
        case .unexpectedReply(let detail):
            why = detail
        }
        return "\(who): \(step.rawValue) failed: \(why)"
    }
}

func hex4(_ v: UInt16) -> String {
    let s = String(v, radix: 16)
    return String(repeating: "0", count: max(0, 4 - s.count)) + s
}
