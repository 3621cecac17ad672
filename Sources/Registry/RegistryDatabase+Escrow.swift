import Foundation

/// Escrow objects and write-ahead escrow (design.md, workflow step 5). The runner records an
/// intent (object key and ciphertext SHA-256) before writing the object, writes it (or lets the
/// store adopt an object already there with exactly those bytes), then commits: the escrow object
/// row and the move to `escrowed` in one transaction. A crash anywhere in between is redone.
extension RegistryDatabase {

    /// Records an escrow object after it was written durably (design.md, workflow step 5). With
    /// `eventReason` (a bench escrow outside a job: a key found on a returned device, a key made
    /// by `keys doctor`), a `key.escrowed` event naming it is appended in the same transaction.
    public func recordEscrowObject(_ object: NewEscrowObject, eventReason: String? = nil) async throws -> EscrowObject {
        try await run("record escrow objects") { transaction in
            let row = try transaction.queryOne("""
                INSERT INTO escrow_objects (product_id, device_id, public_key_sha256, store_uri, object_key,
                                            ciphertext_sha256, size_bytes, recipients, job_id, station)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                RETURNING \(Self.escrowColumns(prefix: ""))
                """, [object.productID, object.deviceID, object.publicKeySHA256, object.storeURI, object.objectKey,
                      object.ciphertextSHA256, object.sizeBytes, object.recipients, object.jobID, object.station])
            let recorded = try Self.escrowObject(row!, prefix: "")
            if let eventReason {
                try Self.appendEvent(kind: "key.escrowed", station: object.station, productID: object.productID,
                                     deviceID: object.deviceID, jobID: object.jobID,
                                     detail: ["fingerprint": object.publicKeySHA256, "escrow_object_id": String(recorded.id),
                                              "object_key": object.objectKey, "reason": eventReason],
                                     in: transaction)
            }
            return recorded
        } mapping: { error in
            if error.isUniqueViolation { return .escrowObjectExists(storeURI: object.storeURI, objectKey: object.objectKey) }
            if error.sqlState == "23503" {
                return error.constraint?.contains("job") == true ? .unknownJob(object.jobID ?? 0) : .unknownProduct(object.productID)
            }
            return nil
        }
    }

    public func escrowObject(id: Int64) async throws -> EscrowObject? {
        try await run("read escrow objects") { transaction in
            try transaction.queryOne("SELECT \(Self.escrowColumns(prefix: "")) FROM escrow_objects WHERE id = $1", [id])
                .map { try Self.escrowObject($0, prefix: "") }
        }
    }

    // MARK: Write-ahead escrow

    /// Records what is about to be written for the device in `object.jobID` (required), before the
    /// write. The device must be `key_ready` with `object.publicKeySHA256` as its recorded key.
    /// Recording again replaces the pending intent (a new seal after a crash: age output is
    /// random); once committed, the same intent is returned and any other is refused.
    public func recordEscrowIntent(_ object: NewEscrowObject) async throws -> EscrowIntent {
        guard let jobID = object.jobID else { throw RegistryError.escrowIntentWithoutJob(deviceID: object.deviceID) }
        return try await run("record escrow intents") { transaction in
            // The device row first: commitEscrow takes the same lock, so the two never interleave.
            let device = try Self.lockedJobDevice(jobID: jobID, deviceID: object.deviceID, in: transaction)
            if let existing = try transaction.queryOne("""
                SELECT \(Self.escrowIntentColumns) FROM escrow_intents WHERE job_id = $1 AND device_id = $2 FOR UPDATE
                """, [jobID, object.deviceID]).map(Self.escrowIntent), existing.isCommitted {
                guard existing.describes(object) else {
                    throw RegistryError.escrowIntentCommitted(jobID: jobID, deviceID: object.deviceID,
                                                              objectKey: existing.objectKey)
                }
                return existing
            }
            guard let device, device.state == "key_ready" else {
                throw RegistryError.stateConflict(jobID: jobID, deviceID: object.deviceID, expected: "key_ready",
                                                  actual: device?.state)
            }
            guard device.keyFingerprint == object.publicKeySHA256 else {
                throw RegistryError.keyFingerprintMismatch(jobID: jobID, deviceID: object.deviceID,
                                                           recorded: device.keyFingerprint,
                                                           attempted: object.publicKeySHA256)
            }
            let row = try transaction.queryOne("""
                INSERT INTO escrow_intents (job_id, device_id, product_id, public_key_sha256, store_uri, object_key,
                                            ciphertext_sha256, size_bytes, recipients, station)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                ON CONFLICT (job_id, device_id) DO UPDATE SET
                    product_id = EXCLUDED.product_id, public_key_sha256 = EXCLUDED.public_key_sha256,
                    store_uri = EXCLUDED.store_uri, object_key = EXCLUDED.object_key,
                    ciphertext_sha256 = EXCLUDED.ciphertext_sha256, size_bytes = EXCLUDED.size_bytes,
                    recipients = EXCLUDED.recipients, station = EXCLUDED.station, updated_at = now()
                RETURNING \(Self.escrowIntentColumns)
                """, [jobID, object.deviceID, object.productID, object.publicKeySHA256, object.storeURI,
                      object.objectKey, object.ciphertextSHA256, object.sizeBytes, object.recipients, object.station])
            return try Self.escrowIntent(row!)
        } mapping: { error in
            if error.constraint == "escrow_intents_job_product" || error.sqlState == "23503" {
                return .unknownProduct(object.productID)
            }
            return nil
        }
    }

