import EscrowS3
import DeviceKeys
import Escrow
import Age
import ParticlePlatform
import Foundation
import Registry
import HexEncoding

/// One returned device to restore.
public struct RestoreRequest: Sendable, Hashable {
    public var deviceID: String
    public var productID: String?
    public var reason: String?
    public var ticket: String?

    public init(deviceID: String, productID: String? = nil, reason: String? = nil, ticket: String? = nil) {
        self.deviceID = deviceID.lowercased()
        self.productID = productID
        self.reason = reason
        self.ticket = ticket
    }
}

/// What a restore did.
public struct RestoreReport: Sendable, Hashable, Codable {
    public var deviceID: String
    public var productID: String
    public var platform: String
    public var fingerprint: String
    public var registrationID: Int64
    /// original, blank, corrupt or other: what the slot held before.
    public var foundKey: String
    /// For `other`: the fingerprint of the key found and the escrow object it was saved to.
    public var supersededFingerprint: String?
    public var supersededEscrowObjectID: Int64?
    public var restorationID: Int64
    public var seconds: Double
    /// Why the device did not leave DFU mode, when it did not: the key was written and read back
    /// all the same, so the restore is recorded as done; the bench resets the device by hand.
    public var leaveFailure: String? = nil
}

/// RMA restore (design.md, "Who uses it"): the device's original key back from escrow, so the
/// public key the cloud already trusts works again. Every check that can refuse is made before
/// anything is written; a different valid key found on the device is escrowed (as a superseded
/// key) before it is overwritten; the write is guarded (it names what it replaces) and read back
/// byte for byte; the device leaves DFU; a restoration row and event record it all. The decrypted
/// key lives only in memory.
public struct KeyRestore: Sendable {
    public let registry: RegistryDatabase
    public let identities: [X25519Identity]
    public let devices: BenchDevices
    public let station: String
    /// A directory store to read from instead of the one the object was recorded in.
    public let storeOverride: String?

    public init(registry: RegistryDatabase, identities: [X25519Identity], devices: BenchDevices, station: String,
                storeOverride: String? = nil) {
        self.registry = registry
        self.identities = identities
        self.devices = devices
        self.station = station
        self.storeOverride = storeOverride
    }

    public func restore(_ request: RestoreRequest) async throws -> RestoreReport {
        let started = ContinuousClock.now
        let registration = try await activeRegistration(request)
        do {
            let report = try await restore(request, registration: registration, started: started)
            return report
        } catch {
            // Recorded as a failed restoration (best effort: the error is what the bench must see).
            _ = try? await registry.recordRestoration(NewRestoration(
                registrationID: registration.id, station: station, outcome: .failed,
                detail: (error as? RestoreError)?.kind ?? String(describing: type(of: error)),
                reason: request.reason, ticket: request.ticket, durationMilliseconds: Self.milliseconds(since: started)))
            throw error
        }
    }

    private func activeRegistration(_ request: RestoreRequest) async throws -> KeyRegistration {
        var found = try await registry.activeRegistrations(deviceID: request.deviceID)
        if let product = request.productID { found = found.filter { $0.productID == product } }
        guard let registration = found.first else {
            throw RestoreError.noRegistration(deviceID: request.deviceID, productID: request.productID)
        }
        guard found.count == 1 else {
            throw RestoreError.severalRegistrations(deviceID: request.deviceID, products: found.map(\.productID))
        }
        return registration
    }

