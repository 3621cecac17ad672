import DFU
import DeviceKeys
import Dispatch
import FailurePolicy
import Foundation
import ParticleDevice

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

/// A virtual Particle device: USB descriptors in normal and DFU mode, the bootloader's DfuSe state
/// machine, flash and DCT with a timing model, Device OS key generation at boot, and faults.
///
/// Threading: state sits behind a lock; time is spent in `Task.sleep` (async transfers) or in
/// `Thread.sleep` on the caller's own thread (blocking transfers), never by spinning, never holding
/// the lock. Delayed device actions (reset, re-enumeration, key generation) run on the device's own
/// serial dispatch queue, off Swift's cooperative pool.
public final class SimulatedDevice: @unchecked Sendable, CustomStringConvertible {
    public let platform: Platform
    public let deviceID: String
    public let hardware: SimulatedHardware
    /// Real seconds per modelled second: 1 = real time, 0.01 = a hundred times faster, 0 = no delays.
    public let timeScale: Double

    /// A change on the device's USB connection.
    public enum BusEvent: Sendable, Hashable {
        case attached(session: UInt64, mode: USBMode)
        case detached(session: UInt64)
    }

    /// Counters a test or benchmark can look at.
    public struct Statistics: Sendable, Hashable {
        public var controlTransfers = 0
        public var keysGenerated = 0
        public var enumerations = 0
        public var sectorsErased = 0
        public var bytesProgrammed = 0
    }

    let queue: DispatchQueue
    private let lock = NSLock()
    // Everything below is guarded by `lock`.
    private var mode: USBMode
    private var attached: Bool
    private var session: UInt64 = 1
    private var busyUntil = ContinuousClock.now
    private var memories: [SimulatedMemory]
    private var protected: Bool
    private var faults: SimulatedFaults
    private var transfersSinceFaults = 0
    private var operationsSinceFaults = 0
    private var bootloader: DfuSeBootloader
    private var runtime = DeviceOSRuntime()
    private var stats = Statistics()
    private var busObserver: (@Sendable (SimulatedDevice, BusEvent) -> Void)?
    /// Interface → the handle (owner token) holding it, for the current session only: a
    /// re-enumeration ends every claim, as it ends every libusb handle.
    private var claims: [UInt8: UInt64] = [:]

    /// Creates a device, attached (plugged in) in `mode`. A device created in normal mode checks
    /// its key slot as Device OS does when it starts (on its own queue).
    public init(platform: Platform, deviceID: String? = nil, mode: USBMode = .dfu, protected: Bool = false,
                faults: SimulatedFaults = .none, timeScale: Double = 1, seed: UInt64 = 0) throws(SimulatorError) {
        guard let hardware = SimulatedHardware.forPlatform(platform) else { throw .unsupportedPlatform(platform.name) }
        let id = deviceID?.lowercased() ?? Self.makeDeviceID(platform: platform, seed: seed)
        guard platform.isValidDeviceID(id) else { throw .invalidDeviceID(id, platform: platform.name) }
        self.platform = platform
        self.deviceID = id
        self.hardware = hardware
        self.timeScale = max(0, timeScale)
        self.queue = DispatchQueue(label: "keyline.simulator.\(id)")
        self.mode = mode
        self.attached = true
        self.protected = protected
        self.faults = faults
        self.memories = hardware.alts.map { alt in
            // The layout strings are constants of this file's hardware table and always parse.
            SimulatedMemory(layout: try! DfuSeMemoryLayout(parsing: alt.layoutString), kind: alt.kind)
        }
        self.bootloader = DfuSeBootloader(hardware: hardware)
        if mode == .normal { queue.async { self.startApplication() } }
    }

    /// A device ID in the platform's pattern (device-os-keys.md §3), derived from `seed`.
    public static func makeDeviceID(platform: Platform, seed: UInt64) -> String {
        var rng = SplitMix64(seed: seed ^ UInt64(platform.id) << 48)
        let prefix = platform.deviceIDPrefix ?? ""
        var id = prefix
        while id.count < 24 {
            let byte = UInt8(truncatingIfNeeded: rng.next())
            id += (byte < 16 ? "0" : "") + String(byte, radix: 16)
        }
        return String(id.prefix(24))
    }

