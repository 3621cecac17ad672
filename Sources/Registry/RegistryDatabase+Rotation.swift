import Foundation

/// Custody rotation (schema 0012): a new epoch, then every backup under the old one re-encrypted
/// as a new object generation. Write-ahead like the line's escrow: the object key and ciphertext
/// SHA-256 are recorded before the object is written; the object, the registration's new
/// generation and an `escrow.rotated` event are recorded in one transaction after.
extension RegistryDatabase {
    /// Records the new epoch (its shares), the rotation ceremony from `fromEpochID` and the old
    /// epoch's shares brought to it, at once.
    public func startRotation(from fromEpochID: Int64, to newEpoch: NewEscrowEpoch, productID: String?,
                              shareIDs: [Int64], station: String) async throws -> (EscrowEpoch, CustodyCeremony) {
        do {
            return try await run("record custody ceremonies") { transaction in
                try Self.createEpoch(newEpoch, kind: .rotate, fromEpochID: fromEpochID, productID: productID,
                                     shareIDs: shareIDs, station: station, in: transaction)
            }
        } catch RegistryError.database(let error) where error.isUniqueViolation {
            throw CustodyRecordError.epochExists(newEpoch.name)
        } catch RegistryError.database(let error) where error.sqlState == "23503" {
            throw RegistryError.unknownProduct(productID ?? "")
        }
    }

    /// Rotations started and not finished (a killed run), oldest first.
    public func unfinishedRotations() async throws -> [CustodyCeremony] {
        try await run("read custody ceremonies") { transaction in
            try transaction.query("""
                SELECT \(Self.ceremonyColumns) FROM custody_ceremonies WHERE kind = 'rotate' AND finished_at IS NULL ORDER BY id
                """).map(Self.ceremony)
        }
    }

    /// Up to `limit` active registrations (of `productID`, or all) whose current object is
    /// encrypted to `fromRecipient` and not yet to `toRecipient`, after registration `afterID`.
    public func rotationItems(productID: String?, fromRecipient: String, toRecipient: String, afterID: Int64 = 0,
                              limit: Int = 500) async throws -> [RotationItem] {
        try await run("read key registrations") { transaction in
            try transaction.query("""
                SELECT \(Self.registrationColumns(prefix: "r.")), \(Self.escrowColumns(prefix: "e.", alias: "e_")),
                       (SELECT coalesce(max(g.generation), 1) FROM escrow_object_generations g
                        WHERE g.registration_id = r.id) AS current_generation
                FROM key_registrations r JOIN escrow_objects e ON e.id = keyline_current_escrow_object(r.id)
                WHERE r.status = 'active' AND ($1::text IS NULL OR r.product_id = $1)
                  AND $2 = ANY (e.recipients) AND NOT ($3 = ANY (e.recipients)) AND r.id > $4
                ORDER BY r.id LIMIT $5
                """, [productID, fromRecipient, toRecipient, afterID, limit]).map { row in
                RotationItem(registration: try Self.keyRegistration(row, prefix: ""),
                             current: try Self.escrowObject(row, prefix: "e_"),
                             currentGeneration: try row.decode("current_generation"))
            }
        }
    }

    /// How many active registrations' current objects are encrypted to `recipient` (of `productID` or all).
    public func activeRegistrationCount(underRecipient recipient: String, productID: String? = nil) async throws -> Int {
        try await run("read key registrations") { transaction in
            try transaction.queryOne("""
                SELECT count(*) AS n FROM key_registrations r JOIN escrow_objects e ON e.id = keyline_current_escrow_object(r.id)
                WHERE r.status = 'active' AND ($2::text IS NULL OR r.product_id = $2) AND $1 = ANY (e.recipients)
                """, [recipient, productID])!.decode("n")
        }
    }

    /// The registration's current escrow object (its latest generation) and that generation.
    public func currentEscrowObject(registrationID: Int64) async throws -> (object: EscrowObject, generation: Int)? {
        try await run("read escrow objects") { transaction in
            try transaction.queryOne("""
                SELECT \(Self.escrowColumns(prefix: "")),
                       (SELECT coalesce(max(g.generation), 1) FROM escrow_object_generations g
                        WHERE g.registration_id = $1) AS current_generation
                FROM escrow_objects WHERE id = keyline_current_escrow_object($1)
                """, [registrationID]).map { (try Self.escrowObject($0, prefix: ""), try $0.decode("current_generation")) }
        }
    }

