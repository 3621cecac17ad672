import Dispatch
import Escrow
import Age
import Foundation
import Registry

/// Progress of a long check on standard error, only when it is a terminal; at most 5 times a second.
final class TerminalProgress {
    private let enabled = isatty(STDERR_FILENO) == 1
    private let label: String
    private let total: Int
    private var done = 0
    private var last = Date.distantPast
    private let started = Date()

    init(_ label: String, total: Int) {
        self.label = label
        self.total = total
    }

    func advance(by count: Int) {
        done += count
        guard enabled, Date().timeIntervalSince(last) >= 0.2 else { return }
        last = Date()
        let rate = Double(done) / max(Date().timeIntervalSince(started), 0.001)
        let count = total > 0 ? "\(done)/\(total) (\(min(100, done * 100 / total))%)" : "\(done)"
        FileHandle.standardError.write(Data("\r\(label): \(count), \(Int(rate))/s   ".utf8))
    }

    func finish() {
        guard enabled, done > 0 else { return }
        FileHandle.standardError.write(Data("\r\(label): \(done) done\u{1B}[K\n".utf8))
    }
}

/// `--check-store`, in two streaming passes so memory stays flat for a store of millions of
/// objects (no set of every key, no sorted listing): first each recorded object of the store is
/// hashed (in parallel, a batch at a time) against its recorded SHA-256 — missing or modified;
/// then the store is walked and each batch of paths found is looked up in the registry — a file
/// no record names is an orphan. Progress goes to a terminal on standard error.
struct StoreCheck {
    let store: AuditedStore
    let audit: RegistryAudit
    let report: (AuditFinding) throws -> Void
    var batch = 2_048

    func run() async throws {
        let counts = try await audit.objectCounts()
        for (uri, count) in counts where uri != store.storeURI {
            try report(AuditFinding(.info, "objects_in_other_store", objectKey: uri,
                                    message: "\(count) escrow objects are recorded in \(uri), not in the store checked (\(store.storeURI)); not checked"))
        }
        let total = counts.first { $0.storeURI == store.storeURI }?.count ?? 0
        let hashing = TerminalProgress("checking \(store.name)", total: total)
        try await audit.forEachObject(inStore: store.storeURI) { objects in
            for start in stride(from: 0, to: objects.count, by: batch) {
                let slice = Array(objects[start..<min(start + batch, objects.count)])
                try await hash(slice)
                hashing.advance(by: slice.count)
            }
        }
        hashing.finish()

        let walking = TerminalProgress("looking for orphans in \(store.name)", total: 0)
        let listing = store.listing(under: audit.scope.productID)
        while true {
            let paths = try await listing()
            if paths.isEmpty { break }
            for path in try await audit.unrecorded(paths, inStore: store.storeURI) {
                try report(AuditFinding(.warning, "orphan_object", objectKey: path,
                                        message: "\(path) is in the store but no escrow record names it (an interrupted write, or a file that does not belong there)"))
            }
            walking.advance(by: paths.count)
        }
        walking.finish()
    }

    private func hash(_ objects: [AuditedObject]) async throws {
        let results = await store.sha256s(objects.map(\.objectKey))
        for (object, result) in zip(objects, results) {
            switch result {
            case .success(let sha) where sha == object.ciphertextSHA256:
                continue
            case .success(nil):
                try report(AuditFinding(.error, "escrow_object_missing", productID: object.productID, deviceID: object.deviceID,
                                        fingerprint: object.publicKeySHA256, objectKey: object.objectKey,
                                        message: "escrow object \(object.objectKey) is recorded but missing from the store: the backup of key \(object.publicKeySHA256) is lost"))
            case .success(let sha?):
                try report(AuditFinding(.error, "escrow_object_modified", productID: object.productID, deviceID: object.deviceID,
                                        fingerprint: object.publicKeySHA256, objectKey: object.objectKey,
                                        message: "escrow object \(object.objectKey) has SHA-256 \(sha), not the recorded \(object.ciphertextSHA256): modified or damaged"))
            case .failure(let error):
                try report(AuditFinding(.error, "escrow_object_unreadable", productID: object.productID, deviceID: object.deviceID,
                                        fingerprint: object.publicKeySHA256, objectKey: object.objectKey, message: "\(error)"))
            }
        }
    }
}

/// `--decrypt`: each listed key's backup is decrypted with the RMA identity and must hold the
/// private key of exactly the registered public key, for the registered device.
struct BackupDecryptCheck {
    let store: AuditedStore
    let identities: [X25519Identity]
    /// Missing objects are --check-store's to report when it runs.
    let reportMissing: Bool

    func check(_ keys: [AuditedKey]) async -> [AuditFinding] {
        let candidates = keys.filter { $0.objectKey != nil && $0.storeURI == store.storeURI }
        let contents = await store.contents(candidates.map { $0.objectKey! })
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
