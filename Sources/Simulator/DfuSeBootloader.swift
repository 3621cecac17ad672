import DFU
import DeviceBus

/// The DfuSe state machine of a Particle bootloader (DFU 1.1 §6.1 and ST AN3156 as Particle
/// implements them: Gen2 `usbd_dfu_core.c`, Gen3 `usbd_dfu.cpp`; dfu-protocol.md §1.4, §2).
/// Pure: it changes state and memory and says how long the flash was busy; the device applies time.
struct DfuSeBootloader: Sendable {
    /// The state byte as sent. Usually a `DFUState`; the Gen2 UPLOAD-block-1 bug stores 0x0F here.
    var stateByte: UInt8 = DFUState.dfuIdle.rawValue
    var status: DFUStatusCode = .ok
    var pollTimeout: UInt32 = 0
    var stringIndex: UInt8 = 0
    var alt: UInt8 = 0
    var pointer: UInt32
    /// The DNLOAD waiting for GETSTATUS to execute it.
    var pending: (block: UInt16, data: [UInt8])?
    /// Gen2: a bad DfuSe command makes the ST library stall the next control transfer.
    var stallNext = false
    var errorString: String?

    static let errorStringIndex: UInt8 = 0xF0
    /// Particle Gen3 always uses USBD_DFU_TRANSFER_SIZE = 4096 in the block-number address formula.
    static let transferSize: UInt32 = 4096

    init(hardware: SimulatedHardware) {
        // ST: the pointer defaults to the flash start; Gen3 starts at 0.
        pointer = hardware.bootloader == .stm32f2 ? 0x0800_0000 : 0
    }

    var state: DFUState? { DFUState(rawValue: stateByte) }

    mutating func setState(_ s: DFUState) {
        stateByte = s.rawValue
        if s != .dfuError { stringIndex = 0 }
    }

    mutating func setError(_ code: DFUStatusCode, description: String? = nil) {
        status = code
        stateByte = DFUState.dfuError.rawValue
        errorString = description
        stringIndex = description == nil ? 0 : Self.errorStringIndex
    }

    var statusBytes: [UInt8] {
        [status.rawValue, UInt8(pollTimeout & 0xFF), UInt8(pollTimeout >> 8 & 0xFF), UInt8(pollTimeout >> 16 & 0xFF), stateByte, stringIndex]
    }
}

/// What handling one control transfer produced.
struct ControlOutcome: Sendable {
    enum Reply: Sendable {
        case data([UInt8])
        case stall
    }
    var reply: Reply
    /// Flash busy time started by this transfer (delays the next transfer).
    var busy: Duration = .zero
    /// Something the device does after the reply went out.
    var after: AfterReply?

    static func data(_ bytes: [UInt8], busy: Duration = .zero, after: AfterReply? = nil) -> ControlOutcome {
        ControlOutcome(reply: .data(bytes), busy: busy, after: after)
    }
    static let ok = ControlOutcome(reply: .data([]))
    static let stall = ControlOutcome(reply: .stall)
}

enum AfterReply: Sendable {
    /// Leave DFU: reset after `leaveDelay`, boot the application.
    case leaveDFU
    /// Normal mode: reset into DFU mode (control request 50).
    case enterDFU
    /// Reset and boot the application again.
    case reset
    /// Gen3 DETACH in DFU mode: the bootloader drops off the bus and re-attaches in DFU mode.
    case reattachDFU
}

/// What the bootloader works on for one request, and what it did.
struct BootloaderContext {
    var hardware: SimulatedHardware
    var memories: [SimulatedMemory]
    var isProtected: Bool
    /// Real seconds per modelled second (time scale × slowdown): scales the bwPollTimeout a device reports.
    var timeFactor: Double = 1
    /// The platform ID the bootloader checks a module's info against (Gen3 0xB4000 writes).
    var platformID: UInt16 = 0
    /// Fault injection: fail the operation numbered `failure.number` (counted across requests).
    var failure: SimulatedFaults.FailedOperation?
    var operationsBefore: Int
    var operationsExecuted = 0
    var sectorsErased = 0
    var bytesProgrammed = 0