    public func rotationIntent(ceremonyID: Int64, registrationID: Int64) async throws -> RotationIntent? {
        try await run("read custody rotation intents") { transaction in
            try transaction.queryOne("""
                SELECT generation, store_uri, object_key, ciphertext_sha256, size_bytes FROM custody_rotation_intents
                WHERE ceremony_id = $1 AND registration_id = $2
                """, [ceremonyID, registrationID]).map { row in
                RotationIntent(generation: try row.decode("generation"), storeURI: try row.decode("store_uri"),
                               objectKey: try row.decode("object_key"), ciphertextSHA256: try row.decode("ciphertext_sha256"),
                               sizeBytes: try row.decode("size_bytes"))
            }
        }
    }

    /// Records (or replaces: a new seal after a crash before the put) what is about to be written.
    public func recordRotationIntent(ceremonyID: Int64, registrationID: Int64, _ intent: RotationIntent) async throws {
        _ = try await run("record custody rotation intents") { transaction in
            try transaction.execute("""
                INSERT INTO custody_rotation_intents (ceremony_id, registration_id, generation, store_uri, object_key,
                                                      ciphertext_sha256, size_bytes)
                VALUES ($1, $2, $3, $4, $5, $6, $7)
                ON CONFLICT (ceremony_id, registration_id) DO UPDATE SET generation = EXCLUDED.generation,
                    store_uri = EXCLUDED.store_uri, object_key = EXCLUDED.object_key,
                    ciphertext_sha256 = EXCLUDED.ciphertext_sha256, size_bytes = EXCLUDED.size_bytes
                """, [ceremonyID, registrationID, intent.generation, intent.storeURI, intent.objectKey,
                      intent.ciphertextSHA256, intent.sizeBytes])
        }
    }

    /// Records the object a rotation wrote, makes it the registration's next generation and
    /// appends an `escrow.rotated` event: one transaction, so the pointer moves exactly when the
    /// object is recorded.
    public func commitRotation(ceremonyID: Int64, registrationID: Int64, generation: Int, epochID: Int64,
                               object: NewEscrowObject, previousObjectID: Int64) async throws -> EscrowObject {
        try await run("record escrow objects") { transaction in
            let row = try transaction.queryOne("""
                INSERT INTO escrow_objects (product_id, device_id, public_key_sha256, store_uri, object_key,
                                            ciphertext_sha256, size_bytes, recipients, job_id, station)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, $9)
                RETURNING \(Self.escrowColumns(prefix: ""))
                """, [object.productID, object.deviceID, object.publicKeySHA256, object.storeURI, object.objectKey,
                      object.ciphertextSHA256, object.sizeBytes, object.recipients, object.station])
            let recorded = try Self.escrowObject(row!, prefix: "")
            try transaction.execute("""
                INSERT INTO escrow_object_generations (registration_id, generation, escrow_object_id, epoch_id, ceremony_id)
                VALUES ($1, $2, $3, $4, $5)
                """, [registrationID, generation, recorded.id, epochID, ceremonyID])
            try Self.appendEvent(kind: "escrow.rotated", station: object.station, productID: object.productID,
                                 deviceID: object.deviceID, jobID: nil,
                                 detail: ["ceremony_id": String(ceremonyID), "registration_id": String(registrationID),
                                          "generation": String(generation), "escrow_object_id": String(recorded.id),
                                          "previous_escrow_object_id": String(previousObjectID),
                                          "object_key": object.objectKey, "fingerprint": object.publicKeySHA256],
                                 in: transaction)
            return recorded
        }
    }

    /// Finishes a rotation; retires its old epoch when no active registration's current object
    /// is encrypted to it any more (a product-scoped rotation may leave others under it).
    /// Returns whether the old epoch was retired.
    public func finishRotation(_ ceremony: CustodyCeremony) async throws -> Bool {
        try await run("record custody ceremonies") { transaction in
            try transaction.execute("UPDATE custody_ceremonies SET finished_at = now() WHERE id = $1 AND finished_at IS NULL",
                                    [ceremony.id])
            let remaining: Int = try transaction.queryOne("""
                SELECT count(*) AS n FROM key_registrations r JOIN escrow_objects e ON e.id = keyline_current_escrow_object(r.id)
                JOIN escrow_epochs p ON p.id = $1
                WHERE r.status = 'active' AND p.recipient = ANY (e.recipients)
                """, [ceremony.epochID])!.decode("n")
            guard remaining == 0 else { return false }
            let retired = try transaction.execute("UPDATE escrow_epochs SET status = 'retired' WHERE id = $1 AND status = 'active'",
                                                  [ceremony.epochID])
            try Self.appendEvent(kind: "custody.rotated", station: ceremony.station, productID: ceremony.productID,
                                 deviceID: nil, jobID: nil,
                                 detail: ["ceremony_id": String(ceremony.id), "epoch_id": String(ceremony.epochID),
                                          "new_epoch_id": ceremony.newEpochID.map(String.init) ?? "",
                                          "old_epoch_retired": retired > 0 ? "true" : "false"],
                                 in: transaction)
            return retired > 0
        }
    }
}
