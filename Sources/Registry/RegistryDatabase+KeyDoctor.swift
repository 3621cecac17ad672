import Foundation

/// `keys doctor` intents (schema 0010): before the new key is written to a device, the bench
/// records which key (escrowed already) is about to replace which; registering the key closes the
/// intent in the same transaction. An open intent is an interrupted doctor — the device may hold a
/// key nobody registered — found by the next doctor on the device and by `openKeyDoctorIntents`.
extension RegistryDatabase {
    /// Records the intent; refused (`keyDoctorInterrupted`) while another is open for the device.
    public func recordKeyDoctorIntent(productID: String, deviceID: String, newFingerprint: String,
                                      previousFingerprint: String?, escrowObjectID: Int64,
                                      station: String) async throws -> KeyDoctorIntent {
        try await run("record keys doctor intents") { transaction in
            let row = try transaction.queryOne("""
                INSERT INTO key_doctor_intents (product_id, device_id, new_fingerprint, previous_fingerprint,
                                                escrow_object_id, station)
                VALUES ($1, $2, $3, $4, $5, $6) RETURNING \(Self.doctorIntentColumns)
                """, [productID, deviceID, newFingerprint, previousFingerprint, escrowObjectID, station])
            return try Self.doctorIntent(row!)
        } mapping: { error in
            error.isUniqueViolation ? .keyDoctorInterrupted(deviceID: deviceID) : nil
        }
    }

    /// The device's open (interrupted or running) doctor intent, if any.
    public func openKeyDoctorIntent(deviceID: String) async throws -> KeyDoctorIntent? {
        try await run("read keys doctor intents") { transaction in
            try transaction.queryOne("""
                SELECT \(Self.doctorIntentColumns) FROM key_doctor_intents WHERE device_id = $1 AND outcome IS NULL
                """, [deviceID]).map(Self.doctorIntent)
        }
    }

    /// Every open doctor intent, oldest first (what an audit reports).
    public func openKeyDoctorIntents() async throws -> [KeyDoctorIntent] {
        try await run("read keys doctor intents") { transaction in
            try transaction.query("""
                SELECT \(Self.doctorIntentColumns) FROM key_doctor_intents WHERE outcome IS NULL ORDER BY created_at, id
                """).map(Self.doctorIntent)
        }
    }

    /// Closes an intent whose key never reached the device (the doctor was stopped before the load).
    public func closeKeyDoctorIntentNotLoaded(id: Int64) async throws {
        _ = try await run("record keys doctor intents") { transaction in
            try transaction.execute("UPDATE key_doctor_intents SET outcome = 'not_loaded' WHERE id = $1 AND outcome IS NULL", [id])
        }
    }

    /// In a registration's transaction: closes the intent as registered.
    static func closeKeyDoctorIntent(_ id: Int64, registrationID: Int64, in transaction: PostgresTransaction) throws {
        _ = try transaction.execute("""
            UPDATE key_doctor_intents SET outcome = 'registered', registration_id = $2 WHERE id = $1 AND outcome IS NULL
            """, [id, registrationID])
    }

    static let doctorIntentColumns = "id, product_id, device_id, new_fingerprint, previous_fingerprint, escrow_object_id, "
        + "station, created_at"

    static func doctorIntent(_ row: PostgresRow) throws -> KeyDoctorIntent {
        KeyDoctorIntent(id: try row.decode("id"), productID: try row.decode("product_id"), deviceID: try row.decode("device_id"),
                        newFingerprint: try row.decode("new_fingerprint"),
                        previousFingerprint: try row.decode("previous_fingerprint"),
                        escrowObjectID: try row.decode("escrow_object_id"), station: try row.decode("station"),
                        createdAt: try row.decode("created_at"))
    }
}

/// A `keys doctor` about to write `newFingerprint` (escrowed as `escrowObjectID`) to a device.
public struct KeyDoctorIntent: Sendable, Hashable {
    public let id: Int64
    public let productID: String
    public let deviceID: String
    public let newFingerprint: String
    public let previousFingerprint: String?
    public let escrowObjectID: Int64
    public let station: String
    public let createdAt: Date
}
