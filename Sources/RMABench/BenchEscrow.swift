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
    /// naming `reason`. Returns the recorded object.
    public func escrow(_ key: DevicePrivateKey, deviceID: String, platform: String, product: String,
                       label: String, reason: String) async throws -> EscrowObject {
        let objectKey = try EscrowObjectKey(product: product, deviceID: deviceID, publicKeySHA256: key.publicKey.fingerprint)
        let storeURI = store.storeURI
        if let recorded = try await registry.escrowObject(storeURI: storeURI, objectKey: objectKey.path) {
            _ = try await store.get(objectKey, expectedSHA256: recorded.ciphertextSHA256)  // still there, intact
            return recorded
        }
        let ciphertext: [UInt8]
        let sha256: String
        if try await store.contains(objectKey), let adopted = try await adoptable(objectKey, key: key, deviceID: deviceID) {
            (ciphertext, sha256) = adopted
        } else {
            let backup = try EscrowBackup(deviceID: deviceID, platform: platform, product: product, privateKey: key,
                                          job: label, station: station)
            let sealed = try backup.seal(to: recipients)
            _ = try await store.put(sealed.ciphertext, at: objectKey)
            (ciphertext, sha256) = (sealed.ciphertext, sealed.sha256)
        }
        return try await registry.recordEscrowObject(NewEscrowObject(
            productID: product, deviceID: deviceID, publicKeySHA256: key.publicKey.fingerprint, storeURI: storeURI,
            objectKey: objectKey.path, ciphertextSHA256: sha256, sizeBytes: Int64(ciphertext.count),
            recipients: recipients.map(\.description), jobID: nil, station: station), eventReason: reason)
    }

    /// An object already at `objectKey` but not recorded: its bytes, if the identity shows it is
    /// the backup of exactly this key for this device.
    private func adoptable(_ objectKey: EscrowObjectKey, key: DevicePrivateKey,
                           deviceID: String) async throws -> ([UInt8], String)? {
        guard !identities.isEmpty else { return nil }
        let actual: String
        do {
            _ = try await store.get(objectKey, expectedSHA256: String(repeating: "0", count: 64))
            return nil
        } catch EscrowStoreError.checksumMismatch(_, _, let found) {
            actual = found
        }
        let bytes = try await store.get(objectKey, expectedSHA256: actual)
        guard let backup = try? EscrowBackup.decrypt(bytes, identities: identities),
              backup.deviceID == deviceID, backup.privateKey.publicKey.fingerprint == key.publicKey.fingerprint else {
            return nil
        }
        return (bytes, actual)
    }
}
