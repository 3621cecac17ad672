import DeviceBus
import DFU
import Dispatch
import Foundation

// A simulated device's interface claims and control transfers (the requests a libusb handle makes).
extension SimulatedDevice {
    // MARK: - Interface claims (libusb_claim_interface / release)

    public enum ClaimOutcome: Sendable, Hashable {
        case claimed
        /// Another handle holds the interface (LIBUSB_ERROR_BUSY).
        case busy
        /// The session ended: re-enumerated or unplugged (LIBUSB_ERROR_NO_DEVICE).
        case gone
    }

    /// One handle at a time per interface, whether it comes in-process (`SimulatedFleet.open`)
    /// or through the libusb stand-in. Claiming again by the holder succeeds, as in libusb.
    func claimInterface(_ interface: UInt8, session: UInt64, owner: UInt64) -> ClaimOutcome {
        lock.withLock {
            guard attached, self.session == session else { return .gone }
            if let holder = claims[interface], holder != owner { return .busy }
            claims[interface] = owner
            return .claimed
        }
    }

    /// False if `owner` did not hold the interface in this session.
    @discardableResult
    func releaseInterface(_ interface: UInt8, session: UInt64, owner: UInt64) -> Bool {
        lock.withLock {
            guard attached, self.session == session, claims[interface] == owner else { return false }
            claims[interface] = nil
            return true
        }
    }

    // MARK: - Control transfers

    /// Phase 1: reserve the device's next free slot: once its flash is done, wire time on its
    /// TT (shared behind a single-TT hub, first come first served), then its turnaround; returns
    /// when the transfer completes. The wire is scaled by the time scale only (a slowed-down
    /// device does not slow the bus); the turnaround by the device's slowdown too.
    func reserve(session: UInt64, setup: ControlSetup) throws(USBTransferError) -> ContinuousClock.Instant? {
        try lock.locked { () throws(USBTransferError) -> ContinuousClock.Instant? in
            guard attached, self.session == session else { throw .disconnected }
            guard timeScale > 0 else { return nil }
            let now = ContinuousClock.now
            let start = max(now, busyUntil)
            let wire = hardware.usb.wireTime(bytes: Int(setup.length))
            let slot = translator.reserve(earliest: start, length: wire * timeScale, now: now)
            let ready = slot + wire * timeScale + scaled(hardware.usb.perTransfer)
            let waited = (slot - start) / timeScale
            stats.wireTime += wire
            stats.busWait += waited
            stats.modelledTime += wire + waited + hardware.usb.perTransfer * faults.slowdown
            busyUntil = ready
            return ready
        }
    }

    /// Phase 2: the device handles the transfer.
    func execute(session: UInt64, setup: ControlSetup, data: [UInt8]) throws(USBTransferError) -> [UInt8] {
        var events: [BusEvent] = []
        let result: Result<[UInt8], USBTransferError> = lock.withLock {
            guard attached, self.session == session else { return .failure(.disconnected) }
            stats.controlTransfers += 1
            transfersSinceFaults += 1
            if let limit = faults.disconnectAfterTransfers, transfersSinceFaults > limit {
                if let event = detachLocked() { events.append(event) }
                return .failure(.disconnected)
            }
            if let stallAt = faults.stallTransfer, transfersSinceFaults == stallAt {
                faults.stallTransfer = nil
                if mode == .dfu { bootloader.setError(.errStalledPkt) }
                return .failure(.stall)
            }
            if mode == .dfu && bootloader.stallNext {
                bootloader.stallNext = false
                return .failure(.stall)
            }
            let outcome = handleLocked(setup, data: data)
            if outcome.busy > .zero && timeScale > 0 {
                busyUntil = max(busyUntil, ContinuousClock.now) + scaled(outcome.busy)
                stats.modelledTime += outcome.busy * faults.slowdown
            }
            if timeScale > 0, mode == .dfu, setup.request == DFURequest.getStatus.rawValue, setup.requestType == 0xA1,
               case .data(let reply) = outcome.reply, reply.count == 6 {
                // The host sleeps the reported bwPollTimeout: device-bound time, in modelled ms.
                let reported = Double(UInt32(reply[1]) | UInt32(reply[2]) << 8 | UInt32(reply[3]) << 16)
                stats.modelledTime += .milliseconds(reported / (timeScale * faults.slowdown))
            }
            if let after = outcome.after { schedule(after, session: session) }
            switch outcome.reply {
            case .stall:
                return .failure(.stall)
            case .data(let bytes):
                return .success(setup.isDeviceToHost ? Array(bytes.prefix(Int(setup.length))) : [])
            }
        }
        events.forEach(notify)
        return try result.get()
    }

    func handleLocked(_ setup: ControlSetup, data: [UInt8]) -> ControlOutcome {
        let type = setup.requestType & 0x60
        let recipient = setup.requestType & 0x1F
        switch (type, mode) {
        case (0x00, _):
            if setup.request == 11 && recipient == 1 { return setInterfaceLocked(setup) }
            if setup.request == 6, setup.value >> 8 == 3, setup.value & 0xFF == UInt16(DfuSeBootloader.errorStringIndex),
               mode == .dfu, let message = bootloader.errorString {
                return .data(Array(USBStringDescriptor.encode(message).prefix(Int(setup.length))))
            }
            return descriptorsLocked().handleStandard(setup)
        case (0x20, .dfu) where recipient == 1 && setup.index == 0:
            let failure = faults.failOperation
            let before = operationsSinceFaults
            // Hand the memories over (not a copy) so the bootloader mutates them in place.
            var context = BootloaderContext(hardware: hardware, memories: memories, isProtected: protected,
                                            timeFactor: timeScale * faults.slowdown, platformID: platform.id,
                                            failure: failure, operationsBefore: before)
            memories = []
            let outcome = bootloader.handleClassRequest(setup, data: data, context: &context)
            memories = context.memories
            operationsSinceFaults += context.operationsExecuted
            if let failure, operationsSinceFaults >= failure.number { faults.failOperation = nil }
            stats.sectorsErased += context.sectorsErased
            stats.bytesProgrammed += context.bytesProgrammed
            return outcome
        case (0x40, .normal) where recipient == 0:
            return runtime.handleVendor(setup, data: data, deviceID: deviceID, cloudStatus: cloudStatusLocked().rawValue)
        default:
            return .stall
        }
    }

    func setInterfaceLocked(_ setup: ControlSetup) -> ControlOutcome {
        switch mode {
        case .dfu:
            guard setup.index == 0, Int(setup.value) < hardware.alts.count else { return .stall }
            bootloader.alt = UInt8(setup.value)
            return .ok
        case .normal:
            return setup.value == 0 && setup.index < 3 ? .ok : .stall
        }
    }

    /// libusb_reset_device: a bootloader waiting for reset leaves DFU; otherwise the device
    /// re-enumerates in the same mode.
    func usbReset(session: UInt64) throws(USBTransferError) {
        let (event, leaving) = try lock.locked { () throws(USBTransferError) -> (BusEvent?, Bool) in
            guard attached, self.session == session else { throw .disconnected }
            let leaving = mode == .dfu && bootloader.state == .manifestWaitReset
            return (detachLocked(), leaving)
        }
        notify(event)
        let target = leaving ? USBMode.normal : currentMode
        let factor = lock.withLock { timeScale * faults.slowdown }
        queue.asyncAfter(deadline: deadline(after: hardware.usb.reenumeration, factor: factor)) {
            if leaving { self.bootApplication(factor: factor) } else { self.attach(target) }
        }
    }
}
