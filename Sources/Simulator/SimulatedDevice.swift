import ParticleDevice
import DFU
import DeviceBus
import ParticlePlatform
import DeviceKeys
import Dispatch
import FailurePolicy
import Foundation
import HexEncoding

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
        /// Gen2 resets after making a key at boot (device-os-keys.md §1.6).
        public var resetsAfterKeyGeneration = 0
        public var cloudConnections = 0
        /// Modelled (unscaled) time on the full-speed wire, and waiting for a shared TT.
        public var wireTime = Duration.zero
        public var busWait = Duration.zero
        /// Device-bound modelled time: every delay the device imposed (transfer turnaround,
        /// wire, bus wait, flash busy, reported poll timeouts, re-enumeration and boot). What a
        /// batch would take with an infinitely fast host. Counted only at a time scale above 0.
        public var modelledTime = Duration.zero
        /// The part of `modelledTime` after the last leave-DFU request was answered (the detach,
        /// the application's boot, a Gen2 reset after generating a key): a batch's wall ends at
        /// that answer (the station does not wait for the boot), so its device-bound limit must too.
        public var modelledTimeAfterLeave = Duration.zero
        /// `modelledTime` up to the answer to the last leave-DFU request: the event a batch ends on.
        public var modelledTimeToLeave: Duration { modelledTime - modelledTimeAfterLeave }
    }

    let queue: DispatchQueue
    let lock = NSLock()
    // Everything below is guarded by `lock`.
    var mode: USBMode
    var attached: Bool
    var session: UInt64 = 1
    var busyUntil = ContinuousClock.now
    var memories: [SimulatedMemory]
    var protected: Bool
    var faults: SimulatedFaults
    var transfersSinceFaults = 0
    var operationsSinceFaults = 0
    var bootloader: DfuSeBootloader
    var runtime = DeviceOSRuntime()
    var stats = Statistics()
    /// The transaction translator that carries this device's transfers (its own unless a fleet
    /// puts it behind a single-TT hub).
    var translator = TransactionTranslator()
    /// When the application connects to the cloud (and a Gen3 device makes a missing key).
    public let cloudConnection: CloudConnection
    var busObserver: (@Sendable (SimulatedDevice, BusEvent) -> Void)?
    /// Interface → the handle (owner token) holding it, for the current session only: a
    /// re-enumeration ends every claim, as it ends every libusb handle.
    var claims: [UInt8: UInt64] = [:]
    /// The simulated cloud its application connects to (nil: the cloud is not modelled and every
    /// connection succeeds), and the outcome of the handshake of the current session.
    var cloudLink: SimulatedCloudLink?
    var cloud = DeviceCloudState()

    /// Creates a device, attached (plugged in) in `mode`. A device created in normal mode checks
    /// its key slot as Device OS does when it starts (on its own queue).
    public init(platform: Platform, deviceID: String? = nil, mode: USBMode = .dfu, protected: Bool = false,
                faults: SimulatedFaults = .none, timeScale: Double = 1, seed: UInt64 = 0,
                cloudConnection: CloudConnection = .standard, cloudLink: SimulatedCloudLink? = nil,
                factoryKey: DevicePrivateKey? = nil) throws(SimulatorError) {
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
        self.cloudConnection = cloudConnection
        self.cloudLink = cloudLink
        // A key put in at Particle's factory is there before the device first boots.
        if let factoryKey { installKeyLocked(factoryKey) }
        if mode == .normal { applicationAlreadyRunning() }
    }

    /// A device ID in the platform's pattern (device-os-keys.md §3), derived from `seed`.
    public static func makeDeviceID(platform: Platform, seed: UInt64) -> String {
        var rng = SplitMix64(seed: seed ^ UInt64(platform.id) << 48)
        let prefix = platform.deviceIDPrefix ?? ""
        var id = prefix
        while id.count < 24 {
            let byte = UInt8(truncatingIfNeeded: rng.next())
            id += Hex.encode([byte])
        }
        return String(id.prefix(24))
    }

    public var description: String { "simulated \(platform.name) \(deviceID)" }

    // MARK: - Observation

    /// Set by the fleet; called (outside the lock) on every attach/detach.
    func setBusObserver(_ observer: (@Sendable (SimulatedDevice, BusEvent) -> Void)?) {
        lock.withLock { busObserver = observer }
    }

    /// Set by the fleet when the device is plugged in behind a hub.
    func setTranslator(_ translator: TransactionTranslator) {
        lock.withLock { self.translator = translator }
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

    func descriptorsLocked(_ mode: USBMode? = nil) -> SimulatedDescriptors {
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
        let delay = mode == .normal ? hardware.usb.boot : hardware.usb.reenumeration
        let factor = lock.withLock { timeScale * faults.slowdown }
        queue.asyncAfter(deadline: deadline(after: delay, factor: factor)) {
            if mode == .normal { self.bootApplication(factor: factor) } else { self.attach(mode) }
        }
    }

    // MARK: - Enumeration

    func detachLocked() -> BusEvent? {
        guard attached else { return nil }
        attached = false
        claims = [:]
        return .detached(session: session)
    }

    func attach(_ newMode: USBMode) {
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

    func notify(_ event: BusEvent?) {
        guard let event else { return }
        let observer = lock.withLock { busObserver }
        observer?(self, event)
    }

    /// Runs what the device does after a reply (called with the lock held; work goes to the queue).
    func schedule(_ action: AfterReply, session: UInt64) {
        let usb = hardware.usb
        let neverBack = faults.noReenumerationAfterLeave
        let factor = timeScale * faults.slowdown
        switch action {
        case .leaveDFU, .reset:
            // Both detach, then boot the application and come back in normal mode. 20 ms from
            // the reply to the reset: an assumption.
            let detachAfter = action == .leaveDFU ? usb.leaveDelay : .milliseconds(20)
            if timeScale > 0 {
                stats.modelledTime += (detachAfter + usb.boot) * faults.slowdown
                stats.modelledTimeAfterLeave = action == .leaveDFU ? (detachAfter + usb.boot) * faults.slowdown : .zero
            }
            queue.asyncAfter(deadline: deadline(after: detachAfter, factor: factor)) {
                let event = self.lock.withLock { self.session == session ? self.detachLocked() : nil }
                self.notify(event)
                guard event != nil, !neverBack else { return }
                self.queue.asyncAfter(deadline: self.deadline(after: usb.boot, factor: factor)) {
                    self.bootApplication(factor: factor)
                }
            }
        case .enterDFU, .reattachDFU:
            // Request 50 (normal mode) or a Gen3 DETACH in DFU mode: off the bus after 20 ms (an
            // assumption), back in DFU mode after a re-enumeration.
            if timeScale > 0 { stats.modelledTime += (.milliseconds(20) + usb.reenumeration) * faults.slowdown }
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

    func scaled(_ duration: Duration) -> Duration {
        duration * (timeScale * faults.slowdown)
    }

    func deadline(after duration: Duration, factor: Double) -> DispatchTime {
        let seconds = Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
        return .now() + seconds * factor
    }
}
