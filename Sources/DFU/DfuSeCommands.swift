/// ST DfuSe commands on top of DFU requests (AN3156 / AN2662, reference dfu-protocol.md §2), the
/// layer dfu-util keeps in `dfuse.c`.

/// DfuSe command bytes sent in a DNLOAD with wValue 0 (reference §2.1).
public enum DfuSeCommand: Sendable, Hashable {
    case getCommands
    case setAddressPointer(UInt32)
    case erasePage(UInt32)
    case massErase
    case readUnprotect

    public static let getCommandsCode: UInt8 = 0x00
    public static let setAddressPointerCode: UInt8 = 0x21
    public static let eraseCode: UInt8 = 0x41
    public static let readUnprotectCode: UInt8 = 0x92

    public var bytes: [UInt8] {
        switch self {
        case .getCommands: [Self.getCommandsCode]
        case .setAddressPointer(let a): [Self.setAddressPointerCode] + le32Bytes(a)
        case .erasePage(let a): [Self.eraseCode] + le32Bytes(a)
        case .massErase: [Self.eraseCode]
        case .readUnprotect: [Self.readUnprotectCode]
        }
    }

    /// Parses a wValue-0 DNLOAD payload (device side).
    public init?(bytes b: [UInt8]) {
        switch (b.first, b.count) {
        case (Self.getCommandsCode, 1): self = .getCommands
        case (Self.setAddressPointerCode, 5): self = .setAddressPointer(le32(b, 1))
        case (Self.eraseCode, 5): self = .erasePage(le32(b, 1))
        case (Self.eraseCode, 1): self = .massErase
        case (Self.readUnprotectCode, 1): self = .readUnprotect
        default: return nil
        }
    }
}

/// DfuSe block numbers: 0 carries commands, 1 is undefined, ≥ 2 carries data at
/// `pointer + (block − 2) × wTransferSize` (reference §2.1).
public enum DfuSeBlock {
    public static let command: UInt16 = 0
    public static let firstData: UInt16 = 2
}

/// Consecutive dfuDNBUSY replies tolerated for one request (dfu-util gives up after 100 with a
/// zero poll timeout; Particle bootloaders report 0 and block the next transfer instead, so each
/// poll already waits for the flash).
let maximumBusyPolls = 100

extension DFUSession {
    /// Sends a DfuSe command and runs it to completion: the first GETSTATUS must say dfuDNBUSY (the
    /// device executes the command then, AN2662 p.77), later ones are polled until it leaves
    /// dfuDNBUSY; success is dfuDNLOAD-IDLE with status OK.
    public func dfuseCommand(_ command: DfuSeCommand) throws(DFUError.Reason) {
        try download(block: DfuSeBlock.command, command.bytes)
        var status = try pollStatus()
        try status.requireNoError()
        guard status.state == .dnbusy else {
            throw .unexpectedState(status.state, expected: [.dnbusy])
        }
        try pollUntilNotBusy(&status)
        try status.requireNoError()
        guard status.state == .dnloadIdle else {
            throw .unexpectedState(status.state, expected: [.dnloadIdle])
        }
    }

    /// After a data DNLOAD: GETSTATUS until dfuDNLOAD-IDLE (dfu-util's data-chunk loop, §3.4).
    public func completeDataBlock() throws(DFUError.Reason) {
        var status = try pollStatus()
        try status.requireNoError()
        try pollUntilNotBusy(&status)
        try status.requireNoError()
        guard status.state == .dnloadIdle else {
            throw .unexpectedState(status.state, expected: [.dnloadIdle])
        }
    }

    func pollUntilNotBusy(_ status: inout DFUStatus) throws(DFUError.Reason) {
        var polls = 0
        while status.state == .dnbusy || status.state == .dnloadSync {
            polls += 1
            guard polls <= maximumBusyPolls else { throw .stuckBusy(polls: polls) }
            status = try pollStatus()
            try status.requireNoError()
        }
    }

    /// ABORT, then GETSTATUS must show dfuIDLE (dfu-util's "abort to idle").
    public func abortToIdle() throws(DFUError.Reason) {
        try abort()
        let status = try pollStatus()
        try status.requireNoError()
        guard status.state == .dfuIdle else { throw .unexpectedState(status.state, expected: [.dfuIdle]) }
    }

    /// UPLOAD with wValue 0: the command bytes the device supports (reference §2.1).
    public func dfuseSupportedCommands() throws(DFUError.Reason) -> [UInt8] {
        let reply = try upload(block: 0, length: 32)
        try abortToIdle()
        return reply
    }

