import Age

/// Where an escrow write is recorded (the registry, through its caller): a station records a job
/// device's intent before writing and commits it with the move to `escrowed`; the RMA bench
/// records an object outside any job.
public protocol EscrowLedger {
    associatedtype Recorded: Sendable

    /// The object already recorded at `objectKey` (its recorded SHA-256, and the record), or nil.
    func recorded(_ objectKey: EscrowObjectKey) async throws -> (sha256: String, record: Recorded)?

    /// The intent an earlier, interrupted attempt recorded for this write: which object, which bytes.
    func earlierIntent() async throws -> (objectKey: String, sha256: String)?

    /// Records which object and which bytes are about to be written, before they are. A ledger
    /// that cannot record ahead does nothing; an interrupted write then leaves an unrecorded
    /// object, which only an identity can check (`WriteAheadEscrow.identities`).
    func recordIntent(_ sealed: SealedBackup) async throws

    /// Records the object written (or adopted) at `objectKey`: `sha256` of its `size` bytes.
    func commit(_ objectKey: EscrowObjectKey, sha256: String, size: Int) async throws -> Recorded
}

/// The one escrow-write protocol of stations and benches (design.md, "What makes resume
/// possible"): record the object key and ciphertext hash before writing, adopt an object whose
/// bytes match the record instead of writing a second one (age output is random, so a redone
/// encryption never matches), and record the object as written only after the store holds it.
public struct WriteAheadEscrow<Ledger: EscrowLedger> {
    public let store: any EscrowStore
    public let recipients: [X25519Recipient]
    /// When given, an object at the key that nobody recorded is decrypted, and adopted when it is
    /// the backup of exactly this key for this device (a station never holds identities).
    public let identities: [X25519Identity]
    public let ledger: Ledger
    /// Sealed by an attempt of this write that has not committed: a retry puts the very same
    /// bytes again (an identical put succeeds), never a new encryption.
    public private(set) var pending: SealedBackup?

    public init(store: any EscrowStore, recipients: [X25519Recipient], identities: [X25519Identity] = [], ledger: Ledger) {
        self.store = store
        self.recipients = recipients
        self.identities = identities
        self.ledger = ledger
    }

    /// How the object came to be in the store.
    public enum Outcome: Sendable, Equatable {
        /// Already recorded (and still there, intact): nothing was written.
        case alreadyRecorded
        /// Written by an earlier, interrupted attempt: taken over.
        case adopted
        case written
    }

    /// Escrows `backup` at its object key and records it; returns the record and how.
    public mutating func write(_ backup: EscrowBackup) async throws -> (record: Ledger.Recorded, outcome: Outcome) {
        let objectKey = backup.objectKey
        if let recorded = try await ledger.recorded(objectKey) {
            _ = try await store.get(objectKey, expectedSHA256: recorded.sha256)  // still there, intact
            return (recorded.record, .alreadyRecorded)
        }
        if let pending, pending.objectKey == objectKey {
            _ = try await store.put(pending.ciphertext, at: objectKey)
            return (try await commit(objectKey, sha256: pending.sha256, size: pending.ciphertext.count), .written)
        }
        if let intent = try await ledger.earlierIntent(), intent.objectKey == objectKey.path,
           try await store.adopt(objectKey, expectedSHA256: intent.sha256) {
            return (try await commit(objectKey, sha256: intent.sha256, size: nil), .adopted)
        }
        if !identities.isEmpty, try await store.contains(objectKey),
           let adopted = try await unrecordedBackup(at: objectKey, of: backup) {
            return (try await commit(objectKey, sha256: adopted.sha256, size: adopted.size), .adopted)
        }
        let sealed = try backup.seal(to: recipients)
        try await ledger.recordIntent(sealed)
        pending = sealed
        _ = try await store.put(sealed.ciphertext, at: objectKey)
        return (try await commit(objectKey, sha256: sealed.sha256, size: sealed.ciphertext.count), .written)
    }

    private mutating func commit(_ objectKey: EscrowObjectKey, sha256: String, size: Int?) async throws -> Ledger.Recorded {
        let record = try await ledger.commit(objectKey, sha256: sha256, size: size ?? 0)
        pending = nil
        return record
    }

    /// An object at `objectKey` that no record names: its hash and size, if the identities show
    /// it is the backup of exactly this key for this device.
    private func unrecordedBackup(at objectKey: EscrowObjectKey, of backup: EscrowBackup) async throws -> (sha256: String, size: Int)? {
        let actual: String
        do {
            _ = try await store.get(objectKey, expectedSHA256: String(repeating: "0", count: 64))
            return nil
        } catch EscrowStoreError.checksumMismatch(_, _, let found) {
            actual = found
        }
        let bytes = try await store.get(objectKey, expectedSHA256: actual)
        guard let found = try? EscrowBackup.decrypt(bytes, identities: identities), found.deviceID == backup.deviceID,
              found.privateKey.publicKey.fingerprint == backup.privateKey.publicKey.fingerprint else {
            return nil
        }
        return (actual, bytes.count)
    }
}
