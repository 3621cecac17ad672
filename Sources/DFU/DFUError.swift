import FailurePolicy
import DeviceBus

/// What the DFU client was doing when something failed; names the step in error messages.
public enum DFUOperation: String, Sendable, Hashable, Codable {
    case readDescriptors = "read descriptors"
    case selectAlternateSetting = "select alternate setting"
    case prepare = "prepare (get status)"
    case setAddress = "set address pointer"
    case erase = "erase"
    case download = "download (write)"
    case upload = "upload (read)"
    case verify = "verify"
    case abort = "abort to idle"
    case leave = "leave DFU mode"
    case getCommands = "get DfuSe commands"
    case detach = "detach"
}

/// A DFU failure with its context: the operation, the alternate setting and address it concerned,
/// and why. `description` is written for the person at the station and never contains data bytes
/// beyond short protocol replies (a key slot read never ends up here).
public struct DFUError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Reason: Error, Sendable, Hashable {
        /// The control transfer itself failed.
        case transfer(USBTransferError, request: DFURequest?)
        /// The device reported an error status (and entered dfuERROR).
        case deviceStatus(DFUStatusCode, state: DFUState)
        /// The device is in a state the protocol does not allow here.
        case unexpectedState(DFUState, expected: [DFUState])
        /// A reply or descriptor that does not parse.
        case malformedReply(String)
        /// No DFU interface / functional descriptor / alternate setting as asked.
        case descriptor(String)
        /// The device is in Particle's Protected Device mode: DFU reads and writes are refused.
        case deviceProtected
        /// The range is not (entirely) inside the alt's memory layout.
        case outsideMemoryLayout(length: Int)
        /// The memory layout marks (part of) the range as not readable / not writeable.
        case notReadable
        case notWritable
        /// Read-back differs from what was written.
        case verifyMismatch(firstDifferenceAt: UInt32)
        /// The device answered an UPLOAD with fewer bytes than asked before the end of the range.
        case shortRead(expected: Int, received: Int)
        /// The device kept answering dfuDNBUSY.
        case stuckBusy(polls: Int)
        /// The device is running its application, not the DFU bootloader.
        case notInDFUMode(DFUState)
    }

    public var operation: DFUOperation
    public var alt: UInt8?
    public var address: UInt32?
    public var reason: Reason
    /// Whether the client brought the device back to dfuIDLE afterwards (CLRSTATUS / ABORT).
    public var recovered: Bool

    public init(operation: DFUOperation, alt: UInt8? = nil, address: UInt32? = nil, reason: Reason, recovered: Bool = false) {
        self.operation = operation
        self.alt = alt
        self.address = address
        self.reason = reason
        self.recovered = recovered
    }

    /// The DFU status code, when the device reported one.
    public var deviceStatus: DFUStatusCode? {
        if case .deviceStatus(let code, _) = reason { return code }
        return nil
    }

    public var transferError: USBTransferError? {
        if case .transfer(let error, _) = reason { return error }
        return nil
    }

    public var description: String {
        var place = "DFU \(operation.rawValue)"
        if let alt { place += " on alt \(alt)" }
        if let address { place += " at \(hex32(address))" }
        let what: String
        switch reason {
        case .transfer(let error, let request):
            let req = request.map { " during \($0)" } ?? ""
            switch error {
            case .disconnected: what = "the device disconnected\(req); check the cable and hub port, then retry"
            case .timeout: what = "the device did not answer in time\(req); it may be hung: power-cycle it and retry"
            case .stall: what = "the device refused the request\(req) (endpoint stall)"
            case .io(let detail): what = "USB I/O error\(req): \(detail)"
            case .cancelled: what = "cancelled\(req); the device may be left mid-operation: check it before reusing it"
            }
        case .deviceStatus(let code, let state):
            what = "the device reported \(code.name) in \(state): \(code.meaning); \(code.advice)"
        case .unexpectedState(let state, let expected):
            what = "the device is in \(state), expected \(expected.map(\.description).joined(separator: " or "))"
        case .malformedReply(let detail):
            what = "malformed reply: \(detail)"
        case .descriptor(let detail):
            what = "descriptor problem: \(detail)"
        case .deviceProtected:
            what = "the device is protected (Particle Protected Device mode): DFU reads and writes are refused; use service mode or a device that is not protected"
        case .outsideMemoryLayout(let length):
            what = "\(length) bytes there are outside the device's memory layout"
        case .notReadable:
            what = "the memory layout says this region is not readable"
        case .notWritable:
            what = "the memory layout says this region is not writeable"
        case .verifyMismatch(let at):
            what = "read-back differs from what was written, first at \(hex32(at)); the flash may be worn or the write was interrupted: retry"
        case .shortRead(let expected, let received):
            what = "the device returned \(received) of \(expected) bytes"
        case .stuckBusy(let polls):
            what = "the device stayed busy for \(polls) status polls"
        case .notInDFUMode(let state):
            what = "the device is in run-time mode (\(state)), not DFU mode"
        }
        return "\(place): \(what)" + (recovered ? " (device reset to dfuIDLE)" : "")
    }
}

extension DFUStatusCode {
    /// What the person at the station can do about it.
    public var advice: String {
        switch self {
        case .ok: "nothing to do"
        case .errTarget, .errFile: "the image or address is not meant for this device: check the platform and the file"
        case .errAddress: "the address is outside what the device can program: check the address and the image size"
        case .errWrite, .errErase, .errCheckErased, .errProg, .errVerify:
            "retry; if it happens again on this device its flash may be failing: set the device aside"
        case .errNotDone: "the device expected more data: retry the whole transfer"
        case .errFirmware: "the firmware on the device is corrupt: reflash it before leaving DFU mode"
        case .errVendor: "the device refused for its own reason (e.g. Protected Device mode): check its security mode"
        case .errUSBR, .errPOR: "the device was reset during the transfer: check the cable and hub, then retry"
        case .errUnknown, .errStalledPkt: "retry; if it repeats, power-cycle the device"
        }
    }
}

extension DFUError: ClassifiedError {
    /// Transfers that time out or lose the device (a re-enumeration settling, a loose cable) and
    /// a read-back that differs (the write is simply redone) can succeed when tried again; what
    /// the device reports or refuses is the device's fault; a range outside its memory layout is
    /// a request that cannot fit, whatever device it is sent to.
    public var failureClass: FailureClass {
        switch reason {
        case .transfer(let error, _): Self.failureClass(of: error)
        case .verifyMismatch: .retryable
        case .outsideMemoryLayout, .notReadable, .notWritable: .badInput
        case .deviceStatus, .unexpectedState, .malformedReply, .descriptor, .deviceProtected, .shortRead,
             .stuckBusy, .notInDFUMode: .badDevice
        }
    }

    /// The class of a failed control transfer. Matched case by case rather than exhaustively
    /// so that new transfer errors default to "this device" (never retried blindly).
    public static func failureClass(of error: USBTransferError) -> FailureClass {
        if case .timeout = error { return .retryable }
        if case .disconnected = error { return .retryable }
        // libusb's other I/O errors are bus hiccups as often as not; retries are bounded.
        if case .io = error { return .retryable }
        // Cancelled means the runner is stopping: the step can be done again on resume.
        if case .cancelled = error { return .retryable }
        return .badDevice
    }
}
