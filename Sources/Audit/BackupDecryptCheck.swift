import LocalFiles
import Age
import Escrow
import Registry

/// `--decrypt`: each listed key's backup is decrypted with the RMA identity and must hold the
/// private key of exactly the registered public key, for the registered device.
struct BackupDecryptCheck {
    let store: any EscrowStore
    let identities: [X25519Identity]
    /// Missing objects are --check-store's to report when it runs.
    let reportMissing: Bool

    func check(_ keys: [AuditedKey]) async -> [AuditFinding] {
        let candidates = keys.filter { $0.objectKey != nil && $0.storeURI == store.storeURI }
        let contents = await store.contents(ofObjectsAt: candidates.map { $0.objectKey! })
        let (identities, reportMissing) = (identities, reportMissing)
        // Decryption is CPU work: on Dispatch threads, all cores, never the cooperative pool.
        let results: [AuditFinding?] = await parallelMap(Array(zip(candidates, contents))) { pair in
            let (key, content) = pair
            func finding(_ code: String, _ message: String) -> AuditFinding {
                AuditFinding(.error, code, productID: key.productID, deviceID: key.deviceID, fingerprint: key.fingerprint,
                             jobID: key.jobID, objectKey: key.objectKey, message: message)
            }
            let bytes: [UInt8]
            switch content {
            case .success(let read?): bytes = read
            case .success(nil):
                return reportMissing ? finding("escrow_object_missing", "escrow object \(key.objectKey!) is not in the store") : nil
            case .failure(let error):
                return finding("escrow_object_unreadable", "escrow object \(key.objectKey!) cannot be read: \(error)")
            }
            do {
                let backup = try EscrowBackup.decrypt(bytes, identities: identities)
                try backup.check(deviceID: key.deviceID, publicKeySHA256: key.fingerprint)
                return nil
            } catch let error as EscrowBackupError {
                return finding("backup_key_mismatch", "the backup \(key.objectKey!) does not hold the registered key of device \(key.deviceID): \(error)")
            } catch {
                return finding("backup_does_not_decrypt", "the backup \(key.objectKey!) does not decrypt with the identity: \(error)")
            }
        }
        return results.compactMap { $0 }
    }
}