    public var description: String { "simulated \(platform.name) \(deviceID)" }

    // MARK: - Observation

    /// Set by the fleet; called (outside the lock) on every attach/detach.
    func setBusObserver(_ observer: (@Sendable (SimulatedDevice, BusEvent) -> Void)?) {
        lock.withLock { busObserver = observer }
    }

    public var currentMode: USBMode { lock.withLock { mode } }
    public var isAttached: Bool { lock.withLock { attached } }
    public var isProtected: Bool { lock.withLock { protected } }
    public var statistics: Statistics { lock.withLock { stats } }
    public var currentFaults: SimulatedFaults { lock.withLock { faults } }

    /// The VID:PID the device currently enumerates with.
    public var currentProductID: UInt16 { platform.productID(currentMode) }

    /// A transport for the current enumeration, or nil while the device is off the bus. It stops
    /// working (`.disconnected`) when the device re-enumerates, as a libusb handle would.
    public var transport: SimulatedTransport? {
        lock.withLock { attached ? SimulatedTransport(device: self, session: session) : nil }
    }

    func isCurrent(_ session: UInt64) -> Bool { lock.withLock { attached && self.session == session } }
    func currentSession() -> UInt64? { lock.withLock { attached ? session : nil } }

    /// Descriptors of the current mode (what enumeration reads).
    func descriptors() -> SimulatedDescriptors {
        lock.withLock { descriptorsLocked() }
    }

    /// Descriptors the device presents in `mode`.
    func descriptors(for mode: USBMode) -> SimulatedDescriptors {
        lock.withLock { descriptorsLocked(mode) }
    }

    private func descriptorsLocked(_ mode: USBMode? = nil) -> SimulatedDescriptors {
        switch mode ?? self.mode {
        case .normal:
            return .normal(platform: platform, deviceID: deviceID)
        case .dfu:
            let strings = hardware.alts.map { alt in protected ? (alt.protectedLayoutString ?? alt.layoutString) : alt.layoutString }
            return .dfu(platform: platform, hardware: hardware, deviceID: deviceID, layoutStrings: strings, isProtected: protected)
        }
    }

    public var deviceDescriptor: [UInt8] { descriptors().device }
    public var configurationDescriptor: [UInt8] { descriptors().configuration }

    // MARK: - Test and bench access (no USB, no timing)

    public func readMemory(alt: UInt8, address: UInt32, length: Int) throws(SimulatorError) -> [UInt8] {
        try lock.locked { () throws(SimulatorError) -> [UInt8] in
            guard Int(alt) < memories.count else { throw .noSuchAlt(alt) }
            return memories[Int(alt)].read(address, length: length)
        }
    }

    /// Writes memory directly (as a factory programmer would); erases first for NOR flash.
    public func writeMemory(alt: UInt8, address: UInt32, bytes: [UInt8]) throws(SimulatorError) {
        try lock.locked { () throws(SimulatorError) in
            guard Int(alt) < memories.count else { throw .noSuchAlt(alt) }
            memories[Int(alt)].overwrite(address, bytes)
        }
    }

    /// The private-key slot of the platform, as DFU alt 1 would read it.
    public func privateKeySlot() -> [UInt8] {
        let slot = platform.privateKeySlot
        return (try? readMemory(alt: 1, address: UInt32(slot.offset), length: slot.size)) ?? []
    }

    public func setFaults(_ faults: SimulatedFaults) {
        lock.withLock {
            self.faults = faults
            transfersSinceFaults = 0
            operationsSinceFaults = 0
        }
    }

    /// Protected Device mode (Device OS 6.x, Gen3/rtl872x): layouts say `…Kb`, UPLOAD/DNLOAD → errVENDOR.
    public func setProtected(_ isProtected: Bool) {
        lock.withLock { protected = isProtected && hardware.bootloader == .particleGen3 }
    }

    /// Fills the private-key slot with non-blank garbage derived from `seed` (first byte 0x30, a
    /// DER SEQUENCE tag, so it looks like a key but does not parse). Device OS leaves such a slot alone.
    public func corruptKeySlot(seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        let slot = platform.privateKeySlot
        var garbage = (0..<slot.size).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        garbage[0] = 0x30
        garbage[1] = 0x82
        garbage[2] = 0xFF
        garbage[3] = 0xFF
        try? writeMemory(alt: 1, address: UInt32(slot.offset), bytes: garbage)
    }

