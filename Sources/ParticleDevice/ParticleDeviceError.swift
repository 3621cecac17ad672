import DFU
import DeviceBus
import DeviceKeys
import FailurePolicy
import ParticlePlatform
import HexEncoding

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
        case readCloudStatus = "read cloud connection status"
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
        /// A guarded key write found the slot holding something other than the key it was told
        /// to replace: "blank", "corrupt", or the public-key fingerprint found. Nothing was written.
        case unexpectedKey(found: String)
    }

    public var step: Step
    public var deviceID: String?
    public var port: USBPortPath?
    public var reason: Reason
    /// For `.unexpectedKey`: what the slot was expected to hold, so the message says both sides.
    public var expectedKey: ExpectedDeviceKey?

    public init(step: Step, deviceID: String? = nil, port: USBPortPath? = nil, reason: Reason,
                expectedKey: ExpectedDeviceKey? = nil) {
        self.step = step
        self.deviceID = deviceID
        self.port = port
        self.reason = reason
        self.expectedKey = expectedKey
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
            why = "USB ID \(Hex.word(vid)):\(Hex.word(pid)) is not a known Particle device"
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
        case .unexpectedKey(let found):
            let expected = expectedKey.map { "\($0)" } ?? "a known key slot"
            let seen = switch found {
            case "blank": "a blank slot (no key)"
            case "corrupt": "a corrupt slot (not a usable key)"
            default: "the key with public key SHA-256 \(found)"
            }
            why = "expected \(expected) but found \(seen); nothing was written. A key on a device is never replaced silently: check the device's registration and escrow before rekeying it"
        }
        return "\(who): \(step.rawValue) failed: \(why)"
    }
}

extension ParticleDeviceError: ClassifiedError {
    /// Transfer timeouts and disconnects, and a device that has not re-enumerated yet, clear up
    /// with a retry; what the device says, holds or is (protected, wrong platform, corrupt or
    /// unexpected key) fails this device; a key or blob that does not fit is the input's fault.
    public var failureClass: FailureClass {
        switch reason {
        case .dfu(let error): error.failureClass
        case .transfer(let error): DFUError.failureClass(of: error)
        case .locator(let error): Self.failureClass(of: error)
        case .keySlot, .wrongSize: .badInput
        case .key, .unknownDevice, .platformMismatch, .invalidDeviceID, .requestFailed, .unexpectedReply, .unexpectedKey: .badDevice
        }
    }

    /// Matched case by case so that new locator errors default to "this device".
    static func failureClass(of error: USBLocatorError) -> FailureClass {
        if case .timedOut = error { return .retryable }
        if case .cancelled = error { return .retryable }
        // A device that appeared but could not be opened is usually still settling (or busy).
        if case .openFailed = error { return .retryable }
        return .badDevice
    }
}

