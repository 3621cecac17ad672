import Age
import Escrow
import EscrowS3
import Foundation
import LocalFiles
import Registry

/// One backup a rotation moves (or, with `--dry-run`, would move).
public struct PlannedRotation: Sendable, Hashable, Codable {
    public let productID: String
    public let deviceID: String
    public let registrationID: Int64
    public let storeURI: String
    public let currentObjectKey: String
    public let newObjectKey: String
}

/// How a rotation run ended.
public struct RotationSummary: Sendable, Codable {
    public var ceremonyID: Int64
    public var rotated = 0
    /// Objects an interrupted run had written and recorded ahead: taken over, not written again.
    public var adopted = 0
    /// Backups that could not be moved, each with why (the run goes on with the others).
    public var failures: [String] = []
    public var oldEpochRetired = false
}

/// `keyline custody rotate` (after a suspected compromise): a new epoch, then every backup under
/// the old one (of a product, or all) decrypted with the old epoch's rebuilt identity and
/// re-encrypted to the new epoch's recipient as a new object generation
/// (`<spki-sha256>.g<N>.age`) beside the old object, which the write-once store keeps until its
/// retention ends: a rotation limits what a leaked old identity opens from now on; it cannot
/// un-write the old objects. Write-ahead like the line's escrow: the new object's key and
/// ciphertext SHA-256 are recorded before the object is written, and the object, the
/// registration's new generation and an `escrow.rotated` event are recorded in one transaction
/// after, so a run killed at any point is resumed (`--resume`) without a conflict. The backup's
/// other recipients (an offsite one) are kept; the old epoch's is dropped.
public struct EscrowRotation: Sendable {
    public let registry: RegistryDatabase
    public let station: String
    /// Backups moved at once (store round trips overlap; decryption is small).
    public var concurrency = 8

    public init(registry: RegistryDatabase, station: String) {
        self.registry = registry
        self.station = station
    }

    /// What a rotation from `epoch` would move (nothing is recorded or written).
    public func plan(from epoch: EscrowEpoch, productID: String?) async throws -> [PlannedRotation] {
        var planned: [PlannedRotation] = []
        var after: Int64 = 0
        while true {
            // A recipient no object has: every backup under the old epoch is listed.
            let items = try await registry.rotationItems(productID: productID, fromRecipient: epoch.recipient,
                                                         toRecipient: "", afterID: after)
            guard let last = items.last else { return planned }
            planned += try items.map(Self.planned)
            after = last.registration.id
        }
    }

    /// Makes the new epoch (split to `custodians`, files in `folder`) and records the rotation
    /// ceremony with the old epoch's shares; the backups are moved by `run`.
    public func start(from old: RecoveredEpoch, newEpochName: String, threshold: Int, custodians: [Custodian],
                      folder: String, productID: String?) async throws -> (EpochCreated, CustodyCeremony) {
        guard old.epoch.status == .active else { throw CustodyError.retiredEpoch(old.epoch.name) }
        try EpochSplit.check(epochName: newEpochName, threshold: threshold, custodians: custodians)
        if try await registry.epoch(named: newEpochName) != nil { throw CustodyRecordError.epochExists(newEpochName) }
        let split = try EpochSplit(X25519Identity.generate(), epochName: newEpochName, threshold: threshold, custodians: custodians)
        let paths = try await offPool { try split.writeFiles(into: folder) }
        let (epoch, ceremony) = try await registry.startRotation(from: old.epoch.id, to: split.newEpoch, productID: productID,
                                                                 shareIDs: old.shares.map(\.id), station: station)
        return (EpochCreated(epoch: epoch, ceremony: ceremony, threshold: threshold, shareFiles: paths), ceremony)
    }

    /// Moves every backup still under the old epoch to the new one, then finishes the ceremony
    /// (retiring the old epoch when no active registration is left under it). `old` must be the
    /// ceremony's old epoch, rebuilt from its shares. `progress` hears each backup done.
    public func run(_ ceremony: CustodyCeremony, old: RecoveredEpoch,
                    progress: @escaping @Sendable (PlannedRotation) -> Void = { _ in }) async throws -> RotationSummary {
        guard ceremony.kind == .rotate, ceremony.finishedAt == nil, let newEpochID = ceremony.newEpochID,
              let newEpoch = try await registry.epochs().first(where: { $0.id == newEpochID }) else {
            throw CustodyError.notAnUnfinishedRotation(ceremony.id)
        }
        guard old.epoch.id == ceremony.epochID else {
            throw CustodyError.sharesRefused(old.shares.map {
                ShareProblem(path: $0.custodian, kind: .otherEpoch, detail: "rotation \(ceremony.id) is from another epoch than \(old.epoch.name)")
            })
        }
        var summary = RotationSummary(ceremonyID: ceremony.id)
        let stores = OpenedEscrowStores()
        var after: Int64 = 0
        while true {
            let items = try await registry.rotationItems(productID: ceremony.productID, fromRecipient: old.epoch.recipient,
                                                         toRecipient: newEpoch.recipient, afterID: after)
            guard let last = items.last else { break }
            after = last.registration.id
            let outcomes = await concurrentMap(items, width: concurrency) { item -> Result<Bool, any Error> in
                do {
                    let adopted = try await rotate(item, ceremony: ceremony, old: old, newEpoch: newEpoch, stores: stores)
                    progress(try Self.planned(item))
                    return .success(adopted)
                } catch {
                    return .failure(error)
                }
            }
            for (item, outcome) in zip(items, outcomes) {
                switch outcome {
                case .success(let adopted): if adopted { summary.adopted += 1 } else { summary.rotated += 1 }
                case .failure(let error): summary.failures.append("device \(item.registration.deviceID) (\(item.current.objectKey)): \(error)")
                }
            }
        }
        if summary.failures.isEmpty { summary.oldEpochRetired = try await registry.finishRotation(ceremony) }
        return summary
    }

