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

/// A bench's escrow as the registry records it: an object outside any job, with a
/// `key.escrowed` event. The registry keeps write-ahead intents for job devices only, so nothing
/// is recorded ahead here: an object a killed bench left unrecorded is adopted only when the
/// bench's identity shows it is this key's backup.
struct BenchEscrowLedger: EscrowLedger {
    let escrow: BenchEscrow
    let reason: String

    func recorded(_ objectKey: EscrowObjectKey) async throws -> (sha256: String, record: EscrowObject)? {
        try await escrow.registry.escrowObject(storeURI: escrow.store.storeURI, objectKey: objectKey.path)
            .map { ($0.ciphertextSHA256, $0) }
    }

    func earlierIntent() async throws -> (objectKey: String, sha256: String)? { nil }

    func recordIntent(_ sealed: SealedBackup) async throws {}

    /// The bench adopts only objects it has read, so the size is always known here.
    func commit(_ objectKey: EscrowObjectKey, sha256: String, size: Int?) async throws -> EscrowObject {
        try await escrow.registry.recordEscrowObject(NewEscrowObject(
            productID: objectKey.product, deviceID: objectKey.deviceID, publicKeySHA256: objectKey.publicKeySHA256,
            storeURI: escrow.store.storeURI, objectKey: objectKey.path, ciphertextSHA256: sha256, sizeBytes: Int64(size ?? 0),
            recipients: escrow.recipients.map(\.description), jobID: nil, station: escrow.station), eventReason: reason)
    }
}
