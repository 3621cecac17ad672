import DeviceBus
import HexEncoding

/// DFU 1.1 class requests (DFU 1.1 §3, ../shared/docs/reference/dfu-protocol.md §1.2–§1.5), the
/// layer dfu-util keeps in `dfu.c`: one control transfer each, no policy.

/// DFU class request codes (bRequest), DFU 1.1 table 3.2.
public enum DFURequest: UInt8, Sendable, Hashable, CustomStringConvertible {
    case detach = 0
    case dnload = 1
    case upload = 2
    case getStatus = 3
    case clrStatus = 4
    case getState = 5
    case abort = 6

    public var description: String {
        switch self {
        case .detach: "DFU_DETACH"
        case .dnload: "DFU_DNLOAD"
        case .upload: "DFU_UPLOAD"
        case .getStatus: "DFU_GETSTATUS"
        case .clrStatus: "DFU_CLRSTATUS"
        case .getState: "DFU_GETSTATE"
        case .abort: "DFU_ABORT"
        }
    }

    /// bmRequestType for class requests to an interface: 0x21 host→device, 0xA1 device→host.
    public static let requestTypeOut: UInt8 = 0x21
    public static let requestTypeIn: UInt8 = 0xA1
}

/// Device states (DFU 1.1 §6.1.2, reference §1.4).
public enum DFUState: UInt8, Sendable, Hashable, Codable, CaseIterable, CustomStringConvertible {
    case appIdle = 0
    case appDetach = 1
    case dfuIdle = 2
    case dnloadSync = 3
    case dnbusy = 4
    case dnloadIdle = 5
    case manifestSync = 6
    case manifest = 7
    case manifestWaitReset = 8
    case uploadIdle = 9
    case dfuError = 10

    public var description: String {
        switch self {
        case .appIdle: "appIDLE"
        case .appDetach: "appDETACH"
        case .dfuIdle: "dfuIDLE"
        case .dnloadSync: "dfuDNLOAD-SYNC"
        case .dnbusy: "dfuDNBUSY"
        case .dnloadIdle: "dfuDNLOAD-IDLE"
        case .manifestSync: "dfuMANIFEST-SYNC"
        case .manifest: "dfuMANIFEST"
        case .manifestWaitReset: "dfuMANIFEST-WAIT-RESET"
        case .uploadIdle: "dfuUPLOAD-IDLE"
        case .dfuError: "dfuERROR"
        }
    }
}

/// bStatus codes (DFU 1.1 §6.1.2 table, reference §1.5), with dfu-util's wording.
public enum DFUStatusCode: UInt8, Sendable, Hashable, Codable, CaseIterable, CustomStringConvertible {
    case ok = 0x00
    case errTarget = 0x01
    case errFile = 0x02
    case errWrite = 0x03
    case errErase = 0x04
    case errCheckErased = 0x05
    case errProg = 0x06
    case errVerify = 0x07
    case errAddress = 0x08
    case errNotDone = 0x09
    case errFirmware = 0x0A
    case errVendor = 0x0B
    case errUSBR = 0x0C
    case errPOR = 0x0D
    case errUnknown = 0x0E
    case errStalledPkt = 0x0F

    public var name: String {
        switch self {
        case .ok: "OK"
        case .errTarget: "errTARGET"
        case .errFile: "errFILE"
        case .errWrite: "errWRITE"
        case .errErase: "errERASE"
        case .errCheckErased: "errCHECK_ERASED"
        case .errProg: "errPROG"
        case .errVerify: "errVERIFY"
        case .errAddress: "errADDRESS"
        case .errNotDone: "errNOTDONE"
        case .errFirmware: "errFIRMWARE"
        case .errVendor: "errVENDOR"
        case .errUSBR: "errUSBR"
        case .errPOR: "errPOR"
        case .errUnknown: "errUNKNOWN"
        case .errStalledPkt: "errSTALLEDPKT"
        }
    }

    /// dfu-util's text for the status (dfu.c `dfu_status_to_string`).
    public var meaning: String {
        switch self {
        case .ok: "No error condition is present"
        case .errTarget: "File is not targeted for use by this device"
        case .errFile: "File is for this device but fails some vendor-specific test"
        case .errWrite: "Device is unable to write memory"
        case .errErase: "Memory erase function failed"
        case .errCheckErased: "Memory erase check failed"
        case .errProg: "Program memory function failed"
        case .errVerify: "Programmed memory failed verification"
        case .errAddress: "Cannot program memory due to received address that is out of range"
        case .errNotDone: "Received DFU_DNLOAD with wLength = 0, but device does not think that it has all data yet"
        case .errFirmware: "Device's firmware is corrupt. It cannot return to run-time (non-DFU) operations"
        case .errVendor: "iString indicates a vendor specific error"
        case .errUSBR: "Device detected unexpected USB reset signalling"
        case .errPOR: "Device detected unexpected power on reset"
        case .errUnknown: "Something went wrong, but the device does not know what it was"
        case .errStalledPkt: "Device stalled an unexpected request"
        }
    }