    // MARK: - Physical actions

    /// Unplug: the device leaves the bus until `plugIn`.
    public func unplug() {
        let event = lock.withLock { detachLocked() }
        notify(event)
    }

    /// Plug in (or power-cycle): the application boots (normal mode), or the bootloader starts when
    /// `mode` is .dfu (as when the MODE button is held). Clears an injected disconnect.
    public func plugIn(mode: USBMode = .normal) {
        let event = lock.withLock { () -> BusEvent? in
            faults.disconnectAfterTransfers = nil
            return detachLocked()
        }
        notify(event)
        queue.asyncAfter(deadline: dispatchDeadline(after: mode == .normal ? hardware.usb.boot : hardware.usb.reenumeration)) {
            if mode == .normal { self.startApplication() }
            self.attach(mode)
        }
    }

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

    /// Phase 1: reserve the device's next free slot on the bus; returns when the transfer completes.
    func reserve(session: UInt64, setup: ControlSetup) throws(USBTransferError) -> ContinuousClock.Instant? {
        try lock.locked { () throws(USBTransferError) -> ContinuousClock.Instant? in
            guard attached, self.session == session else { throw .disconnected }
            guard timeScale > 0 else { return nil }
            let bytes = Int(setup.length)
            let start = max(ContinuousClock.now, busyUntil)
            let ready = start + scaled(hardware.usb.transferTime(bytes: bytes))
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

    private func handleLocked(_ setup: ControlSetup, data: [UInt8]) -> ControlOutcome {
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
            return runtime.handleVendor(setup, data: data, deviceID: deviceID)
        default:
            return .stall
        }
    }

    private func setInterfaceLocked(_ setup: ControlSetup) -> ControlOutcome {
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
        queue.asyncAfter(deadline: dispatchDeadline(after: hardware.usb.reenumeration)) {
            if target == .normal && leaving { self.startApplication() }
            self.attach(target)
        }
    }

    // MARK: - Enumeration

    private func detachLocked() -> BusEvent? {
        guard attached else { return nil }
        attached = false
        claims = [:]
        return .detached(session: session)
    }

    private func attach(_ newMode: USBMode) {
        let event = lock.withLock { () -> BusEvent? in
            if let limit = faults.disconnectAfterTransfers, transfersSinceFaults > limit { return nil }
            mode = newMode
            session += 1
            attached = true
            bootloader = DfuSeBootloader(hardware: hardware)
            runtime = DeviceOSRuntime()
            stats.enumerations += 1
            return .attached(session: session, mode: newMode)
        }
        notify(event)
    }

    private func notify(_ event: BusEvent?) {
        guard let event else { return }
        let observer = lock.withLock { busObserver }
        observer?(self, event)
    }

    /// Runs what the device does after a reply (called with the lock held; work goes to the queue).
    private func schedule(_ action: AfterReply, session: UInt64) {
        let usb = hardware.usb
        let neverBack = faults.noReenumerationAfterLeave
        let factor = timeScale * faults.slowdown
        switch action {
        case .leaveDFU, .reset:
            // Both detach, then boot the application and come back in normal mode.
            let detachAfter = action == .leaveDFU ? usb.leaveDelay : .milliseconds(20)
            queue.asyncAfter(deadline: deadline(after: detachAfter, factor: factor)) {
                let event = self.lock.withLock { self.session == session ? self.detachLocked() : nil }
                self.notify(event)
                guard event != nil, !neverBack else { return }
                self.queue.asyncAfter(deadline: self.deadline(after: usb.boot, factor: factor)) {
                    self.startApplication()
                    self.attach(.normal)
                }
            }
        case .enterDFU:
            queue.asyncAfter(deadline: deadline(after: .milliseconds(20), factor: factor)) {
                let event = self.lock.withLock { self.session == session ? self.detachLocked() : nil }
                self.notify(event)
                guard event != nil else { return }
                self.queue.asyncAfter(deadline: self.deadline(after: usb.reenumeration, factor: factor)) {
                    self.attach(.dfu)
                }
            }
        }
    }

    private func scaled(_ duration: Duration) -> Duration {
        duration * (timeScale * faults.slowdown)
    }

    /// Deadline for a delayed device action; must not be called with the lock held.
    private func dispatchDeadline(after duration: Duration) -> DispatchTime {
        deadline(after: duration, factor: lock.withLock { timeScale * faults.slowdown })
    }

    private func deadline(after duration: Duration, factor: Double) -> DispatchTime {
        let seconds = Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
        return .now() + seconds * factor
    }

    // MARK: - Device OS at start

    /// What Device OS does with keys when it starts (device-os-keys.md §1.6): a key slot whose
    /// first byte is 0xFF is blank, so it generates a key for the platform's protocol (RSA-1024 for
    /// TCP, EC P-256 for UDP), writes it and the derived public key; any other first byte (even a
    /// corrupt key) is left alone. Gen2 also copies its UID to the DCT device-ID field.
    func startApplication() {
        let slot = platform.privateKeySlot
        let blank = lock.withLock { memories[1].read(UInt32(slot.offset), length: 1) == [0xFF] }
        if hardware.savesDeviceIDInDCT {
            lock.withLock {
                let field = DCTLayout.deviceID
                if memories[1].read(UInt32(field.offset), length: 1) == [0xFF] {
                    memories[1].overwrite(UInt32(field.offset), hexBytes(deviceID))
                }
            }
        }
        guard blank, let key = try? DevicePrivateKey.generate(platform.keyAlgorithm) else { return }
        let (slotBytes, publicField) = Self.deviceOSEncoding(of: key, platform: platform)
        lock.withLock {
            // Re-check: nothing may have written the slot while the key was being generated.
            guard memories[1].read(UInt32(slot.offset), length: 1) == [0xFF] else { return }
            memories[1].overwrite(UInt32(slot.offset), slotBytes)
            memories[1].overwrite(UInt32(platform.devicePublicKeySlot.offset), publicField)
            stats.keysGenerated += 1
        }
    }

    /// The bytes Device OS writes for a freshly generated key (device-os-keys.md §1.3):
    /// - TCP: the PKCS#1 DER in a 612-byte write (rest 0xFF); public key: SPKI DER, 0x00-padded to 384.
    /// - UDP: 192 bytes: the SEC1 DER moved to the front of the buffer mbedtls wrote it at the end of,
    ///   so the tail is a leftover copy of the DER's own end; public key: 128 bytes with the 91-byte
    ///   SPKI at the end (mbedtls_pk_write_pubkey_der writes backwards; an inference in the reference).
    static func deviceOSEncoding(of key: DevicePrivateKey, platform: Platform) -> (slot: [UInt8], publicKey: [UInt8]) {
        let der = key.der
        let publicSlot = platform.devicePublicKeySlot
        let spki = key.publicKey.spkiDER
        switch platform.cloudProtocol {
        case .tcp:
            let slot = der + [UInt8](repeating: 0xFF, count: max(0, 612 - der.count))
            let publicField = spki + [UInt8](repeating: 0x00, count: max(0, publicSlot.size - spki.count))
            return (Array(slot.prefix(612)), Array(publicField.prefix(publicSlot.size)))
        case .udp:
            let size = platform.privateKeySlot.size
            var buffer = [UInt8](repeating: 0x00, count: size)
            let start = max(0, size - der.count)
            for (i, b) in der.prefix(size).enumerated() { buffer[start + i] = b }
            for (i, b) in der.prefix(size).enumerated() { buffer[i] = b }
            var publicField = [UInt8](repeating: 0x00, count: publicSlot.size)
            let pstart = max(0, publicSlot.size - spki.count)
            for (i, b) in spki.prefix(publicSlot.size).enumerated() { publicField[pstart + i] = b }
            return (buffer, publicField)
        }
    }

    // MARK: - Persistence

    struct Record: Codable {
        var platform: String
        var deviceID: String
        var mode: USBMode
        var protected: Bool
        var faults: SimulatedFaults
        var pages: [[UInt32]]
    }

    /// Saves the device (identity, mode, memories) to `directory`, one JSON record and one binary
    /// file per alt holding the written 4 KB pages.
    public func save(to directory: URL) throws(SimulatorError) {
        let (record, contents) = lock.withLock { () -> (Record, [[UInt8]]) in
            var pageLists: [[UInt32]] = []
            var contents: [[UInt8]] = []
            for memory in memories {
                let keys = memory.pages.keys.sorted()
                pageLists.append(keys)
                contents.append(keys.flatMap { memory.pages[$0]! })
            }
            return (Record(platform: platform.name, deviceID: deviceID, mode: mode, protected: protected, faults: faults,
                           pages: pageLists), contents)
        }
        do {
            // alt1.bin is the DCT, with the device's private key: owner-only, like a key file.
            try PrivateStateFiles.makeDirectory(directory)
            for (i, bytes) in contents.enumerated() {
                try PrivateStateFiles.write(Data(bytes), to: directory.appendingPathComponent("alt\(i).bin"))
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try PrivateStateFiles.write(encoder.encode(record), to: directory.appendingPathComponent("device.json"))
        } catch {
            throw .stateFile(path: directory.path, detail: "\(error)")
        }
    }

    /// Loads a device saved with `save(to:)`. It comes back attached, in the mode it was saved in.
    public static func load(from directory: URL, timeScale: Double = 1) throws(SimulatorError) -> SimulatedDevice {
        let record: Record
        var contents: [[UInt8]] = []
        do {
            record = try JSONDecoder().decode(Record.self, from: Data(contentsOf: directory.appendingPathComponent("device.json")))
            for i in record.pages.indices {
                contents.append([UInt8](try Data(contentsOf: directory.appendingPathComponent("alt\(i).bin"))))
            }
        } catch {
            throw .stateFile(path: directory.path, detail: "\(error)")
        }
        let platform: Platform
        do { platform = try Platform.named(record.platform) } catch { throw .unsupportedPlatform(record.platform) }
        let device = try SimulatedDevice(platform: platform, deviceID: record.deviceID, mode: .dfu, protected: record.protected,
                                         faults: record.faults, timeScale: timeScale)
        try device.lock.locked { () throws(SimulatorError) in
            for (alt, pages) in record.pages.enumerated() where alt < device.memories.count {
                let bytes = contents[alt]
                guard bytes.count == pages.count * SimulatedMemory.pageSize else {
                    throw .stateFile(path: directory.path, detail: "alt\(alt).bin has \(bytes.count) bytes for \(pages.count) pages")
                }
                var restored: [UInt32: [UInt8]] = [:]
                for (i, page) in pages.enumerated() {
                    restored[page] = Array(bytes[i * SimulatedMemory.pageSize..<(i + 1) * SimulatedMemory.pageSize])
                }
                device.memories[alt].restore(pages: restored)
            }
            device.mode = record.mode
        }
        if record.mode == .normal { device.queue.async { device.startApplication() } }
        return device
    }
}

private func hexBytes(_ hex: String) -> [UInt8] {
    var out: [UInt8] = []
    var index = hex.startIndex
    while index < hex.endIndex, let next = hex.index(index, offsetBy: 2, limitedBy: hex.endIndex) {
        out.append(UInt8(hex[index..<next], radix: 16) ?? 0)
        index = next
    }
    return out
}

extension SimulatedMemory {
    /// Direct write with no flash rules (DCT semantics): used by factory programming and Device OS.
    mutating func overwrite(_ address: UInt32, _ bytes: [UInt8]) {
        if kind == .norFlash {
            var copy = SimulatedMemory(layout: layout, kind: .dct)
            copy.restore(pages: pages)
            copy.program(address, bytes)
            restore(pages: copy.pages)
        } else {
            program(address, bytes)
        }
    }
}

/// Simulator state on disk holds generated private keys (the DCT), so folders are created 0700
/// and files 0600, whatever the umask.
enum PrivateStateFiles {
    /// Creates `directory` (and missing parents) owner-only; an existing one is made owner-only too.
    static func makeDirectory(_ directory: URL) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        try FileManager.default.setAttributes([.posixPermissions: 0o700], ofItemAtPath: directory.path)
    }

    /// Writes atomically (a temporary file renamed over `file`, inside an owner-only folder), then
    /// makes the file owner-only.
    static func write(_ data: Data, to file: URL) throws {
        try data.write(to: file, options: .atomic)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: file.path)
    }
}