    /// Brings the device to dfuIDLE from wherever it was left (dfu-util `main.c` start-up: dfuERROR
    /// → CLRSTATUS, DNLOAD/UPLOAD-IDLE → ABORT, a non-OK status → CLRSTATUS), and returns the status.
    public func ensureIdle() throws(DFUError.Reason) -> DFUStatus {
        var status = try pollStatus()
        for _ in 0..<4 {
            switch status.state {
            case .dfuIdle where status.status == .ok:
                return status
            case .dfuError, .dfuIdle:
                try clearStatus()
            case .dnloadIdle, .uploadIdle, .dnloadSync, .manifestSync:
                try abort()
            case .appIdle, .appDetach:
                throw .notInDFUMode(status.state)
            case .dnbusy, .manifest, .manifestWaitReset:
                break
            }
            status = try pollStatus()
        }
        guard status.state == .dfuIdle, status.status == .ok else {
            throw .unexpectedState(status.state, expected: [.dfuIdle])
        }
        return status
    }

    /// Best effort after a failure: clear dfuERROR or abort a transfer so the device is usable again.
    /// Returns whether it ended in dfuIDLE. Never throws: the original error is what matters.
    public func recoverToIdle() -> Bool {
        for _ in 0..<3 {
            guard let status = try? getStatus() else { return false }
            switch status.state {
            case .dfuIdle where status.status == .ok: return true
            case .dfuError, .dfuIdle: guard (try? clearStatus()) != nil else { return false }
            case .dnloadIdle, .uploadIdle, .dnloadSync, .manifestSync: guard (try? abort()) != nil else { return false }
            default: return false
            }
        }
        return false
    }

    /// Leave DFU mode: zero-length DNLOAD, then GETSTATUS, which makes the device manifest (reference
    /// §2.2). Gen2 Particle answers dfuDNLOAD-IDLE, Gen3 dfuMANIFEST; a device that drops off the bus
    /// before answering has also left, so a disconnect there is success. Any other failure of that
    /// GETSTATUS (an I/O error, a timeout) is not: both bootloaders reset only after the status
    /// reply is sent (§2.2), so the device may still be in DFU mode, and the caller must know.
    public func leave() throws(DFUError.Reason) {
        do {
            try download(block: DfuSeBlock.firstData, [])
        } catch .transfer(.disconnected, _) {
            return
        }
        let status: DFUStatus
        do {
            status = try getStatus()
        } catch .transfer(.disconnected, _) {
            return
        }
        try status.requireNoError()
        let leaving: [DFUState] = [.manifest, .manifestSync, .manifestWaitReset, .dnloadIdle, .dfuIdle]
        guard leaving.contains(status.state) else { throw .unexpectedState(status.state, expected: leaving) }
    }
}

/// The DfuSe sequences as single calls from async code: each runs whole on the device's thread.
extension DFUInterface {
    public func dfuseCommand(_ command: DfuSeCommand) async throws(DFUError.Reason) {
        try await run { (dfu) throws(DFUError.Reason) in try dfu.dfuseCommand(command) }
    }

    public func completeDataBlock() async throws(DFUError.Reason) {
        try await run { (dfu) throws(DFUError.Reason) in try dfu.completeDataBlock() }
    }

    public func abortToIdle() async throws(DFUError.Reason) {
        try await run { (dfu) throws(DFUError.Reason) in try dfu.abortToIdle() }
    }

    public func dfuseSupportedCommands() async throws(DFUError.Reason) -> [UInt8] {
        try await run { (dfu) throws(DFUError.Reason) in try dfu.dfuseSupportedCommands() }
    }

    public func ensureIdle() async throws(DFUError.Reason) -> DFUStatus {
        try await run { (dfu) throws(DFUError.Reason) in try dfu.ensureIdle() }
    }

    public func recoverToIdle() async -> Bool {
        await run { (dfu) -> Bool in dfu.recoverToIdle() }
    }

    public func leave() async throws(DFUError.Reason) {
        try await run { (dfu) throws(DFUError.Reason) in try dfu.leave() }
    }
}

extension DFUStatus {
    func requireNoError() throws(DFUError.Reason) {
        if status != .ok || state == .dfuError {
            throw .deviceStatus(status == .ok ? .errUnknown : status, state: state)
        }
    }
}

@inline(__always) func le32(_ b: [UInt8], _ i: Int) -> UInt32 {
    UInt32(b[i]) | UInt32(b[i + 1]) << 8 | UInt32(b[i + 2]) << 16 | UInt32(b[i + 3]) << 24
}
@inline(__always) func le32Bytes(_ v: UInt32) -> [UInt8] {
    [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v >> 16 & 0xFF), UInt8(v >> 24)]
}
