import Foundation

extension RegistryDatabase {
    // MARK: Row decoding

    static let productColumns = "id, name, platform, created_at"

    static func product(_ row: PostgresRow) throws -> Product {
        Product(id: try row.decode("id"), name: try row.decode("name"), platform: try row.decode("platform"),
                createdAt: try row.decode("created_at"))
    }

    static let jobColumns = "id, product_id, station, pipeline, status, started_at, finished_at"

    static func job(_ row: PostgresRow) throws -> Job {
        Job(id: try row.decode("id"), productID: try row.decode("product_id"), station: try row.decode("station"),
            pipeline: try row.decode("pipeline"), status: try enumValue(row, "status"),
            startedAt: try row.decode("started_at"), finishedAt: try row.decode("finished_at"))
    }

    static let jobDeviceColumns = "job_id, device_id, state, last_good_state, attempts, last_error, port_path, "
        + "platform, key_fingerprint, station, created_at, updated_at, abandoned_at, abandon_reason"

    static func jobDevice(_ row: PostgresRow) throws -> JobDevice {
        JobDevice(jobID: try row.decode("job_id"), deviceID: try row.decode("device_id"),
                  state: try row.decode("state"), lastGoodState: try row.decode("last_good_state"),
                  attempts: try row.decode("attempts"), lastError: try row.decode("last_error"),
                  portPath: try row.decode("port_path"), platform: try row.decode("platform"),
                  keyFingerprint: try row.decode("key_fingerprint"), station: try row.decode("station"),
                  createdAt: try row.decode("created_at"), updatedAt: try row.decode("updated_at"),
                  abandonedAt: try row.decode("abandoned_at"), abandonReason: try row.decode("abandon_reason"))
    }

    static let escrowIntentColumns = "id, job_id, device_id, product_id, public_key_sha256, store_uri, object_key, "
        + "ciphertext_sha256, size_bytes, recipients, station, created_at, committed_object_id, updated_at"

    static func escrowIntent(_ row: PostgresRow) throws -> EscrowIntent {
        EscrowIntent(id: try row.decode("id"), jobID: try row.decode("job_id"), deviceID: try row.decode("device_id"),
                     productID: try row.decode("product_id"), publicKeySHA256: try row.decode("public_key_sha256"),
                     storeURI: try row.decode("store_uri"), objectKey: try row.decode("object_key"),
                     ciphertextSHA256: try row.decode("ciphertext_sha256"), sizeBytes: try row.decode("size_bytes"),
                     recipients: try row.decode("recipients", as: PostgresTextArray.self).elements.compactMap { $0 },
                     station: try row.decode("station"), createdAt: try row.decode("created_at"),
                     committedEscrowObjectID: try row.decode("committed_object_id"),
                     updatedAt: try row.decode("updated_at"))
    }

    static let escrowColumnNames = ["id", "product_id", "device_id", "public_key_sha256", "store_uri", "object_key",
                                    "ciphertext_sha256", "size_bytes", "recipients", "job_id", "station", "created_at"]

    /// `prefix` qualifies the columns (`e.`), `alias` renames them in the result (`e_id` …).
    static func escrowColumns(prefix: String, alias: String = "") -> String {
        escrowColumnNames.map { alias.isEmpty ? prefix + $0 : "\(prefix)\($0) AS \(alias)\($0)" }.joined(separator: ", ")
    }

    static func escrowObject(_ row: PostgresRow, prefix: String) throws -> EscrowObject {
        EscrowObject(id: try row.decode(prefix + "id"), productID: try row.decode(prefix + "product_id"),
                     deviceID: try row.decode(prefix + "device_id"),
                     publicKeySHA256: try row.decode(prefix + "public_key_sha256"),
                     storeURI: try row.decode(prefix + "store_uri"), objectKey: try row.decode(prefix + "object_key"),
                     ciphertextSHA256: try row.decode(prefix + "ciphertext_sha256"),
                     sizeBytes: try row.decode(prefix + "size_bytes"),
                     recipients: try row.decode(prefix + "recipients", as: PostgresTextArray.self).elements.compactMap { $0 },
                     jobID: try row.decode(prefix + "job_id"), station: try row.decode(prefix + "station"),
                     createdAt: try row.decode(prefix + "created_at"))
    }

    static func registrationColumns(prefix: String) -> String {
        ["id", "product_id", "device_id", "algorithm", "spki_der", "fingerprint", "escrow_object_id", "job_id",
         "station", "registered_at", "status", "status_changed_at", "status_reason"]
            .map { prefix + $0 }.joined(separator: ", ")
    }

    static func keyRegistration(_ row: PostgresRow, prefix: String) throws -> KeyRegistration {
        KeyRegistration(id: try row.decode(prefix + "id"), productID: try row.decode(prefix + "product_id"),
                        deviceID: try row.decode(prefix + "device_id"),
                        algorithm: try enumValue(row, prefix + "algorithm"),
                        spkiDER: try row.decode(prefix + "spki_der"), fingerprint: try row.decode(prefix + "fingerprint"),
                        escrowObjectID: try row.decode(prefix + "escrow_object_id"),
                        jobID: try row.decode(prefix + "job_id"), station: try row.decode(prefix + "station"),
                        registeredAt: try row.decode(prefix + "registered_at"),
                        status: try enumValue(row, prefix + "status"),
                        statusChangedAt: try row.decode(prefix + "status_changed_at"),
                        statusReason: try row.decode(prefix + "status_reason"))
    }

    static let restorationColumns =
        "id, registration_id, product_id, device_id, escrow_object_id, station, operator, outcome, detail, restored_at, "
        + "reason, ticket, duration_ms, found_key, superseded_escrow_object_id"

    static func restoration(_ row: PostgresRow) throws -> Restoration {
        Restoration(id: try row.decode("id"), registrationID: try row.decode("registration_id"),
                    productID: try row.decode("product_id"), deviceID: try row.decode("device_id"),
                    escrowObjectID: try row.decode("escrow_object_id"), station: try row.decode("station"),
                    operator: try row.decode("operator"), outcome: try enumValue(row, "outcome"),
                    detail: try row.decode("detail"), restoredAt: try row.decode("restored_at"),
                    reason: try row.decode("reason"), ticket: try row.decode("ticket"),
                    durationMilliseconds: try row.decode("duration_ms"), foundKey: try row.decode("found_key"),
                    supersededEscrowObjectID: try row.decode("superseded_escrow_object_id"))
    }

    static let eventColumns = "id, occurred_at, actor, station, kind, product_id, device_id, job_id, detail"

    static func event(_ row: PostgresRow) throws -> AuditEvent {
        let json: String = try row.decode("detail")
        let object = (try? JSONSerialization.jsonObject(with: Data(json.utf8))) as? [String: Any] ?? [:]
        return AuditEvent(id: try row.decode("id"), occurredAt: try row.decode("occurred_at"),
                          actor: try row.decode("actor"), station: try row.decode("station"),
                          kind: try row.decode("kind"), productID: try row.decode("product_id"),
                          deviceID: try row.decode("device_id"), jobID: try row.decode("job_id"),
                          detail: object.mapValues { $0 as? String ?? "\($0)" })
    }

    static func enumValue<E: RawRepresentable>(_ row: PostgresRow, _ column: String) throws -> E where E.RawValue == String {
        let text: String = try row.decode(column)
        guard let value = E(rawValue: text) else { throw PostgresError.decoding(column, "\(E.self)", text) }
        return value
    }
}

