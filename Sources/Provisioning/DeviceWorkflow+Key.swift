import DeviceKeys
import Escrow
import Registry

/// The key half of a device's workflow: settle the key the device holds, escrow it (write-ahead),
/// register its public key. The key lives in memory only; what reaches the store is ciphertext
/// and what reaches the registry is the public key and hashes.
extension DeviceWorkflow {
    /// Host mode writes a new key into a blank slot only; a key already on the device (made by
    /// the device, or by an earlier run that stopped before recording it) is read and kept —
    /// keyline never replaces a key. Either way the key is read back from the device and
    /// everything after uses what the device holds.
    func settleDeviceKey() async throws -> DevicePrivateKey {
        let device = try await dfuDevice()
        var written: DevicePrivateKey?
        switch try await device.readKeySlot() {
        case .key(let existing):
            if definition.keyMode == .host {
                emit(.note, step: .deviceKey, message: "the device already holds key \(existing.publicKey.fingerprint): kept (keyline never replaces a key)")
            }
        case .blank:
            guard definition.keyMode == .host else { throw ProvisioningError.noKeyOnDevice(deviceID: deviceID) }
            let generated = try DevicePrivateKey.generate(platform.keyAlgorithm)
            try await device.writePrivateKey(generated, replacing: .blank)
            written = generated
        case .corrupt(let error):
            throw ProvisioningError.damagedKeyOnDevice(deviceID: deviceID, detail: "\(error)")
        }
        guard case .key(let held) = try await device.readKeySlot() else {
            throw ProvisioningError.keyReadBackDiffers(deviceID: deviceID)
        }
        if let written, written.publicKey.fingerprint != held.publicKey.fingerprint {
            throw ProvisioningError.keyReadBackDiffers(deviceID: deviceID)
        }
        key = held
        return held
    }

    /// The key the device holds, which must be the one recorded at `key_ready`.
    func recordedKey() async throws -> DevicePrivateKey {
        if let key { return key }
        let read: DevicePrivateKey
        switch try await dfuDevice().readKeySlot() {
        case .key(let held): read = held
        case .blank: throw ProvisioningError.keyChanged(deviceID: deviceID, recorded: recordedFingerprint ?? "?", found: "blank slot")
        case .corrupt(let error): throw ProvisioningError.damagedKeyOnDevice(deviceID: deviceID, detail: "\(error)")
        }
        if let recordedFingerprint, read.publicKey.fingerprint != recordedFingerprint {
            throw ProvisioningError.keyChanged(deviceID: deviceID, recorded: recordedFingerprint, found: read.publicKey.fingerprint)
        }
        key = read
        return read
    }

    /// Write-ahead escrow (`WriteAheadEscrow`, the one protocol of stations and benches): the
    /// object key and ciphertext hash are recorded as the job device's intent before the object
    /// is written; a resumed run adopts an object whose bytes match the intent; recording the
    /// object and reaching `escrowed` is one transaction, which checks the intent still names the
    /// bytes written. A retry within the run writes the very same ciphertext again, never a new one.
    func escrow() async throws {
        let key = try await recordedKey()
        let objectKey = try EscrowObjectKey(product: definition.product.id, deviceID: deviceID,
                                            publicKeySHA256: key.publicKey.fingerprint)
        var writer = escrowWriter ?? WriteAheadEscrow(store: context.store, recipients: definition.escrow.recipients,
                                                      ledger: JobEscrowLedger(workflow: self))
        defer { escrowWriter = writer.pending == nil ? nil : writer }
        let (platform, product, jobID, station) = (platform.name, definition.product.id, context.jobID, definition.station)
        committedObject = try await writer.write(at: objectKey) {
            try EscrowBackup(deviceID: deviceID, platform: platform, product: product, privateKey: key, job: String(jobID), station: station)
        }.record
        state = .escrowed
        emit(.stateChanged, step: .escrow, state: .escrowed, fingerprint: key.publicKey.fingerprint)
    }

    /// Registers the public key derived from what the device holds, in one transaction with the
    /// move to `registered` (the registry refuses it without a committed escrow object).
    func register() async throws {
        let key = try await recordedKey()
        let registry = context.registry
        let (jobID, deviceID) = (context.jobID, self.deviceID)
        var object = committedObject
        if object == nil {
            object = try await persist { try await registry.escrowObject(jobID: jobID, deviceID: deviceID) }
        }
        guard let object else {
            throw ProvisioningError.keyChanged(deviceID: deviceID, recorded: recordedFingerprint ?? "?", found: "no escrow object")
        }
        var registration = NewKeyRegistration(
            productID: definition.product.id, deviceID: deviceID,
            algorithm: key.algorithm == .rsa ? .rsa : .ec, spkiDER: key.publicKey.spkiDER,
            fingerprint: key.publicKey.fingerprint, escrowObjectID: object.id, jobID: jobID, station: definition.station)
        // The cloud upload is queued in the same transaction (the pipeline's `cloud.upload`).
        registration.queueCloudUpload = definition.cloud.queues(for: definition.keyMode)
        let queued = registration
        _ = try await persist { try await registry.registerKey(queued) }
        state = .registered
        emit(.stateChanged, step: .register, state: .registered, fingerprint: key.publicKey.fingerprint)
    }
}