    /// One backup: adopted when a killed run wrote it (its intent matches the object), otherwise
    /// decrypted, checked, re-encrypted, recorded ahead, written, and recorded. True when adopted.
    private func rotate(_ item: RotationItem, ceremony: CustodyCeremony, old: RecoveredEpoch,
                        newEpoch: EscrowEpoch, stores: OpenedEscrowStores) async throws -> Bool {
        let current = item.current
        let registration = item.registration
        let generation = item.currentGeneration + 1
        let store = try await stores.store(current.storeURI)
        let key = try Self.nextObjectKey(item)
        let recipients = [newEpoch.recipient] + current.recipients.filter { $0 != old.epoch.recipient && $0 != newEpoch.recipient }
        func commit(_ sha256: String, _ size: Int64) async throws {
            _ = try await registry.commitRotation(
                ceremonyID: ceremony.id, registrationID: registration.id, generation: generation, epochID: newEpoch.id,
                object: NewEscrowObject(productID: registration.productID, deviceID: registration.deviceID,
                                        publicKeySHA256: registration.fingerprint, storeURI: current.storeURI,
                                        objectKey: key.path, ciphertextSHA256: sha256, sizeBytes: size,
                                        recipients: recipients, jobID: nil, station: station),
                previousObjectID: current.id)
        }
        if let intent = try await registry.rotationIntent(ceremonyID: ceremony.id, registrationID: registration.id),
           intent.generation == generation, intent.objectKey == key.path, intent.storeURI == current.storeURI,
           try await store.adopt(key, expectedSHA256: intent.ciphertextSHA256) {
            try await commit(intent.ciphertextSHA256, intent.sizeBytes)
            return true
        }
        guard let currentKey = EscrowObjectKey(path: current.objectKey) else {
            throw CustodyError.backupRefused(deviceID: registration.deviceID, objectKey: current.objectKey,
                                             detail: "the recorded object key is not one keyline writes")
        }
        let ciphertext = try await store.get(currentKey, expectedSHA256: current.ciphertextSHA256)
        let sealed: [UInt8]
        do {
            let backup = try EscrowBackup.decrypt(ciphertext, identities: [old.identity])
            try backup.check(deviceID: registration.deviceID, publicKeySHA256: registration.fingerprint)
            guard backup.product == registration.productID else {
                throw CustodyError.backupRefused(deviceID: registration.deviceID, objectKey: current.objectKey,
                                                 detail: "the backup is for product \(backup.product), the registration for \(registration.productID)")
            }
            sealed = try backup.encrypt(to: try recipients.map { try X25519Recipient($0) })
        } catch let error as CustodyError {
            throw error
        } catch {
            throw CustodyError.backupRefused(deviceID: registration.deviceID, objectKey: current.objectKey, detail: "\(error)")
        }
        let sha256 = Age.sha256(sealed)
        try await registry.recordRotationIntent(ceremonyID: ceremony.id, registrationID: registration.id, RotationIntent(
            generation: generation, storeURI: current.storeURI, objectKey: key.path, ciphertextSHA256: sha256,
            sizeBytes: Int64(sealed.count)))
        _ = try await store.put(sealed, at: key)
        try await commit(sha256, Int64(sealed.count))
        return false
    }

    static func planned(_ item: RotationItem) throws -> PlannedRotation {
        let key = try nextObjectKey(item)
        return PlannedRotation(productID: item.registration.productID, deviceID: item.registration.deviceID,
                               registrationID: item.registration.id, storeURI: item.current.storeURI,
                               currentObjectKey: item.current.objectKey, newObjectKey: key.path)
    }

    /// Where the re-encrypted backup goes: the generation after the current object's own, which
    /// may already be past the registry's count (a write-ahead escrow that found its key's path
    /// blocked by an unrecorded object wrote `.g2.age` as the first object).
    static func nextObjectKey(_ item: RotationItem) throws -> EscrowObjectKey {
        let written = EscrowObjectKey(path: item.current.objectKey)?.generation ?? 1
        return try EscrowObjectKey(product: item.registration.productID, deviceID: item.registration.deviceID,
                                   publicKeySHA256: item.registration.fingerprint,
                                   generation: max(written, item.currentGeneration) + 1)
    }
}