    /// The device's escrow intent in the job (pending or committed), if one was recorded.
    public func escrowIntent(jobID: Int64, deviceID: String) async throws -> EscrowIntent? {
        try await run("read escrow intents") { transaction in
            try transaction.queryOne("SELECT \(Self.escrowIntentColumns) FROM escrow_intents WHERE job_id = $1 AND device_id = $2",
                                     [jobID, deviceID]).map(Self.escrowIntent)
        }
    }

    /// After the object is durable in the store: records it from the intent (or reuses an
    /// identical row already there) and moves the device `key_ready` → `escrowed`, in one
    /// transaction. Committing again returns the same object and changes nothing.
    ///
    /// `ciphertextSHA256`, when given, is the hash of the bytes the caller wrote or adopted: the
    /// intent must still name it (another process on the same job may have replaced it since),
    /// so a commit never records a hash the store does not hold.
    @discardableResult
    public func commitEscrow(jobID: Int64, deviceID: String, ciphertextSHA256: String? = nil) async throws -> EscrowObject {
        try await run("record escrow objects") { transaction in
            let device = try Self.lockedJobDevice(jobID: jobID, deviceID: deviceID, in: transaction)
            guard let intent = try transaction.queryOne("""
                SELECT \(Self.escrowIntentColumns) FROM escrow_intents WHERE job_id = $1 AND device_id = $2 FOR UPDATE
                """, [jobID, deviceID]).map(Self.escrowIntent) else {
                throw RegistryError.noEscrowIntent(jobID: jobID, deviceID: deviceID)
            }
            if let ciphertextSHA256, intent.ciphertextSHA256 != ciphertextSHA256 {
                throw RegistryError.escrowObjectExists(storeURI: intent.storeURI, objectKey: intent.objectKey)
            }
            if let committed = intent.committedEscrowObjectID,
               let state = device?.state, ["escrowed", "registered", "done"].contains(state) {
                return try Self.escrowObject(transaction.queryOne(
                    "SELECT \(Self.escrowColumns(prefix: "")) FROM escrow_objects WHERE id = $1", [committed])!, prefix: "")
            }
            guard let device, device.state == "key_ready" else {
                throw RegistryError.stateConflict(jobID: jobID, deviceID: deviceID, expected: "key_ready",
                                                  actual: device?.state)
            }
            let object: EscrowObject
            if let existing = try transaction.queryOne("""
                SELECT \(Self.escrowColumns(prefix: "")) FROM escrow_objects WHERE store_uri = $1 AND object_key = $2
                """, [intent.storeURI, intent.objectKey]).map({ try Self.escrowObject($0, prefix: "") }) {
                // The same bytes for the same key recorded before (another job, or by hand): reuse.
                guard existing.productID == intent.productID, existing.deviceID == intent.deviceID,
                      existing.publicKeySHA256 == intent.publicKeySHA256,
                      existing.ciphertextSHA256 == intent.ciphertextSHA256, existing.sizeBytes == intent.sizeBytes else {
                    throw RegistryError.escrowObjectExists(storeURI: intent.storeURI, objectKey: intent.objectKey)
                }
                object = existing
            } else {
                object = try Self.escrowObject(transaction.queryOne("""
                    INSERT INTO escrow_objects (product_id, device_id, public_key_sha256, store_uri, object_key,
                                                ciphertext_sha256, size_bytes, recipients, job_id, station)
                    SELECT product_id, device_id, public_key_sha256, store_uri, object_key, ciphertext_sha256,
                           size_bytes, recipients, job_id, station
                    FROM escrow_intents WHERE id = $1
                    RETURNING \(Self.escrowColumns(prefix: ""))
                    """, [intent.id])!, prefix: "")
            }
            try transaction.execute("UPDATE escrow_intents SET committed_object_id = $2, updated_at = now() WHERE id = $1",
                                    [intent.id, object.id])
            try transaction.execute("""
                UPDATE job_devices SET state = 'escrowed', updated_at = now()
                WHERE job_id = $1 AND device_id = $2 AND state = 'key_ready'
                """, [jobID, deviceID])
            return object
        }
    }

    /// The escrow object that backs the device's key in the job: the committed intent's, else the
    /// latest recorded for the job device.
    public func escrowObject(jobID: Int64, deviceID: String) async throws -> EscrowObject? {
        try await run("read escrow objects") { transaction in
            try transaction.queryOne("""
                SELECT \(Self.escrowColumns(prefix: "")) FROM escrow_objects
                WHERE id = (SELECT committed_object_id FROM escrow_intents WHERE job_id = $1 AND device_id = $2)
                   OR (job_id = $1 AND device_id = $2)
                ORDER BY id = (SELECT committed_object_id FROM escrow_intents WHERE job_id = $1 AND device_id = $2)
                         DESC NULLS LAST, id DESC
                LIMIT 1
                """, [jobID, deviceID]).map { try Self.escrowObject($0, prefix: "") }
        }
    }
}

extension EscrowIntent {
    /// Whether `object` is what this intent records (a replay of the same call).
    func describes(_ object: NewEscrowObject) -> Bool {
        productID == object.productID && deviceID == object.deviceID && publicKeySHA256 == object.publicKeySHA256
            && storeURI == object.storeURI && objectKey == object.objectKey
            && ciphertextSHA256 == object.ciphertextSHA256 && sizeBytes == object.sizeBytes
    }
}
