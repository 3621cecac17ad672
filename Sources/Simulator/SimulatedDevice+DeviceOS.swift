import DeviceKeys
import Dispatch
import Foundation
import ParticlePlatform
import HexEncoding

/// When the simulated Device OS makes its key (device-os-keys.md §1.6, "Callers"):
/// - Gen2 at boot: `application_start()` → `generate_key()` with a blank slot; "**The device
///   resets after generating a key.**"
/// - every platform when it starts a cloud connection (`Spark_Protocol_Init()`); "On Gen3 this is
///   the only place keys are generated, so a blank device generates its key the first time it
///   starts a cloud connection." A Gen3 device that went from a blank DCT straight to DFU mode
///   has no key to read.
/// "Blank" is the first byte of the slot being 0xFF; a corrupt key is left alone.
extension SimulatedDevice {
    /// When a normal-mode device connects to the cloud.
    public enum CloudConnection: Sendable, Hashable {
        /// After the platform's modelled delay (`USBTiming.cloudConnection`, an assumption).
        case standard
        /// After this long (modelled time, scaled like every delay) from the application's start.
        case after(Duration)
        /// Never (no network): a blank Gen3 device never makes a key.
        case never
    }

    var cloudDelay: Duration? {
        switch cloudConnection {
        case .standard: hardware.usb.cloudConnection
        case .after(let delay): delay
        case .never: nil
        }
    }

    /// A device created or loaded in normal mode: its application is already running. Gen2 with a
    /// blank slot makes its key now (the reset that followed is taken as already done: the device
    /// is on the bus from the start); the cloud connection follows after its delay.
    func applicationAlreadyRunning() {
        queue.async {
            self.copyDeviceIDToDCT()
            if self.hardware.generatesKeyAtBoot { _ = self.generateKeyIfBlank() }
            if let session = self.currentSession() { self.scheduleCloudConnection(session: session) }
        }
    }

    /// Boots the application and enumerates in normal mode (on the device's queue). A Gen2 device
    /// that generated its key resets: one more boot before it enumerates.
    func bootApplication(factor: Double) {
        copyDeviceIDToDCT()
        if hardware.generatesKeyAtBoot, generateKeyIfBlank() {
            let boot = hardware.usb.boot
            lock.withLock {
                stats.resetsAfterKeyGeneration += 1
                stats.modelledTime += boot
                stats.modelledTimeAfterLeave += boot
            }
            queue.asyncAfter(deadline: deadline(after: boot, factor: factor)) { self.bootApplication(factor: factor) }
            return
        }
        attach(.normal)
        if let session = currentSession() { scheduleCloudConnection(session: session) }
    }

    private func scheduleCloudConnection(session: UInt64) {
        guard let delay = cloudDelay else { return }
        let factor = lock.withLock { timeScale * faults.slowdown }
        queue.asyncAfter(deadline: deadline(after: delay, factor: factor)) {
            _ = self.connectToCloud(session: session)
        }
    }

    /// The cloud connection now, if the application runs (normal mode): generates a missing key.
    /// Returns false in DFU mode or off the bus. Tests use it to skip the modelled delay.
    @discardableResult
    public func connectToCloud() -> Bool {
        guard let session = currentSession() else { return false }
        return connectToCloud(session: session)
    }

    private func connectToCloud(session: UInt64) -> Bool {
        let running = lock.withLock { attached && self.session == session && mode == .normal }
        guard running else { return false }
        _ = generateKeyIfBlank()
        lock.withLock { stats.cloudConnections += 1 }
        startCloudHandshake(session: session)
        return true
    }

    /// Gen2 `HAL_save_device_id()`: the UID goes into the DCT device-ID field if it is blank.
    private func copyDeviceIDToDCT() {
        guard hardware.savesDeviceIDInDCT else { return }
        lock.withLock {
            let field = DCTLayout.deviceID
            if memories[1].read(UInt32(field.offset), length: 1) == [0xFF] {
                memories[1].overwrite(UInt32(field.offset), (Hex.decode(deviceID) ?? []))
            }
        }
    }

    /// `HAL_FLASH_Read_CorePrivateKey` with `PRIVATE_KEY_GENERATE_MISSING`: a blank slot (first
    /// byte 0xFF) gets a key of the platform's protocol (RSA-1024 for TCP, EC P-256 for UDP) and
    /// the derived public key. Returns whether it generated one. Key generation time on the MCU
    /// is not modelled (assumption).
    func generateKeyIfBlank() -> Bool {
        let slot = platform.privateKeySlot
        let blank = lock.withLock { memories[1].read(UInt32(slot.offset), length: 1) == [0xFF] }
        guard blank, let key = try? DevicePrivateKey.generate(platform.keyAlgorithm) else { return false }
        let (slotBytes, publicField) = Self.deviceOSEncoding(of: key, platform: platform)
        return lock.withLock {
            // Re-check: nothing may have written the slot while the key was being generated.
            guard memories[1].read(UInt32(slot.offset), length: 1) == [0xFF] else { return false }
            memories[1].overwrite(UInt32(slot.offset), slotBytes)
            memories[1].overwrite(UInt32(platform.devicePublicKeySlot.offset), publicField)
            stats.keysGenerated += 1
            return true
        }
    }

    /// Writes `key` into the slot as Device OS would have generated it (caller holds the lock).
    func installKeyLocked(_ key: DevicePrivateKey) {
        let (slotBytes, publicField) = Self.deviceOSEncoding(of: key, platform: platform)
        memories[1].overwrite(UInt32(platform.privateKeySlot.offset), slotBytes)
        memories[1].overwrite(UInt32(platform.devicePublicKeySlot.offset), publicField)
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
}