    var layouts: [DfuSeMemoryLayout] { memories.map(\.layout) }

    /// Counts one executed DfuSe operation; returns the injected status if this is the one to fail.
    mutating func injectedFailure() -> DFUStatusCode? {
        operationsExecuted += 1
        guard let failure, operationsBefore + operationsExecuted == failure.number else { return nil }
        return failure.status
    }
}

extension DfuSeBootloader {
    /// A DFU class request (bmRequestType 0x21/0xA1).
    mutating func handleClassRequest(_ setup: ControlSetup, data: [UInt8], context: inout BootloaderContext) -> ControlOutcome {
        let isGen2 = context.hardware.bootloader == .stm32f2
        guard let request = DFURequest(rawValue: setup.request) else {
            if !isGen2 { setError(.errUnknown) }
            return .stall
        }
        // Undefined transition: Gen3 stalls and enters dfuERROR/errUNKNOWN; the ST library only stalls.
        func undefined() -> ControlOutcome {
            if !isGen2 { setError(.errUnknown) }
            return .stall
        }
        let current = state
        switch request {
        case .dnload:
            guard current == .dfuIdle || current == .dnloadIdle else { return undefined() }
            if setup.length > 0 {
                pending = (setup.value, Array(data.prefix(Int(setup.length))))
                setState(.dnloadSync)
            } else {
                setState(.manifestSync)
            }
            return .ok

        case .upload:
            guard current == .dfuIdle || current == .uploadIdle, setup.length > 0 else {
                if current == .dfuIdle || current == .uploadIdle { setState(.dfuIdle); return .data([]) }
                return undefined()
            }
            let length = Int(setup.length)
            if setup.value == 0 {
                let commands = context.hardware.dfuseCommands
                setState(isGen2 && length <= 3 ? .uploadIdle : .dfuIdle)
                pollTimeout = 0
                return .data(Array(commands.prefix(length)))
            }
            if setup.value == 1 {
                if isGen2 {
                    // ST library bug: stores STATUS_ERRSTALLEDPKT (0x0F) in the state byte, then stalls.
                    stateByte = DFUStatusCode.errStalledPkt.rawValue
                    return .stall
                }
                setError(.errUnknown)
                return .stall
            }
            if context.isProtected {
                setError(.errVendor, description: "Device is in protected mode")
                return .data([])
            }
            let address = UInt32(truncatingIfNeeded: (UInt64(setup.value) - 2) * UInt64(Self.transferSize) + UInt64(pointer))
            let memory = context.memories[Int(alt)]
            let readable = context.layouts[Int(alt)].segments(covering: address, length: length)?
                .allSatisfy { $0.attributes.contains(.readable) } ?? false
            if isGen2 {
                // MAL_Read of an unmapped address returns the stale transfer buffer; zeros stand in for it.
                setState(.uploadIdle)
                pollTimeout = 0
                return .data(readable ? memory.read(address, length: length) : [UInt8](repeating: 0, count: length))
            }
            guard gen3Validate(address, length: length, in: context.layouts[Int(alt)]), readable else {
                setError(.errUnknown)
                return .stall
            }
            setState(.uploadIdle)
            return .data(memory.read(address, length: length))

        case .getStatus:
            return getStatus(context: &context)

        case .clrStatus:
            if current == .dfuError {
                setState(.dfuIdle)
                status = .ok
                pollTimeout = 0
                errorString = nil
                return .ok
            }
            setError(.errUnknown)
            return isGen2 ? .ok : .stall

        case .getState:
            if !isGen2, current == .dnbusy || current == .manifest || current == .manifestWaitReset {
                setError(.errUnknown)
                return .stall
            }
            return .data([stateByte])

        case .detach where !isGen2:
            return gen3Detach()

        case .abort, .detach:
            let allowed: [DFUState?] = [.dfuIdle, .dnloadSync, .dnloadIdle, .manifestSync, .uploadIdle]
            guard allowed.contains(current) else { return isGen2 ? .ok : undefined() }
            setState(.dfuIdle)
            status = .ok
            pollTimeout = 0
            pending = nil
            return .ok
        }
    }