    public var description: String { "\(name) (\(meaning))" }
}

/// The 6-byte DFU_GETSTATUS reply (DFU 1.1 §6.1.2, reference §1.3).
public struct DFUStatus: Sendable, Hashable, CustomStringConvertible {
    public var status: DFUStatusCode
    /// bwPollTimeout: the least time the host waits before the next GETSTATUS (24-bit LE, ms).
    public var pollTimeoutMilliseconds: UInt32
    /// The state the device enters right after sending this reply.
    public var state: DFUState
    public var stringIndex: UInt8

    public init(status: DFUStatusCode, pollTimeoutMilliseconds: UInt32 = 0, state: DFUState, stringIndex: UInt8 = 0) {
        self.status = status
        self.pollTimeoutMilliseconds = pollTimeoutMilliseconds
        self.state = state
        self.stringIndex = stringIndex
    }

    /// Parses the reply; nil unless it is exactly 6 bytes with a known status and state (dfu-util
    /// also rejects any other length).
    public init?(bytes: [UInt8]) {
        guard bytes.count == 6,
              let status = DFUStatusCode(rawValue: bytes[0]),
              let state = DFUState(rawValue: bytes[4]) else { return nil }
        self.status = status
        self.pollTimeoutMilliseconds = UInt32(bytes[1]) | UInt32(bytes[2]) << 8 | UInt32(bytes[3]) << 16
        self.state = state
        self.stringIndex = bytes[5]
    }

    public var bytes: [UInt8] {
        [status.rawValue, UInt8(pollTimeoutMilliseconds & 0xFF), UInt8(pollTimeoutMilliseconds >> 8 & 0xFF),
         UInt8(pollTimeoutMilliseconds >> 16 & 0xFF), state.rawValue, stringIndex]
    }

    public var description: String { "\(state), \(status.name), poll \(pollTimeoutMilliseconds) ms" }
}

/// One DFU interface of an opened device: the request layer. Every request is exactly one control
/// transfer; failures come back as `DFUError.Reason` for the caller to put in context.
///
/// The requests themselves live in `DFUSession`, synchronous on the device's thread; the async
/// methods here run one request (or one DfuSe sequence) there per call. Operations that chain many
/// requests (DfuSeDevice's loads) enter the device thread once and use a `DFUSession` throughout.
public struct DFUInterface: Sendable {
    public let transport: any ControlTransport
    public let number: UInt8
    /// dfu-util uses 5000 ms for every class request (reference §3.6).
    public var timeout: Duration

    public init(transport: any ControlTransport, number: UInt8 = 0, timeout: Duration = .seconds(5)) {
        self.transport = transport
        self.number = number
        self.timeout = timeout
    }

    /// This interface over the device thread's synchronous control.
    public func session(_ control: any BlockingControl) -> DFUSession {
        DFUSession(control: control, number: number, timeout: timeout)
    }

    /// Runs `body` on the device's thread (one hand-off in, one out).
    public func run<T: Sendable, E: Error>(_ body: @escaping @Sendable (DFUSession) throws(E) -> T) async throws(E) -> T {
        let interface = self
        return try await transport.withBlockingControl { (control) throws(E) -> T in try body(interface.session(control)) }
    }

    /// DFU_GETSTATUS. Does not sleep bwPollTimeout; `pollStatus` does.
    public func getStatus() async throws(DFUError.Reason) -> DFUStatus {
        try await run { (dfu) throws(DFUError.Reason) in try dfu.getStatus() }
    }

    /// DFU_GETSTATUS, then waits the device's bwPollTimeout (see `DFUSession.pollStatus`).
    public func pollStatus() async throws(DFUError.Reason) -> DFUStatus {
        try await run { (dfu) throws(DFUError.Reason) in try dfu.pollStatus() }
    }

    public func getState() async throws(DFUError.Reason) -> DFUState {
        try await run { (dfu) throws(DFUError.Reason) in try dfu.getState() }
    }

    public func clearStatus() async throws(DFUError.Reason) {
        try await run { (dfu) throws(DFUError.Reason) in try dfu.clearStatus() }
    }

    public func abort() async throws(DFUError.Reason) {
        try await run { (dfu) throws(DFUError.Reason) in try dfu.abort() }
    }

