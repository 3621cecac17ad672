import DeviceKeys
import FailurePolicy
import ParticleDevice
import ParticlePlatform

/// What `keyline keys save|load` do on an attached device (particle-cli-keys.md §1), minus
/// particle-cli's bugs: a failed read is an error (never swallowed), a slot that holds no key is
/// reported rather than dumped as if it were one, a PKCS#8 RSA key (OpenSSL 3's default) is
/// converted to PKCS#1 instead of being truncated by the device, and `load` writes only after the
/// backup of what it replaces is saved, with a guarded write naming that content.
public enum DeviceKeySlotIO {
    /// The whole private-key slot (612 bytes TCP, 192 UDP: key DER plus what follows, as
    /// particle-cli's `<id>.der`) and the key it holds.
    public static func save(_ device: ParticleDFUDevice) async throws -> (slot: [UInt8], key: DevicePrivateKey) {
        if BenchDevices.isProtected(device) { throw DeviceKeyCommandError.protected(deviceID: device.deviceID) }
        let slot = try await device.readPrivateKeySlot()
        switch DeviceKeySlotContent(slot: slot) {
        case .key(let key): return (slot, key)
        case .blank: throw DeviceKeyCommandError.noKey(deviceID: device.deviceID, detail: "the key slot is blank")
        case .corrupt(let error): throw DeviceKeyCommandError.noKey(deviceID: device.deviceID, detail: "the key slot is corrupt: \(error)")
        }
    }

    /// What the slot holds now, as a guarded write names it.
    public static func expectation(_ slot: [UInt8]) -> ExpectedDeviceKey {
        switch DeviceKeySlotContent(slot: slot) {
        case .blank: .blank
        case .key(let key): .fingerprint(key.publicKey.fingerprint)
        case .corrupt: .slotBytes(sha256: DeviceKeySlotContent.slotSHA256(slot))
        }
    }

    /// Writes `key` over exactly `replacing` and reads it back: the slot's DER must be the key's.
    public static func load(_ key: DevicePrivateKey, into device: ParticleDFUDevice,
                            replacing: ExpectedDeviceKey) async throws {
        if BenchDevices.isProtected(device) { throw DeviceKeyCommandError.protected(deviceID: device.deviceID) }
        try await device.writePrivateKey(key, replacing: replacing)
        let back = try await device.readPrivateKeySlot()
        guard Array(back.prefix(key.der.count)) == key.der else {
            throw DeviceKeyCommandError.readBackDiffers(deviceID: device.deviceID)
        }
    }
}

public enum DeviceKeyCommandError: Error, Sendable, Hashable, CustomStringConvertible, ClassifiedError {
    case noKey(deviceID: String, detail: String)
    case protected(deviceID: String)
    case readBackDiffers(deviceID: String)

    public var description: String {
        switch self {
        case .noKey(let id, let detail): "device \(id): \(detail); nothing was saved"
        case .protected(let id): "device \(id) is protected (Device Protection): put it into service mode first"
        case .readBackDiffers(let id): "device \(id): the key read back differs from the key written"
        }
    }

    public var failureClass: FailureClass { .badDevice }
}
