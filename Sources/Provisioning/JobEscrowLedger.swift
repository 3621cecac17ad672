import Escrow
import Registry

/// A job device's escrow as the registry records it: the intent (object key, ciphertext hash)
/// before the object is written, then the object, committed with the move to `escrowed`. Every
/// registry call goes through the workflow's `persist`, which holds the device while the
/// database is away.
struct JobEscrowLedger: EscrowLedger {
    /// Unowned: the ledger lives in the workflow's own `escrowWriter`.
    unowned let workflow: DeviceWorkflow

    /// A job device's object is committed once, with its state: nothing to look up first.
    func recorded(_ objectKey: EscrowObjectKey) async throws -> (sha256: String, record: EscrowObject)? { nil }

    /// The intent an earlier run recorded; none can exist when this run recorded `key_ready` itself.
    func earlierIntent(at objectKey: EscrowObjectKey) async throws -> (objectKey: String, sha256: String)? {
        if workflow.keySettledInThisRun { return nil }
        let (registry, jobID, deviceID) = (workflow.context.registry, workflow.context.jobID, workflow.deviceID)
        guard let intent = try await workflow.persist({ try await registry.escrowIntent(jobID: jobID, deviceID: deviceID) }) else {
            return nil
        }
        return (intent.objectKey, intent.ciphertextSHA256)
    }

    func recordIntent(_ sealed: SealedBackup) async throws {
        let definition = workflow.definition
        let intent = NewEscrowObject(
            productID: sealed.objectKey.product, deviceID: workflow.deviceID, publicKeySHA256: sealed.publicKeySHA256,
            storeURI: workflow.context.store.storeURI, objectKey: sealed.objectKey.path, ciphertextSHA256: sealed.sha256,
            sizeBytes: Int64(sealed.ciphertext.count), recipients: definition.escrow.recipients.map(\.description),
            jobID: workflow.context.jobID, station: definition.station)
        let registry = workflow.context.registry
        _ = try await workflow.persist { try await registry.recordEscrowIntent(intent) }
    }

    /// The registry checks the intent names these bytes, and takes their size from it.
    func willAdopt(_ objectKey: EscrowObjectKey) {
        workflow.emit(.note, step: .escrow, message: "escrow object \(objectKey.path) was written by an earlier run: adopted")
    }

    func commit(_ objectKey: EscrowObjectKey, sha256: String, size: Int?) async throws -> EscrowObject {
        let (registry, jobID, deviceID) = (workflow.context.registry, workflow.context.jobID, workflow.deviceID)
        return try await workflow.persist { try await registry.commitEscrow(jobID: jobID, deviceID: deviceID, ciphertextSHA256: sha256) }
    }
}