    /// DFU_DETACH with wTimeout in ms (run-time mode only).
    public func detach(timeoutMilliseconds: UInt16 = 1000) async throws(DFUError.Reason) {
        try await run { (dfu) throws(DFUError.Reason) in try dfu.detach(timeoutMilliseconds: timeoutMilliseconds) }
    }

    public func download(block: UInt16, _ data: [UInt8]) async throws(DFUError.Reason) {
        try await run { (dfu) throws(DFUError.Reason) in try dfu.download(block: block, data) }
    }

    public func upload(block: UInt16, length: Int) async throws(DFUError.Reason) -> [UInt8] {
        try await run { (dfu) throws(DFUError.Reason) in try dfu.upload(block: block, length: length) }
    }
}

/// The DFU request layer on the device's thread: synchronous requests over `BlockingControl`,
/// the one implementation behind `DFUInterface` and `DfuSeDevice`.
public struct DFUSession {
    public let control: any BlockingControl
    public let number: UInt8
    public var timeout: Duration

    public init(control: any BlockingControl, number: UInt8 = 0, timeout: Duration = .seconds(5)) {
        self.control = control
        self.number = number
        self.timeout = timeout
    }

    public var step: DeviceStep { control.step }

    func transfer(_ request: DFURequest, value: UInt16 = 0, length: UInt16 = 0, data: [UInt8] = [], input: Bool) throws(DFUError.Reason) -> [UInt8] {
        let setup = ControlSetup(requestType: input ? DFURequest.requestTypeIn : DFURequest.requestTypeOut,
                                 request: request.rawValue, value: value, index: UInt16(number), length: length)
        do {
            return try control.control(setup, data: data, timeout: timeout)
        } catch {
            throw .transfer(error, request: request)
        }
    }

    /// DFU_GETSTATUS. Does not sleep bwPollTimeout; `pollStatus` does.
    public func getStatus() throws(DFUError.Reason) -> DFUStatus {
        let reply = try transfer(.getStatus, length: 6, input: true)
        guard let status = DFUStatus(bytes: reply) else {
            throw .malformedReply("GETSTATUS returned \(reply.count) bytes \(Hex.dump(reply)), expected 6 with a known status and state")
        }
        return status
    }

    /// DFU_GETSTATUS, then waits the device's bwPollTimeout before returning (DFU 1.1 §6.1.2:
    /// the host must not send the next GETSTATUS sooner; dfu-util sleeps after every reply).
    public func pollStatus() throws(DFUError.Reason) -> DFUStatus {
        let status = try getStatus()
        if status.pollTimeoutMilliseconds > 0 {
            // A cancelled step stops here instead of polling on until its timeout.
            do { try step.sleep(for: .milliseconds(Int(status.pollTimeoutMilliseconds))) } catch {
                throw .transfer(error, request: .getStatus)
            }
        }
        return status
    }

    public func getState() throws(DFUError.Reason) -> DFUState {
        let reply = try transfer(.getState, length: 1, input: true)
        guard reply.count == 1, let state = DFUState(rawValue: reply[0]) else {
            throw .malformedReply("GETSTATE returned \(Hex.dump(reply)), expected one known state byte")
        }
        return state
    }

    public func clearStatus() throws(DFUError.Reason) {
        _ = try transfer(.clrStatus, input: false)
    }

    public func abort() throws(DFUError.Reason) {
        _ = try transfer(.abort, input: false)
    }

    /// DFU_DETACH with wTimeout in ms (run-time mode only).
    public func detach(timeoutMilliseconds: UInt16 = 1000) throws(DFUError.Reason) {
        _ = try transfer(.detach, value: timeoutMilliseconds, input: false)
    }

    public func download(block: UInt16, _ data: [UInt8]) throws(DFUError.Reason) {
        guard data.count <= Int(UInt16.max) else { throw .malformedReply("DNLOAD block of \(data.count) bytes exceeds wLength") }
        _ = try transfer(.dnload, value: block, length: UInt16(data.count), data: data, input: false)
    }

    public func upload(block: UInt16, length: Int) throws(DFUError.Reason) -> [UInt8] {
        try transfer(.upload, value: block, length: UInt16(clamping: length), input: true)
    }

    /// Throws `.transfer(.cancelled, …)` if the step was cancelled: the check between blocks.
    func checkCancellation(_ request: DFURequest) throws(DFUError.Reason) {
        if step.isCancelled { throw .transfer(.cancelled, request: request) }
    }
}


func hex32(_ value: UInt32) -> String {
    let digits = String(value, radix: 16)
    return "0x" + String(repeating: "0", count: max(0, 8 - digits.count)) + digits
}
