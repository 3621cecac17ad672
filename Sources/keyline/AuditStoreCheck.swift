import Dispatch
import Escrow
import Foundation
import Registry

/// Runs `work` over `items` on Dispatch's worker threads (never Swift's cooperative pool, as the
/// work blocks on files), all cores at once; results in the order of `items`.
func parallelMap<T: Sendable, R: Sendable>(_ items: [T], _ work: @escaping @Sendable (T) -> R) async -> [R] {
    guard !items.isEmpty else { return [] }
    return await withCheckedContinuation { continuation in
        DispatchQueue.global(qos: .userInitiated).async {
            let results = ResultSlots<R>(count: items.count)
            DispatchQueue.concurrentPerform(iterations: items.count) { index in results.set(index, work(items[index])) }
            continuation.resume(returning: results.values())
        }
    }
}

/// Slots written by distinct iterations of `concurrentPerform` (each index once), read after it returns.
private final class ResultSlots<R>: @unchecked Sendable {
    private var slots: [R?]
    init(count: Int) { slots = Array(repeating: nil, count: count) }
    func set(_ index: Int, _ value: R) { slots.withUnsafeMutableBufferPointer { $0[index] = value } }
    func values() -> [R] { slots.map { $0! } }
}

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
        let percent = total > 0 ? " (\(min(100, done * 100 / total))%)" : ""
        FileHandle.standardError.write(Data("\r\(label): \(done)/\(total)\(percent), \(Int(rate))/s   ".utf8))
    }

    func finish() {
        guard enabled, done > 0 else { return }
        FileHandle.standardError.write(Data("\r\(label): \(done)/\(total) done\u{1B}[K\n".utf8))
    }
}

/// `--check-store`: the store's objects merged, in key order, with the registry's records of that
/// store: a record without its file is missing, a file without a record is an orphan, and each
/// matched file is hashed (in parallel) against the recorded SHA-256. A directory or an S3 store.
struct StoreCheck {
    let store: any AuditedStore
    let audit: RegistryAudit
    let report: (AuditFinding) -> Void
    var batch = 512

    func run() async throws {
        let counts = try await audit.objectCounts()
        for (uri, count) in counts where uri != store.storeURI {
            report(AuditFinding(.info, "objects_in_other_store", objectKey: uri,
                                message: "\(count) escrow objects are recorded in \(uri), not in the store checked (\(store.storeURI)); not checked"))
        }
        let total = counts.first { $0.storeURI == store.storeURI }?.count ?? 0
        let progress = TerminalProgress("checking \(store.label)", total: total)
        let walk = WalkReader(listing: store.listing(under: audit.scope.productID))
        var pending: [AuditedObject] = []
        try await audit.forEachObject(inStore: store.storeURI) { objects in
            for object in objects {
                while let file = try await walk.peek(), file.utf8.lexicographicallyPrecedes(object.objectKey.utf8) {
                    orphan(file)
                    try await walk.advance()
                }
                if try await walk.peek() == object.objectKey {
                    try await walk.advance()
                    pending.append(object)
                } else {
                    report(AuditFinding(.error, "escrow_object_missing", productID: object.productID, deviceID: object.deviceID,
                                        fingerprint: object.publicKeySHA256, objectKey: object.objectKey,
                                        message: "escrow object \(object.objectKey) is recorded but missing from the store: the backup of key \(object.publicKeySHA256) is lost"))
                    progress.advance(by: 1)
                }
                if pending.count >= batch {
                    try await hash(pending)
                    progress.advance(by: pending.count)
                    pending.removeAll(keepingCapacity: true)
                }
            }
        }
        try await hash(pending)
        progress.advance(by: pending.count)
        while let file = try await walk.peek() {
            orphan(file)
            try await walk.advance()
        }
        progress.finish()
    }

    private func orphan(_ path: String) {
        report(AuditFinding(.warning, "orphan_object", objectKey: path,
                            message: "\(path) is in the store but no escrow record names it (an interrupted write, or a file that does not belong there)"))
    }

    private func hash(_ objects: [AuditedObject]) async throws {
        let results = await store.sha256s(of: objects.map(\.objectKey))
        for (object, result) in zip(objects, results) {
            switch result {
            case .success(let sha) where sha == object.ciphertextSHA256:
                continue
            case .success(nil):
                report(AuditFinding(.error, "escrow_object_missing", productID: object.productID, deviceID: object.deviceID,
                                    fingerprint: object.publicKeySHA256, objectKey: object.objectKey,
                                    message: "escrow object \(object.objectKey) disappeared from the store while it was checked"))
            case .success(let sha?):
                report(AuditFinding(.error, "escrow_object_modified", productID: object.productID, deviceID: object.deviceID,
                                    fingerprint: object.publicKeySHA256, objectKey: object.objectKey,
                                    message: "escrow object \(object.objectKey) has SHA-256 \(sha), not the recorded \(object.ciphertextSHA256): modified or damaged"))
            case .failure(let error):
                report(AuditFinding(.error, "escrow_object_unreadable", productID: object.productID, deviceID: object.deviceID,
                                    fingerprint: object.publicKeySHA256, objectKey: object.objectKey, message: "\(error)"))
            }
        }
    }
}

/// The store's listing read ahead a block at a time (a directory's off the cooperative pool).
private final class WalkReader: @unchecked Sendable {
    private let listing: any StoreListing
    private var buffer: [String] = []
    private var index = 0
    private var ended = false

    init(listing: any StoreListing) { self.listing = listing }

    func peek() async throws -> String? {
        if index == buffer.count, !ended {
            let next = try await listing.next()
            buffer = next
            index = 0
            ended = next.isEmpty
        }
        return index < buffer.count ? buffer[index] : nil
    }

    func advance() async throws { index += 1 }
}

/// `--decrypt`: each listed key's backup is decrypted with the RMA identity and must hold the
/// private key of exactly the registered public key, for the registered device.
struct BackupDecryptCheck {
    let store: any AuditedStore
    let identities: [X25519Identity]
    /// Missing files are --check-store's to report when it runs.
    let reportMissing: Bool

    func check(_ keys: [AuditedKey]) async -> [AuditFinding] {
        let candidates = keys.filter { $0.objectKey != nil && $0.storeURI == store.storeURI }
        let (identities, reportMissing) = (identities, reportMissing)
        let fetched = await store.contents(of: candidates.map { $0.objectKey! })
        let results: [AuditFinding?] = await parallelMap(Array(zip(candidates, fetched))) { pair in
            let (key, fetched) = pair
            func finding(_ code: String, _ message: String) -> AuditFinding {
                AuditFinding(.error, code, productID: key.productID, deviceID: key.deviceID, fingerprint: key.fingerprint,
                             jobID: key.jobID, objectKey: key.objectKey, message: message)
            }
            let data: [UInt8]
            switch fetched {
            case .success(let bytes?): data = bytes
            case .failure(let error): return finding("escrow_object_unreadable", "escrow object \(key.objectKey!) cannot be read from the store: \(error)")
            case .success(nil):
                return reportMissing ? finding("escrow_object_missing", "escrow object \(key.objectKey!) cannot be read from the store") : nil
            }
            do {
                let backup = try EscrowBackup.decrypt(data, identities: identities)
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
