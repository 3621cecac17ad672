import DeviceKeys
import Escrow
import FailurePolicy
import LocalFiles
import ParticleDevice
import ParticlePlatform

/// What `keyline keys save|load` do on an attached device (particle-cli-keys.md §1), minus
/// particle-cli's bugs: a failed read is an error (never swallowed), a slot that holds no key is
/// reported rather than dumped as if it were one, a PKCS#8 RSA key (OpenSSL 3's default) is
/// converted to PKCS#1 instead of being truncated by the device, and `load` writes only after the
/// backup of what it replaces is saved, with a guarded write naming that content.
public enum DeviceKeySlotIO {
    /// `keys save [NAME]` on the chosen device: NAME.der (the whole slot, owner-only) and
    /// NAME.pub.pem; NAME defaults to the device ID. Both names are checked before the slot is read.
    public static func save(device deviceID: String?, on bus: BenchBus, name: String?,
                            to files: any BenchOutputFiles) async throws -> SavedKeySlot {
        try await bus.withDevice(deviceID) { device in
            let base = KeyFileNames.base(name ?? device.deviceID)
            let names = ["\(base).der", "\(base).pub.pem"]
            try await offPool { for file in names { try files.requireWritable(file) } }
            let (slot, key) = try await save(device)
            try await offPool {
                try files.write(names[0], slot, secret: true)
                try files.write(names[1], Array(key.publicKey.pem.utf8), secret: false)
            }
            return SavedKeySlot(deviceID: device.deviceID, files: names, fingerprint: key.publicKey.fingerprint)
        }
    }

    /// `keys load [NAME]` on the chosen device: NAME.der (PEM and PKCS#8 accepted) checked against
    /// the platform, the slot saved to `backups` as backup_<alg>_NAME.der (+ .pub.pem when it held a
    /// key), then the key written over exactly that content and read back.
    public static func load(device deviceID: String?, on bus: BenchBus, name: String?,
                            backups: any BenchOutputFiles) async throws -> LoadedKey {
        try await bus.withDevice(deviceID) { device in
            let base = KeyFileNames.base(name ?? device.deviceID)
            let file = "\(base).der"
            let bytes = try await offPool { try InputFile.read(file, limit: KeyFile.maximumFileSize, what: "a key file") }
            let key: DevicePrivateKey
            do {
                guard let parsed = try KeyFile.parse(bytes).privateKey else { throw DeviceKeyError.notAPrivateKey }
                key = parsed
                try device.platform.checkDeviceKey(key)
            } catch {
                throw FileContentError(path: file, error: error)
            }
            var slot = try await device.readPrivateKeySlot()
            defer { SecretBytes.clear(&slot) }
            let backup = KeyFileNames.loadBackup(base: base, platform: device.platform)
            let content = DeviceKeySlotContent(slot: slot)
            try await offPool { [slot] in
                try backups.write(backup, slot, secret: true)
                if case .key(let held) = content {
                    try backups.write(KeyFileNames.publicKey(of: backup), Array(held.publicKey.pem.utf8), secret: false)
                }
            }
            try await load(key, into: device, replacing: expectation(slot))
            return LoadedKey(deviceID: device.deviceID, file: file, backup: backup, fingerprint: key.publicKey.fingerprint)
        }
    }

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
        var back = try await device.readPrivateKeySlot()
        defer { SecretBytes.clear(&back) }
        guard key.secret.equals(back.prefix(key.derCount)) else {
            throw DeviceKeyCommandError.readBackDiffers(deviceID: device.deviceID)
        }
    }
}

/// What `keys save` wrote.
public struct SavedKeySlot: Sendable {
    public var deviceID: String
    /// NAME.der and NAME.pub.pem.
    public var files: [String]
    public var fingerprint: String
}

/// What `keys load` wrote, and where the slot's former content was saved.
public struct LoadedKey: Sendable {
    public var deviceID: String
    public var file: String
    public var backup: String
    public var fingerprint: String
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