    private func restore(_ request: RestoreRequest, registration: KeyRegistration,
                         started: ContinuousClock.Instant) async throws -> RestoreReport {
        let id = request.deviceID
        let (backup, object) = try await verifiedBackup(registration)
        let original = backup.privateKey

        // The device: attached, the backup's platform, not protected.
        let (opened, attachedPlatform) = try await devices.find(id)
        guard attachedPlatform.name == backup.platform else {
            await opened.transport.close()
            throw RestoreError.platformMismatch(deviceID: id, backup: backup.platform, attached: attachedPlatform.name)
        }
        let device = try await devices.openDFU(opened, platform: attachedPlatform)
        var left = false
        defer { if !left { Task { await BenchDevices.close(device) } } }
        if BenchDevices.isProtected(device) { throw RestoreError.deviceProtected(deviceID: id) }
        var slot = try await device.readPrivateKeySlot()
        defer { SecretBytes.clear(&slot) }
        let content = DeviceKeySlotContent(slot: slot)

        var foundKey: String
        var superseded: (fingerprint: String, object: EscrowObject)?
        let expected: ExpectedDeviceKey
        switch content {
        case .key(let held) where held.publicKey.fingerprint == registration.fingerprint:
            foundKey = "original"
            expected = .fingerprint(held.publicKey.fingerprint)
        case .key(let other):
            // No key is ever lost, not even a wrong one: escrow it before it is overwritten.
            foundKey = "other"
            // Escrowed to the store the registry names, never to a --store override (a mounted,
            // possibly read-only or scratch copy): the only backup of this key must be where
            // audits and later restores look. If that store is not reachable, nothing is written.
            let canonical = try EscrowStores.open(object.storeURI)
            let escrow = BenchEscrow(registry: registry, store: canonical,
                                     recipients: try object.recipients.map { try X25519Recipient($0) },
                                     identities: identities, station: station)
            let saved = try await escrow.escrow(other, deviceID: id, platform: attachedPlatform.name,
                                                product: registration.productID, label: "rma",
                                                reason: "found on the device by a restore; superseded")
            superseded = (other.publicKey.fingerprint, saved)
            expected = .fingerprint(other.publicKey.fingerprint)
        case .blank:
            foundKey = "blank"
            expected = .blank
        case .corrupt:
            foundKey = "corrupt"
            expected = .slotBytes(sha256: DeviceKeySlotContent.slotSHA256(slot))
        }

        // The registration may have been superseded or revoked since it was read (another bench,
        // `keys doctor`, an officer): read again right before the write, so a key the registry no
        // longer trusts is never put back.
        guard try await registry.activeRegistrations(deviceID: id).contains(where: { $0.id == registration.id }) else {
            throw RestoreError.registrationChanged(deviceID: id, registrationID: registration.id)
        }
        try await device.writePrivateKey(original, replacing: expected)
        // Both hold the original key: cleared once compared.
        var padded = original.slotImage(size: attachedPlatform.privateKeySlot.size)
        defer { SecretBytes.clear(&padded) }
        var readBack = try await device.readPrivateKeySlot()
        defer { SecretBytes.clear(&readBack) }
        // Byte for byte: the key's DER (and, where keyline wrote the slot, its 0xFF fill).
        guard original.secret.equals(readBack.prefix(original.derCount)),
              foundKey == "original" || readBack == padded else {
            throw RestoreError.readBackDiffers(deviceID: id)
        }
        // The original key is in the slot and read back: a device that then fails to leave DFU
        // is restored all the same, and recorded so, as `keys doctor` does.
        let leaveFailure = await BenchDevices.leaveReportingFailure(device).map { "\($0)" }
        left = true

        let details = [superseded.map { "the device held key \($0.fingerprint): escrowed as superseded" },
                       leaveFailure.map { "the device did not leave DFU mode: \($0)" }].compactMap { $0 }
        // The registry re-reads the registration in the transaction that records the restoration:
        // one superseded or revoked since the check above is refused, not recorded restored.
        let restoration: Restoration
        do {
            restoration = try await registry.recordRestoration(NewRestoration(
                registrationID: registration.id, station: station, outcome: .restored,
                detail: details.isEmpty ? nil : details.joined(separator: "; "),
                reason: request.reason, ticket: request.ticket, durationMilliseconds: Self.milliseconds(since: started),
                foundKey: foundKey, supersededEscrowObjectID: superseded?.object.id))
        } catch RegistryError.registrationNotActive {
            throw RestoreError.registrationChanged(deviceID: id, registrationID: registration.id)
        }
        return RestoreReport(deviceID: id, productID: registration.productID, platform: attachedPlatform.name,
                             fingerprint: registration.fingerprint, registrationID: registration.id, foundKey: foundKey,
                             supersededFingerprint: superseded?.fingerprint, supersededEscrowObjectID: superseded?.object.id,
                             restorationID: restoration.id,
                             seconds: Self.seconds(ContinuousClock.now - started), leaveFailure: leaveFailure)
    }

    /// The registration's backup, fetched, hash-checked, decrypted and checked against the
    /// registry: the file alone is trusted for nothing.
    private func verifiedBackup(_ registration: KeyRegistration) async throws -> (EscrowBackup, EscrowObject) {
        let id = registration.deviceID
        // The registration's current object: after a custody rotation, its latest generation.
        guard let object = try await registry.currentEscrowObject(registrationID: registration.id)?.object else {
            throw RestoreError.backupUnavailable(deviceID: id, objectKey: "escrow object \(registration.escrowObjectID)",
                                                 detail: "not recorded")
        }
        // The bench may name a directory (a mounted copy) to read instead of the recorded store.
        let store: any EscrowStore = try storeOverride.map { DirectoryEscrowStore(root: URL(fileURLWithPath: $0)) }
            ?? EscrowStores.open(object.storeURI)
        // The recorded object key, in whichever generation the escrow wrote it (`<spki>.gN.age`
        // beside an unrecorded object), but always this device's and this key's.
        guard let key = try? EscrowObjectKey(recordedPath: object.objectKey, product: object.productID,
                                             deviceID: object.deviceID, publicKeySHA256: object.publicKeySHA256) else {
            let expected = try EscrowObjectKey(product: object.productID, deviceID: object.deviceID,
                                               publicKeySHA256: object.publicKeySHA256)
            throw RestoreError.backupMismatch(deviceID: id, field: "object key", registered: expected.path, backup: object.objectKey)
        }
        let ciphertext: [UInt8]
        do {
            ciphertext = try await store.get(key, expectedSHA256: object.ciphertextSHA256)
        } catch let error as EscrowStoreError {
            switch error {
            case .notFound, .checksumMismatch:
                throw RestoreError.backupUnavailable(deviceID: id, objectKey: object.objectKey, detail: error.description)
            default: throw error
            }
        }
        let backup: EscrowBackup
        do {
            backup = try EscrowBackup.decrypt(ciphertext, identities: identities)
        } catch let error as AgeError {
            throw RestoreError.cannotDecrypt(deviceID: id, objectKey: object.objectKey, detail: error.description)
        } catch let error as EscrowBackupError {
            throw RestoreError.backupMismatch(deviceID: id, field: "document", registered: "a valid backup",
                                              backup: error.description)
        }
        let checks: [(String, String, String)] = [
            ("device ID", id, backup.deviceID),
            ("product", registration.productID, backup.product),
            ("public key SHA-256", registration.fingerprint, backup.publicKeySHA256),
            ("SubjectPublicKeyInfo", Hex.encode(registration.spkiDER), Hex.encode(backup.privateKey.publicKey.spkiDER)),
        ]
        for (field, registered, inBackup) in checks where registered != inBackup {
            throw RestoreError.backupMismatch(deviceID: id, field: field, registered: registered, backup: inBackup)
        }
        return (backup, object)
    }


    static func milliseconds(since start: ContinuousClock.Instant) -> Int64 {
        let elapsed = ContinuousClock.now - start
        return elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000
    }

    /// A duration in seconds, as reports show it.
    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}