    /// Gen3 MAL `validate`: start and end must both lie in [start, end) of the alt — so a transfer
    /// that ends exactly at the end of the memory is refused (usbd_dfu_mal.cpp `end < END_ADDR`).
    private func gen3Validate(_ address: UInt32, length: Int, in layout: DfuSeMemoryLayout) -> Bool {
        guard let first = layout.segments.first, let last = layout.segments.last else { return false }
        let end = UInt64(address) + UInt64(length)
        return UInt64(address) >= UInt64(first.start) && UInt64(address) < last.end && end < last.end
            && layout.segments(covering: address, length: length) != nil
    }

    private mutating func getStatus(context: inout BootloaderContext) -> ControlOutcome {
        let isGen2 = context.hardware.bootloader == .stm32f2
        switch state {
        case .dnloadSync:
            guard let (block, payload) = pending else {
                // Gen2: the block was done in the previous status IN stage. bwPollTimeout is not
                // cleared: "the value stays in the status buffer for later replies until the next
                // DNBUSY" (dfu-protocol.md §5.3), so a DCT erase costs dfu-util 2 × 500 ms.
                setState(.dnloadIdle)
                return .data(statusBytes)
            }
            setState(.dnbusy)
            let timing = context.hardware.alts[Int(alt)].timing
            let isErase = block == 0 && payload.first == DfuSeCommand.eraseCode
            // Values from dfu-protocol.md §5.3 (see FlashTiming), scaled like every other delay.
            pollTimeout = context.reportedPoll(isErase ? timing.reportedPollAfterErase : timing.reportedPollOtherwise)
            if context.isProtected && !isGen2 && !(block == 0 && (payload.first == 0xFA || payload.first == 0xFB)) {
                setError(.errVendor, description: "Device is in protected mode")
                pending = nil
                return .data(statusBytes)
            }
            // The reply says dfuDNBUSY; the operation runs after it is sent (inDone / EP0_TxSent),
            // so its time shows as latency of the next transfer.
            let reply = statusBytes
            pending = nil
            let busy = execute(block: block, payload: payload, context: &context)
            return .data(reply, busy: busy)

        case .manifestSync:
            if isGen2 {
                // Reports dfuDNLOAD-IDLE "to get a nice output from dfu-util", then leaves.
                setState(.manifest)
                pollTimeout = 0
                var reply = statusBytes
                reply[4] = DFUState.dnloadIdle.rawValue
                setState(.manifestWaitReset)
                return .data(reply, after: .leaveDFU)
            }
            setState(.manifest)
            status = .ok
            let reply = statusBytes
            setState(.manifestWaitReset)
            return .data(reply, after: .leaveDFU)

        case .manifest:
            setState(.manifestWaitReset)
            return .data(statusBytes)

        case .dnbusy, .manifestWaitReset:
            if isGen2 { return .data(statusBytes) }
            setError(.errUnknown)
            return .stall

        default:
            return .data(statusBytes)
        }
    }

