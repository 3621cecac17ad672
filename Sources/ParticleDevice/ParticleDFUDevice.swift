import DFU
import DeviceBus
import DeviceKeys
import ParticlePlatform

/// A Particle device in DFU mode: its platform and device ID, key slots and server-key blob on
/// alt 1 (the DCT, device-os-keys.md §2), firmware on alt 0. Gen3/rtl872x keys are reachable only
/// this way (control requests 210/211 are NOT_SUPPORTED there, device-os-keys.md §4).
public struct ParticleDFUDevice: Sendable {
    public static let dctAlt: UInt8 = 1
    public static let internalFlashAlt: UInt8 = 0

    public let dfu: DfuSeDevice
    public let platform: Platform
    /// The USB serial: 24 lowercase hex digits.
    public let deviceID: String
    public let port: USBPortPath?

    /// Opens a device in DFU mode and identifies it by VID:PID and serial.
    public static func open(_ transport: any ControlTransport, port: USBPortPath? = nil,
                            expecting expected: Platform? = nil) async throws(ParticleDeviceError) -> ParticleDFUDevice {
        let dfu: DfuSeDevice
        do { dfu = try await DfuSeDevice.open(transport) } catch {
            throw ParticleDeviceError(step: .open, port: port, reason: .dfu(error))
        }
        let serial = dfu.serialNumber?.lowercased() ?? ""
        guard let (platform, mode) = Platform.matching(vendorID: dfu.device.vendorID, productID: dfu.device.productID), mode == .dfu else {
            throw ParticleDeviceError(step: .identify, deviceID: serial, port: port,
                                      reason: .unknownDevice(vendorID: dfu.device.vendorID, productID: dfu.device.productID))
        }
        if let expected, expected != platform {
            throw ParticleDeviceError(step: .identify, deviceID: serial, port: port,
                                      reason: .platformMismatch(expected: expected.name, found: platform.name))
        }
        guard platform.isValidDeviceID(serial) else {
            throw ParticleDeviceError(step: .identify, deviceID: serial, port: port, reason: .invalidDeviceID(serial))
        }
        return ParticleDFUDevice(dfu: dfu, platform: platform, deviceID: serial, port: port)
    }

    func fail(_ step: ParticleDeviceError.Step, _ reason: ParticleDeviceError.Reason) -> ParticleDeviceError {
        ParticleDeviceError(step: step, deviceID: deviceID, port: port, reason: reason)
    }

    /// Reads `length` bytes of any alt (DfuSe upload); failures name this device and its port.
    public func read(alt: UInt8, address: UInt32, length: Int,
                     progress: DFUProgressHandler? = nil) async throws(ParticleDeviceError) -> [UInt8] {
        do {
            return try await dfu.read(alt: alt, address: address, length: length, progress: progress)
        } catch {
            throw fail(.read, .dfu(error))
        }
    }

    /// Writes `bytes` to any alt (erasing the sectors they cover), verified by read-back unless
    /// `verify` is false; failures name this device and its port.
    public func write(alt: UInt8, address: UInt32, bytes: [UInt8], verify: Bool = true,
                      progress: DFUProgressHandler? = nil) async throws(ParticleDeviceError) {
        do {
            try await dfu.write(alt: alt, address: address, bytes: bytes, verify: verify, progress: progress)
        } catch {
            throw fail(.write, .dfu(error))
        }
    }

    /// Raw bytes of a DCT range.
    public func readDCT(_ slot: DCTSlot, step: ParticleDeviceError.Step, progress: DFUProgressHandler? = nil) async throws(ParticleDeviceError) -> [UInt8] {
        do {
            return try await dfu.read(alt: Self.dctAlt, address: UInt32(slot.offset), length: slot.size, progress: progress)
        } catch {
            throw fail(step, .dfu(error))
        }
    }

    /// Writes a DCT range (verified by read-back).
    public func writeDCT(_ bytes: [UInt8], at slot: DCTSlot, step: ParticleDeviceError.Step,
                         progress: DFUProgressHandler? = nil) async throws(ParticleDeviceError) {
        guard bytes.count <= slot.size else { throw fail(step, .wrongSize(expected: slot.size, actual: bytes.count)) }
        do {
            try await dfu.write(alt: Self.dctAlt, address: UInt32(slot.offset), bytes: bytes, verify: true, progress: progress)
        } catch {
            throw fail(step, .dfu(error))
        }
    }

