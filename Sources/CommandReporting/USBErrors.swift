import DFU
import ParticleDevice
import USB

// How USB, DFU and device errors appear on the command line: kind for scripts, message for people,
// context (port, device, alt, address), exit code (KeylineExit).

extension USBError: ReportableError {
    public var kind: String {
        switch self {
        case .notFound: "deviceNotFound"
        case .busy: "deviceBusy"
        case .accessDenied: "accessDenied"
        case .disconnected: "deviceDisconnected"
        case .libusb: "usbError"
        }
    }
    public var message: String { description }
    public var context: [String: String] {
        switch self {
        case .busy(let port), .accessDenied(let port), .disconnected(let port): ["port": port.description]
        case .libusb(let operation, _, let name, let port):
            ["operation": operation, "libusbError": name].merging(port.map { ["port": $0.description] } ?? [:]) { $1 }
        case .notFound: [:]
        }
    }
    public var exit: KeylineExit {
        switch self {
        case .accessDenied: .noPermission
        case .libusb: .ioError
        case .notFound, .busy, .disconnected: .unavailable
        }
    }
}

extension DFUError: ReportableError {
    public var kind: String {
        switch reason {
        case .transfer(.disconnected, _): "deviceDisconnected"
        case .transfer: "usbTransferFailed"
        case .deviceStatus: "dfuStatus"
        case .deviceProtected: "deviceProtected"
        case .outsideMemoryLayout, .notReadable, .notWritable: "rangeRefused"
        case .verifyMismatch: "verifyMismatch"
        default: "dfuProtocol"
        }
    }
    public var message: String { description }
    public var context: [String: String] {
        var context = ["operation": operation.rawValue]
        if let alt { context["alt"] = "\(alt)" }
        if let address { context["address"] = "0x" + String(address, radix: 16) }
        return context
    }
    public var exit: KeylineExit {
        switch reason {
        case .transfer, .deviceProtected, .notInDFUMode: .unavailable
        case .outsideMemoryLayout, .notReadable, .notWritable: .usage
        default: .protocolError
        }
    }
}

extension ParticleDeviceError: ReportableError {
    public var kind: String {
        switch reason {
        case .dfu(let error): error.kind
        case .transfer(.disconnected): "deviceDisconnected"
        case .transfer: "usbTransferFailed"
        case .locator: "deviceDidNotReturn"
        case .key, .keySlot, .unexpectedKey: "deviceKey"
        case .unknownDevice, .platformMismatch, .invalidDeviceID: "wrongDevice"
        default: "deviceProtocol"
        }
    }
    public var message: String { description }
    public var context: [String: String] {
        var context = ["step": step.rawValue]
        if let deviceID { context["deviceID"] = deviceID }
        if let port { context["port"] = port.description }
        if case .dfu(let error) = reason { context.merge(error.context) { old, _ in old } }
        return context
    }
    public var exit: KeylineExit {
        switch reason {
        case .dfu(let error): error.exit
        case .transfer, .locator: .unavailable
        case .key, .keySlot, .unexpectedKey, .unknownDevice, .platformMismatch, .invalidDeviceID, .wrongSize: .dataError
        case .requestFailed, .unexpectedReply: .protocolError
        }
    }
}

extension MemoryNumberError: ReportableError {
    public var kind: String { "usage" }
    public var message: String { description }
    public var exit: KeylineExit { .usage }
}
