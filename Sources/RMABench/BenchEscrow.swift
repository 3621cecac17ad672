import DeviceKeys
import Foundation
import Escrow
import Age
import Registry

/// Escrow outside a job, at a bench: a key found on a returned device (kept as a superseded
/// key) or a key made by `keys doctor`. The object is written once, then recorded; a retry after
/// a crash between the two finds the object and, when it can check it (with the identity),
/// records it instead of colliding with it.
public struct BenchEscrow: Sendable {
    public let registry: RegistryDatabase
    public let store: any EscrowStore
    public let recipients: [X25519Recipient]
    /// When given, an object left unrecorded by an earlier attempt is decrypted and checked before
    /// it is adopted.
    public let identities: [X25519Identity]
    public let station: String

    public init(registry: RegistryDatabase, store: any EscrowStore, recipients: [X25519Recipient],
                identities: [X25519Identity] = [], station: String) {
        self.registry = registry
        self.store = store
        self.recipients = recipients
        self.identities = identities
        self.station = station
    }

    /// Escrows `key` for the device and records the object (no job) with a `key.escrowed` event
    /// naming `reason`, through the one write-ahead protocol (`WriteAheadEscrow`). Returns the
    /// recorded object.
    public func escrow(_ key: DevicePrivateKey, deviceID: String, platform: String, product: String,
                       label: String, reason: String) async throws -> EscrowObject {
        let objectKey = try EscrowObjectKey(product: product, deviceID: deviceID, publicKeySHA256: key.publicKey.fingerprint)
        var writer = WriteAheadEscrow(store: store, recipients: recipients, adoptsUnrecorded: true, identities: identities,
                                      ledger: BenchEscrowLedger(escrow: self, reason: reason))
        return try await writer.write(at: objectKey) {
            try EscrowBackup(deviceID: deviceID, platform: platform, product: product, privateKey: key, job: label, station: station)
        }.record
    }
}

/// A bench's escrow as the registry records it, write-ahead like a job device's: a bench escrow
/// intent (object key, ciphertext hash) before the object is written, then the object outside any
/// job with a `key.escrowed` event, committed with the intent. An object a killed bench left is
/// adopted when its intent names its bytes (or the bench's identity shows it is this key's
/// backup); anything else at the key is passed by for the next generation, left for the audit.
struct BenchEscrowLedger: EscrowLedger {
    let escrow: BenchEscrow
    let reason: String

    private var registry: RegistryDatabase { escrow.registry }
    private var storeURI: String { escrow.store.storeURI }

    func recorded(_ objectKey: EscrowObjectKey) async throws -> (sha256: String, record: EscrowObject)? {
        try await registry.escrowObject(storeURI: storeURI, objectKey: objectKey.path).map { ($0.ciphertextSHA256, $0) }
    }

    func earlierIntent(at objectKey: EscrowObjectKey) async throws -> (objectKey: String, sha256: String)? {
        try await registry.pendingBenchEscrowIntent(storeURI: storeURI, objectKey: objectKey.path)
            .map { ($0.objectKey, $0.ciphertextSHA256) }
    }

    func recordIntent(_ sealed: SealedBackup) async throws {
        try await record(sealed.objectKey, sha256: sealed.sha256, size: sealed.ciphertext.count)
    }

    /// An object adopted with the identity (no intent of this bench named it) is recorded as an
    /// intent first: the registry commits objects outside jobs only from a bench intent.
    func commit(_ objectKey: EscrowObjectKey, sha256: String, size: Int?) async throws -> EscrowObject {
        if let size, try await earlierIntent(at: objectKey)?.sha256 != sha256 {
            try await record(objectKey, sha256: sha256, size: size)
        }
        return try await registry.commitBenchEscrow(storeURI: storeURI, objectKey: objectKey.path, ciphertextSHA256: sha256)
    }

    private func record(_ objectKey: EscrowObjectKey, sha256: String, size: Int) async throws {
        try await registry.recordBenchEscrowIntent(NewEscrowObject(
            productID: objectKey.product, deviceID: objectKey.deviceID, publicKeySHA256: objectKey.publicKeySHA256,
            storeURI: storeURI, objectKey: objectKey.path, ciphertextSHA256: sha256, sizeBytes: Int64(size),
            recipients: escrow.recipients.map(\.description), jobID: nil, station: escrow.station), reason: reason)
    }
}