    /// The raw private-key slot (612 bytes at 34 for TCP, 192 at 3106 for UDP).
    public func readPrivateKeySlot() async throws(ParticleDeviceError) -> [UInt8] {
        try await readDCT(platform.privateKeySlot, step: .readKey)
    }

    /// The private key the device holds, parsed as Device OS does (DER length from the header).
    /// Throws `.key(.blankSlot)` for a device that has not generated one yet.
    public func readPrivateKey() async throws(ParticleDeviceError) -> DevicePrivateKey {
        var slot = try await readPrivateKeySlot()
        defer { SecretBytes.clear(&slot) }
        do { return try DevicePrivateKey(slot: slot) } catch { throw fail(.readKey, .key(error)) }
    }

    /// The server key + address blob (512 bytes at 2082 TCP, 320 at 3298 UDP).
    public func readServerKeyBlob() async throws(ParticleDeviceError) -> [UInt8] {
        try await readDCT(platform.serverKeySlot.slot, step: .readServerKey)
    }

    public func writeServerKeyBlob(_ blob: [UInt8]) async throws(ParticleDeviceError) {
        let slot = platform.serverKeySlot.slot
        guard blob.count == slot.size else { throw fail(.writeServerKey, .wrongSize(expected: slot.size, actual: blob.count)) }
        try await writeDCT(blob, at: slot, step: .writeServerKey)
    }

    public func writeServerKeyBlob(_ blob: ServerKeyBlob) async throws(ParticleDeviceError) {
        try await writeServerKeyBlob(blob.bytes)
    }

    /// Leaves DFU mode; the device resets into its application.
    public func leave() async throws(ParticleDeviceError) {
        do { try await dfu.leave() } catch { throw fail(.leave, .dfu(error)) }
    }
}

/// Switching a normal-mode device to DFU and finding it again.
public enum ParticleModeSwitch {
    /// Sends DFU_MODE (50) to a normal-mode device, closes `transport` (if it can be closed: no
    /// handle is held across the re-enumeration), and waits through `locator` for the same serial
    /// to enumerate with the platform's DFU PID; opens it. A device already in DFU mode is opened
    /// on `transport` as it is, with no request and no wait.
    public static func enterDFU(_ transport: any ControlTransport, identity: USBDeviceIdentity, locator: any USBDeviceLocator,
                                timeout: Duration = .seconds(10)) async throws(ParticleDeviceError) -> ParticleDFUDevice {
        guard let (platform, mode) = Platform.matching(vendorID: identity.vendorID, productID: identity.productID) else {
            throw ParticleDeviceError(step: .identify, deviceID: identity.serialNumber, port: identity.port,
                                      reason: .unknownDevice(vendorID: identity.vendorID, productID: identity.productID))
        }
        if mode == .dfu {
            return try await ParticleDFUDevice.open(transport, port: identity.port, expecting: platform)
        }
        let requests = ParticleControlRequests(transport: transport)
        let serial: String
        if let known = identity.serialNumber?.lowercased(), !known.isEmpty {
            serial = known
        } else {
            serial = try await requests.deviceID()
        }
        let match = USBDeviceMatch(serialNumber: serial, vendorID: platform.vendorID, productIDs: [platform.dfuProductID])
        do {
            try await requests.enterDFUMode()
        } catch let error where error.isDisconnect {
            // The device may reset before the last reply; the wait below tells whether it worked.
        } catch {
            throw ParticleDeviceError(step: .enterDFU, deviceID: serial, port: identity.port, reason: error.reason)
        }
        // The normal-mode handle dies with the re-enumeration anyway; closing it now frees it at once.
        if let closable = transport as? any ClosableControlTransport { await closable.close() }
        let opened: USBOpenedDevice
        do {
            opened = try await locator.waitForDevice(match, timeout: timeout)
        } catch {
            throw ParticleDeviceError(step: .waitForDFU, deviceID: serial, port: identity.port, reason: .locator(error))
        }
        return try await ParticleDFUDevice.open(opened.transport, port: opened.identity.port, expecting: platform)
    }
}

extension ParticleDeviceError {
    var isDisconnect: Bool {
        if case .transfer(.disconnected) = reason { return true }
        return false
    }
}