    /// Runs a DfuSe command or writes a data block; returns the flash busy time.
    private mutating func execute(block: UInt16, payload: [UInt8], context: inout BootloaderContext) -> Duration {
        let isGen2 = context.hardware.bootloader == .stm32f2
        let altIndex = Int(alt)
        let timing = context.hardware.alts[altIndex].timing
        let layout = context.layouts[altIndex]
        // Gen2 returns to dfuDNLOAD-SYNC (the next GETSTATUS says dfuDNLOAD-IDLE); Gen3 goes straight to dfuDNLOAD-IDLE.
        func done() {
            setState(isGen2 ? .dnloadSync : .dnloadIdle)
            if !isGen2 { status = .ok }
        }
        if block != 1, let injected = context.injectedFailure() {
            setError(injected)
            return .zero
        }
        if block == 0 {
            switch (payload.first, payload.count) {
            case (DfuSeCommand.getCommandsCode, _):
                // Gen3 leaves the state at dfuDNBUSY here (usbd_dfu.cpp has no transition for it).
                if isGen2 { done() }
                return .zero
            case (DfuSeCommand.setAddressPointerCode, 5):
                pointer = le32(payload, 1)
                done()
                return .zero
            case (DfuSeCommand.eraseCode, 5):
                let address = le32(payload, 1)
                if isGen2 { pointer = address }  // the ST library reuses Pointer for the erase address
                if context.hardware.alts[altIndex].kind == .dct { done(); return timing.eraseTime(sectorSize: 16 * 1024) }
                let erasable = layout.segment(containing: address)?.attributes.contains(.erasable) ?? false
                if isGen2 {
                    // MAL_Erase failures are ignored; write-protected or unmapped sectors stay as they are.
                    var busy = Duration.zero
                    if erasable, let size = context.memories[altIndex].eraseSector(containing: address) {
                        busy = timing.eraseTime(sectorSize: size)
                        context.sectorsErased += 1
                    }
                    done()
                    return busy
                }
                // usbd_dfu_mal.cpp only range-checks; that the flash HAL also refuses the read-only
                // ('a') MBR/bootloader pages is this simulator's assumption, not read from source.
                guard layout.segment(containing: address) != nil, erasable,
                      let size = context.memories[altIndex].eraseSector(containing: address) else {
                    setError(.errUnknown)
                    return .zero
                }
                context.sectorsErased += 1
                done()
                return timing.eraseTime(sectorSize: size)
            case (DfuSeCommand.eraseCode, 1):
                if isGen2 { stallNext = true; done(); return .zero }
                setError(.errTarget)  // mass erase unsupported
                return .zero
            case (0xFA, _) where !isGen2:
                setState(.manifestSync)  // enter safe mode on the next leave
                status = .ok
                return .zero
            case (0xFB, _) where !isGen2:
                done()
                return .zero
            case (DfuSeCommand.readUnprotectCode, _) where !isGen2:
                setError(.errUnknown)
                return .zero
            case (DfuSeCommand.setAddressPointerCode, _), (DfuSeCommand.eraseCode, _):
                if isGen2 { stallNext = true; done(); return .zero }
                setError(.errUnknown)
                return .zero
            default:
                if isGen2 { stallNext = true; done(); return .zero }
                setError(.errStalledPkt)
                return .zero
            }
        }
        if block == 1 {
            if isGen2 { done(); return .zero }  // ST library ignores DNLOAD block 1
            setError(.errTarget)
            pending = nil
            return .zero
        }
        let address = UInt32(truncatingIfNeeded: (UInt64(block) - 2) * UInt64(Self.transferSize) + UInt64(pointer))
        let writable = layout.segments(covering: address, length: payload.count)?.allSatisfy { $0.attributes.contains(.writable) } ?? false
        if isGen2 {
            // MAL_Write results are ignored: unmapped or write-protected addresses are not written,
            // unerased NOR keeps the AND of old and new bits; only a read-back shows it.
            if writable {
                context.memories[altIndex].program(address, payload)
                context.bytesProgrammed += payload.count
            }
            done()
            return writable ? timing.programTime(bytes: payload.count) : .zero
        }
        // As for erase: refusing read-only pages is an assumption beyond the MAL's range check.
        guard gen3Validate(address, length: payload.count, in: layout), writable else {
            setError(.errUnknown)
            return .zero
        }
        // hal_flash_write reports a failure when the programmed bytes do not read back (unerased NOR).
        context.bytesProgrammed += payload.count
        guard context.memories[altIndex].program(address, payload) else {
            setError(.errUnknown)
            return timing.programTime(bytes: payload.count)
        }
        done()
        return timing.programTime(bytes: payload.count)
            + invalidateCompatUserPart(after: address, payload: payload, alt: altIndex, context: &context)
    }
}

@inline(__always) func le32(_ b: [UInt8], _ i: Int) -> UInt32 {
    UInt32(b[i]) | UInt32(b[i + 1]) << 8 | UInt32(b[i + 2]) << 16 | UInt32(b[i + 3]) << 24
}
