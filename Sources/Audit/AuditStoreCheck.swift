import Escrow
import Registry

/// How far `--check-store` is, for a progress display: the recorded objects hashed (of a known
/// total), then the store's listing walked for orphans (total unknown, 0).
public enum StoreCheckProgress: Sendable {
    public enum Stage: Sendable { case hashingRecorded, listingForOrphans }

    /// `store` is the store's name for people.
    case started(Stage, store: String, total: Int)
    case advanced(Stage, by: Int)
    case finished(Stage)
}

/// `--check-store`, in two streaming passes so memory stays flat for a store of millions of
/// objects (no set of every key, no sorted listing): first each recorded object of the store is
/// hashed (in parallel, a batch at a time) against its recorded SHA-256 — missing or modified;
/// then the store is walked and each batch of paths found is looked up in the registry — a file
/// no record names is an orphan. Progress is told to `progress` (a terminal shows it).
struct StoreCheck {
    let store: any EscrowStore
    let audit: RegistryAudit
    let report: (AuditFinding) throws -> Void
    let progress: (StoreCheckProgress) -> Void
    var batch = 2_048

    func run() async throws {
        let counts = try await audit.objectCounts()
        for (uri, count) in counts where uri != store.storeURI {
            // Asked to check the objects and could not: an error, so the audit does not pass.
            try report(AuditFinding(.error, "objects_in_other_store", objectKey: uri,
                                    message: "\(count) escrow objects are recorded in \(uri), not in the store checked (\(store.storeURI)); not checked: audit that store too"))
        }
        let total = counts.first { $0.storeURI == store.storeURI }?.count ?? 0
        progress(.started(.hashingRecorded, store: store.displayName, total: total))
        try await audit.forEachObject(inStore: store.storeURI) { objects in
            for start in stride(from: 0, to: objects.count, by: batch) {
                let slice = Array(objects[start..<min(start + batch, objects.count)])
                try await hash(slice)
                progress(.advanced(.hashingRecorded, by: slice.count))
            }
        }
        progress(.finished(.hashingRecorded))

        progress(.started(.listingForOrphans, store: store.displayName, total: 0))
        for try await paths in store.objectPages(under: audit.scope.productID) where !paths.isEmpty {
            for path in try await audit.unrecorded(paths, inStore: store.storeURI) {
                try report(AuditFinding(.warning, "orphan_object", objectKey: path,
                                        message: "\(path) is in the store but no escrow record names it (an interrupted write, or a file that does not belong there)"))
            }
            progress(.advanced(.listingForOrphans, by: paths.count))
        }
        progress(.finished(.listingForOrphans))
    }

    private func hash(_ objects: [AuditedObject]) async throws {
        let results = await store.sha256s(ofObjectsAt: objects.map(\.objectKey))
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
