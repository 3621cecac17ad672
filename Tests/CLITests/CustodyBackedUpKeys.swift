import Age
import DeviceKeys
import Escrow
import Foundation
import Registry

/// `count` Boron keys escrowed to `recipients` in a directory store and registered for `product`,
/// as a line would have left them (no devices needed to rotate backups).
struct BackedUpKeys {
    let keys: [String: DevicePrivateKey]

    init(_ registry: RegistryDatabase, store: DirectoryEscrowStore, product: String, count: Int,
         recipients: [X25519Recipient]) async throws {
        if try await registry.product(id: product) == nil { _ = try await registry.createProduct(id: product, name: "Custody \(product)") }
        var keys: [String: DevicePrivateKey] = [:]
        for index in 0..<count {
            let deviceID = "e00fce68" + String(format: "%08x%08x", UInt32.random(in: 0...UInt32.max), UInt32(index))
            let key = try DevicePrivateKey.generate(.ec)
            let backup = try EscrowBackup(deviceID: deviceID, platform: "boron", product: product, privateKey: key,
                                          job: "line", station: "line-1")
            let objectKey = backup.objectKey
            let ciphertext = try backup.encrypt(to: recipients)
            let sha256 = try await store.put(ciphertext, at: objectKey)
            let object = try await registry.recordEscrowObject(NewEscrowObject(
                productID: product, deviceID: deviceID, publicKeySHA256: key.publicKey.fingerprint, storeURI: store.storeURI,
                objectKey: objectKey.path, ciphertextSHA256: sha256, sizeBytes: Int64(ciphertext.count),
                recipients: recipients.map(\.description), jobID: nil, station: "line-1"))
            _ = try await registry.registerKey(NewKeyRegistration(
                productID: product, deviceID: deviceID, algorithm: .ec, spkiDER: key.publicKey.spkiDER,
                fingerprint: key.publicKey.fingerprint, escrowObjectID: object.id, jobID: nil, station: "line-1"))
            keys[deviceID] = key
        }
        self.keys = keys
    }
}
