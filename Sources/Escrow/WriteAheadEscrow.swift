import Age

/// Where an escrow write is recorded (the registry, through its caller): a station records a job
/// device's intent before writing and commits it with the move to `escrowed`; the RMA bench
/// records an object outside any job.
public protocol EscrowLedger {
    associatedtype Recorded: Sendable

    /// The object already recorded at `objectKey` (its recorded SHA-256, and the record), or nil.
    func recorded(_ objectKey: EscrowObjectKey) async throws -> (sha256: String, record: Recorded)?

    /// The intent an earlier, interrupted attempt recorded for this write (at `objectKey`, for a
    /// ledger that keeps intents by object): which object, which bytes.
    func earlierIntent(at objectKey: EscrowObjectKey) async throws -> (objectKey: String, sha256: String)?

    /// Records which object and which bytes are about to be written, before they are (the line:
    /// the job device's intent; the bench: a bench escrow intent).
    func recordIntent(_ sealed: SealedBackup) async throws

    /// About to take over the object an earlier attempt wrote at `objectKey` (its intent matched).
    func willAdopt(_ objectKey: EscrowObjectKey)

    /// Records the object written (or adopted) at `objectKey`: `sha256` of its bytes, `size` of
    /// them when known here (an object adopted through an intent has its size in the intent).
    func commit(_ objectKey: EscrowObjectKey, sha256: String, size: Int?) async throws -> Recorded
}

extension EscrowLedger {
    public func willAdopt(_ objectKey: EscrowObjectKey) {}
}

/// The one escrow-write protocol of stations and benches (design.md, "What makes resume
/// possible"): record the object key and ciphertext hash before writing, adopt an object whose
/// bytes match the record instead of writing a second one (age output is random, so a redone
/// encryption never matches), and record the object as written only after the store holds it.
public struct WriteAheadEscrow<Ledger: EscrowLedger> {
    public let store: any EscrowStore
    public let recipients: [X25519Recipient]
    /// Whether an object at the key that no record or intent names may be taken over (the RMA
    /// bench, which may hold the identity): only when `identities` decrypt it to the backup of
    /// exactly this key for this device; otherwise the write goes on under the next generation.
    public let adoptsUnrecorded: Bool
    public let identities: [X25519Identity]
    public let ledger: Ledger
    /// Sealed by an attempt of this write that has not committed: a retry puts the very same
    /// bytes again (an identical put succeeds), never a new encryption.
    public private(set) var pending: SealedBackup?

    public init(store: any EscrowStore, recipients: [X25519Recipient], adoptsUnrecorded: Bool = false,
                identities: [X25519Identity] = [], ledger: Ledger) {
        self.store = store
        self.recipients = recipients
        self.adoptsUnrecorded = adoptsUnrecorded
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

    /// Escrows the backup `makeBackup` builds (only when a new object must be sealed) at
    /// `objectKey`, and records it; returns the record and how the object came to be there.
    ///
    /// An object already at the key that no record or intent names, and that this writer cannot
    /// take over (a killed write's, one put there by hand; the station has no identity to check
    /// it), never blocks the key: the backup goes to the key's next generation (`<spki>.g2.age`),
    /// and the blocked object stays where it is for the audit to report.
    public mutating func write(at objectKey: EscrowObjectKey, _ makeBackup: () throws -> EscrowBackup)
        async throws -> (record: Ledger.Recorded, outcome: Outcome) {
        // Sealed bytes of an earlier attempt of this very write are put again, never sealed anew,
        // and a retry starts at the generation they went to.
        var sealedBefore = pending.flatMap { (try? objectKey.at(generation: $0.objectKey.generation)) == $0.objectKey ? $0 : nil }
        var key = sealedBefore?.objectKey ?? objectKey
        while true {
            if let recorded = try await ledger.recorded(key) {
                _ = try await store.get(key, expectedSHA256: recorded.sha256)  // still there, intact
                return (recorded.record, .alreadyRecorded)
            }
            if let pending, pending.objectKey == key {
                do {
                    _ = try await store.put(pending.ciphertext, at: key)
                    return (try await commit(key, sha256: pending.sha256, size: pending.ciphertext.count), .written)
                } catch EscrowStoreError.objectExists {
                    key = try Self.next(after: key)
                    continue
                }
            }
            if let intent = try await ledger.earlierIntent(at: key), intent.objectKey == key.path {
                do {
                    if try await store.adopt(key, expectedSHA256: intent.sha256) {
                        ledger.willAdopt(key)
                        return (try await commit(key, sha256: intent.sha256, size: nil), .adopted)
                    }
                } catch EscrowStoreError.checksumMismatch {
                    key = try Self.next(after: key)  // other bytes than the intent's: not ours to take
                    continue
                }
            }
            if adoptsUnrecorded, try await store.contains(key), let adopted = try await unrecordedBackup(at: key) {
                return (try await commit(key, sha256: adopted.sha256, size: adopted.size), .adopted)
            }
            let sealed = try (sealedBefore ?? makeBackup().seal(to: recipients)).at(key)
            sealedBefore = sealed
            try await ledger.recordIntent(sealed)
            pending = sealed
            do {
                _ = try await store.put(sealed.ciphertext, at: key)
            } catch EscrowStoreError.objectExists {
                key = try Self.next(after: key)
                continue
            }
            return (try await commit(key, sha256: sealed.sha256, size: sealed.ciphertext.count), .written)
        }
    }

    /// The next generation of `key`, or the conflict at `key` once every generation is taken.
    static func next(after key: EscrowObjectKey) throws -> EscrowObjectKey {
        guard EscrowObjectKey.generations.contains(key.generation + 1) else {
            throw EscrowStoreError.invalidKey("every generation of \(key.path) up to \(key.generation) holds an object no record names; "
                                              + "run `keyline audit --check-store` and look at them")
        }
        return try key.at(generation: key.generation + 1)
    }

    private mutating func commit(_ objectKey: EscrowObjectKey, sha256: String, size: Int?) async throws -> Ledger.Recorded {
        let record = try await ledger.commit(objectKey, sha256: sha256, size: size)
        pending = nil
        return record
    }

    /// An object at `objectKey` that no record names: its hash and size, if the identities show
    /// it is the backup of exactly the key the object key names, for its device.
    private func unrecordedBackup(at objectKey: EscrowObjectKey) async throws -> (sha256: String, size: Int)? {
        guard !identities.isEmpty else { return nil }
        let actual: String
        do {
            _ = try await store.get(objectKey, expectedSHA256: String(repeating: "0", count: 64))
            return nil
        } catch EscrowStoreError.checksumMismatch(_, _, let found) {
            actual = found
        }
        let bytes = try await store.get(objectKey, expectedSHA256: actual)
        guard let found = try? EscrowBackup.decrypt(bytes, identities: identities), found.deviceID == objectKey.deviceID,
              found.privateKey.publicKey.fingerprint == objectKey.publicKeySHA256 else {
            return nil
        }
        return (actual, bytes.count)
    }
}
