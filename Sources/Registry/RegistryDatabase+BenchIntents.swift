import Foundation

/// Write-ahead escrow at the RMA bench (schema 0010), the protocol the line follows for a job
/// device: the object key and ciphertext SHA-256 are recorded before the object is written; the
/// object row, its `key.escrowed` event and the intent's commit are one transaction. The database
/// records an escrow object outside a job only as the commit of such an intent (for a bench login).
extension RegistryDatabase {
    /// Records what the bench is about to write at `object.objectKey`; a pending intent for the
    /// same object key is replaced (a new seal after a crash: age output is random).
    @discardableResult
    public func recordBenchEscrowIntent(_ object: NewEscrowObject, reason: String) async throws -> BenchEscrowIntent {
        try await run("record bench escrow intents") { transaction in
            let row = try transaction.queryOne("""
                INSERT INTO bench_escrow_intents (product_id, device_id, public_key_sha256, store_uri, object_key,
                                                  ciphertext_sha256, size_bytes, recipients, reason, station)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                ON CONFLICT (store_uri, object_key) WHERE committed_object_id IS NULL DO UPDATE SET
                    product_id = EXCLUDED.product_id, public_key_sha256 = EXCLUDED.public_key_sha256,
                    ciphertext_sha256 = EXCLUDED.ciphertext_sha256, size_bytes = EXCLUDED.size_bytes,
                    recipients = EXCLUDED.recipients, reason = EXCLUDED.reason, station = EXCLUDED.station
                RETURNING \(Self.benchIntentColumns)
                """, [object.productID, object.deviceID, object.publicKeySHA256, object.storeURI, object.objectKey,
                      object.ciphertextSHA256, object.sizeBytes, object.recipients, reason, object.station])
            return try Self.benchIntent(row!)
        } mapping: { error in
            error.sqlState == "23503" ? .unknownProduct(object.productID) : nil
        }
    }

    /// The pending (uncommitted) bench intent for this object key, if any.
    public func pendingBenchEscrowIntent(storeURI: String, objectKey: String) async throws -> BenchEscrowIntent? {
        try await run("read bench escrow intents") { transaction in
            try transaction.queryOne("""
                SELECT \(Self.benchIntentColumns) FROM bench_escrow_intents
                WHERE store_uri = $1 AND object_key = $2 AND committed_object_id IS NULL
                """, [storeURI, objectKey]).map(Self.benchIntent)
        }
    }

    /// After the object is durable: records it from the pending intent (which must name
    /// `ciphertextSHA256`), with a `key.escrowed` event naming the intent's reason, and commits the
    /// intent. An object already recorded there with exactly the intent's bytes is reused.
    public func commitBenchEscrow(storeURI: String, objectKey: String, ciphertextSHA256: String) async throws -> EscrowObject {
        try await run("record escrow objects") { transaction in
            guard let intent = try transaction.queryOne("""
                SELECT \(Self.benchIntentColumns) FROM bench_escrow_intents
                WHERE store_uri = $1 AND object_key = $2 AND committed_object_id IS NULL FOR UPDATE
                """, [storeURI, objectKey]).map(Self.benchIntent) else {
                throw RegistryError.noBenchEscrowIntent(storeURI: storeURI, objectKey: objectKey)
            }
            guard intent.ciphertextSHA256 == ciphertextSHA256 else {
                throw RegistryError.escrowObjectExists(storeURI: storeURI, objectKey: objectKey)
            }
            let object: EscrowObject
            if let existing = try transaction.queryOne("""
                SELECT \(Self.escrowColumns(prefix: "")) FROM escrow_objects WHERE store_uri = $1 AND object_key = $2
                """, [storeURI, objectKey]).map({ try Self.escrowObject($0, prefix: "") }) {
                guard existing.deviceID == intent.deviceID, existing.productID == intent.productID,
                      existing.publicKeySHA256 == intent.publicKeySHA256,
                      existing.ciphertextSHA256 == intent.ciphertextSHA256 else {
                    throw RegistryError.escrowObjectExists(storeURI: storeURI, objectKey: objectKey)
                }
                object = existing
            } else {
                object = try Self.escrowObject(transaction.queryOne("""
                    INSERT INTO escrow_objects (product_id, device_id, public_key_sha256, store_uri, object_key,
                                                ciphertext_sha256, size_bytes, recipients, station)
                    SELECT product_id, device_id, public_key_sha256, store_uri, object_key, ciphertext_sha256,
                           size_bytes, recipients, station
                    FROM bench_escrow_intents WHERE id = $1
                    RETURNING \(Self.escrowColumns(prefix: ""))
                    """, [intent.id])!, prefix: "")
                try Self.appendEvent(kind: "key.escrowed", station: intent.station, productID: object.productID,
                                     deviceID: object.deviceID, jobID: nil,
                                     detail: ["fingerprint": object.publicKeySHA256, "escrow_object_id": String(object.id),
                                              "object_key": object.objectKey, "reason": intent.reason],
                                     in: transaction)
            }
            try transaction.execute("UPDATE bench_escrow_intents SET committed_object_id = $2 WHERE id = $1",
                                    [intent.id, object.id])
            return object
        }
    }

    static let benchIntentColumns = "id, product_id, device_id, public_key_sha256, store_uri, object_key, ciphertext_sha256, "
        + "size_bytes, reason, station, committed_object_id, created_at"

    static func benchIntent(_ row: PostgresRow) throws -> BenchEscrowIntent {
        BenchEscrowIntent(id: try row.decode("id"), productID: try row.decode("product_id"), deviceID: try row.decode("device_id"),
                          publicKeySHA256: try row.decode("public_key_sha256"), storeURI: try row.decode("store_uri"),
                          objectKey: try row.decode("object_key"), ciphertextSHA256: try row.decode("ciphertext_sha256"),
                          sizeBytes: try row.decode("size_bytes"), reason: try row.decode("reason"),
                          station: try row.decode("station"), committedObjectID: try row.decode("committed_object_id"),
                          createdAt: try row.decode("created_at"))
    }
}

/// A bench's escrow write, recorded before the object is written (`recordBenchEscrowIntent`).
public struct BenchEscrowIntent: Sendable, Hashable {
    public let id: Int64
    public let productID: String
    public let deviceID: String
    public let publicKeySHA256: String
    public let storeURI: String
    public let objectKey: String
    public let ciphertextSHA256: String
    public let sizeBytes: Int64
    public let reason: String
    public let station: String
    public let committedObjectID: Int64?
    public let createdAt: Date
}
