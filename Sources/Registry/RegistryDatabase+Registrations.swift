import Foundation

extension RegistryDatabase {
    // MARK: Key registrations

    /// Registers a public key whose escrow object is recorded, and in the same transaction moves
    /// the job device from `escrowed` to `registered` and appends a `key.registered` event.
    /// Idempotent: when the device is already `registered` (or `done`) in the job with this key,
    /// the existing registration is returned and nothing is written.
    public func registerKey(_ registration: NewKeyRegistration) async throws -> KeyRegistration {
        try await registerKeys([registration])[0]
    }

    /// Registers several keys in one transaction (all or none), as `registerKey` does for one.
    public func registerKeys(_ registrations: [NewKeyRegistration]) async throws -> [KeyRegistration] {
        guard !registrations.isEmpty else { return [] }
        do {
            return try await transaction { transaction in
                try registrations.map { try Self.insertRegistration($0, in: transaction) }
            }
        } catch let error as PostgresError {
            // The transaction was rolled back; find out what the failed insert collided with.
            if let lost = JobLeaseError(error, fence: fence) { throw lost }
            throw try await conflict(error, registrations: registrations)
        } catch let error as RegistryError {
            throw error
        }
    }

    static func insertRegistration(_ registration: NewKeyRegistration,
                                   in transaction: PostgresTransaction) throws -> KeyRegistration {
        if let jobID = registration.jobID {
            // Locked first, so a replay racing the original waits for it and then sees `registered`.
            let device = try lockedJobDevice(jobID: jobID, deviceID: registration.deviceID, in: transaction)
            if let device, ["registered", "done"].contains(device.state),
               let row = try transaction.queryOne("""
                SELECT \(registrationColumns(prefix: "")) FROM key_registrations
                WHERE fingerprint = $1 AND job_id = $2 AND device_id = $3 AND product_id = $4 AND status = 'active'
                """, [registration.fingerprint, jobID, registration.deviceID, registration.productID]) {
                return try keyRegistration(row, prefix: "")  // a replay: already registered from this job
            }
            guard let device, device.state == "escrowed" else {
                throw RegistryError.notEscrowed(jobID: jobID, deviceID: registration.deviceID, state: device?.state)
            }
            // Only the key the device was recorded holding at key_ready is registered for it.
            if let recorded = device.keyFingerprint, recorded != registration.fingerprint {
                throw RegistryError.keyFingerprintMismatch(jobID: jobID, deviceID: registration.deviceID,
                                                           recorded: recorded, attempted: registration.fingerprint)
            }
        }
        let row = try transaction.queryOne("""
            INSERT INTO key_registrations (product_id, device_id, algorithm, spki_der, fingerprint,
                                           escrow_object_id, job_id, station)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            RETURNING \(registrationColumns(prefix: ""))
            """, [registration.productID, registration.deviceID, registration.algorithm.rawValue,
                  PostgresValue.bytea(registration.spkiDER), registration.fingerprint,
                  registration.escrowObjectID, registration.jobID, registration.station])
        let registered = try keyRegistration(row!, prefix: "")
        if let jobID = registration.jobID {
            _ = try transaction.execute("""
                UPDATE job_devices SET state = 'registered', updated_at = now()
                WHERE job_id = $1 AND device_id = $2 AND state = 'escrowed'
                """, [jobID, registration.deviceID])
        }
        try appendEvent(kind: "key.registered", station: registration.station, productID: registration.productID,
                        deviceID: registration.deviceID, jobID: registration.jobID,
                        detail: ["fingerprint": registration.fingerprint,
                                 "registration_id": String(registered.id),
                                 "escrow_object_id": String(registration.escrowObjectID),
                                 "algorithm": registration.algorithm.rawValue],
                        in: transaction)
        if registration.queueCloudUpload {
            try queueCloudUpload(of: registered, station: registration.station, in: transaction)
        }
        return registered
    }

    /// Turns a failed registration into the conflict it names, looking up the existing key.
    func conflict(_ error: PostgresError, registrations: [NewKeyRegistration]) async throws -> RegistryError {
        if error.isInsufficientPrivilege { return .permissionDenied(action: "register keys", error) }
        switch (error.sqlState, error.constraint) {
        case ("23505", "key_registrations_one_active_per_device"?):
            for registration in registrations {
                if let active = try await activeRegistration(productID: registration.productID,
                                                             deviceID: registration.deviceID),
                   active.fingerprint != registration.fingerprint || registrations.count == 1 {
                    return .activeKeyConflict(productID: registration.productID, deviceID: registration.deviceID,
                                              activeFingerprint: active.fingerprint,
                                              attemptedFingerprint: registration.fingerprint)
                }
            }
            // Two keys for one device inside the same batch.
            let duplicate = registrations.first { candidate in
                registrations.filter { $0.productID == candidate.productID && $0.deviceID == candidate.deviceID }.count > 1
            } ?? registrations[0]
            return .activeKeyConflict(productID: duplicate.productID, deviceID: duplicate.deviceID,
                                      activeFingerprint: nil, attemptedFingerprint: duplicate.fingerprint)
        case ("23505", "key_registrations_fingerprint_unique"?):
            for registration in registrations {
                let rows = try await client.query(
                    "SELECT device_id, product_id FROM key_registrations WHERE fingerprint = $1", [registration.fingerprint])
                if let row = rows.first {
                    return .fingerprintConflict(fingerprint: registration.fingerprint,
                                                attemptedDeviceID: registration.deviceID,
                                                registeredDeviceID: try row.decode("device_id"),
                                                registeredProductID: try row.decode("product_id"))
                }
            }
            let duplicate = registrations.first { candidate in
                registrations.filter { $0.fingerprint == candidate.fingerprint }.count > 1
            } ?? registrations[0]
            return .fingerprintConflict(fingerprint: duplicate.fingerprint, attemptedDeviceID: duplicate.deviceID,
                                        registeredDeviceID: nil, registeredProductID: nil)
        case ("23503", "key_registrations_escrow_object"?):
            for registration in registrations {
                let rows = try await client.query("""
                    SELECT 1 FROM escrow_objects
                    WHERE id = $1 AND product_id = $2 AND device_id = $3 AND public_key_sha256 = $4
                    """, [registration.escrowObjectID, registration.productID, registration.deviceID, registration.fingerprint])
                if rows.isEmpty {
                    return .escrowObjectMismatch(escrowObjectID: registration.escrowObjectID,
                                                 productID: registration.productID, deviceID: registration.deviceID,
                                                 fingerprint: registration.fingerprint)
                }
            }
            return .database(error)
        case ("23503", let constraint?) where constraint.contains("product"):
            return .unknownProduct(registrations[0].productID)
        case ("23503", let constraint?) where constraint.contains("job"):
            return .unknownJob(registrations[0].jobID ?? 0)
        default:
            return .database(error)
        }
    }

    public func activeRegistration(productID: String, deviceID: String) async throws -> KeyRegistration? {
        try await run("read key registrations") { transaction in
            try transaction.queryOne("""
                SELECT \(Self.registrationColumns(prefix: "")) FROM key_registrations
                WHERE product_id = $1 AND device_id = $2 AND status = 'active'
                """, [productID, deviceID]).map { try Self.keyRegistration($0, prefix: "") }
        }
    }

    /// Marks the device's active key superseded (RMA: a new key replaces it). The database records
    /// who, where, when and why on the row and appends the `key.superseded` event (0011).
    public func supersedeKey(productID: String, deviceID: String, reason: String, ticket: String? = nil,
                             station: String) async throws -> KeyRegistration {
        try await changeStatus(to: .superseded, productID: productID, deviceID: deviceID, reason: reason,
                               ticket: ticket, station: station)
    }

    /// Marks the device's active key revoked (compromised or retired); the device then has none.
    /// An administrator's call: bench and station logins are refused by the database.
    public func revokeKey(productID: String, deviceID: String, reason: String, ticket: String? = nil,
                          station: String) async throws -> KeyRegistration {
        try await changeStatus(to: .revoked, productID: productID, deviceID: deviceID, reason: reason,
                               ticket: ticket, station: station)
    }

    func changeStatus(to status: RegistrationStatus, productID: String, deviceID: String, reason: String,
                      ticket: String?, station: String) async throws -> KeyRegistration {
        try await run(status == .revoked ? "revoke keys" : "supersede keys") { transaction in
            guard let row = try Self.changeStatus(to: status, productID: productID, deviceID: deviceID, reason: reason,
                                                  ticket: ticket, station: station, replacedBy: nil, in: transaction) else {
                throw RegistryError.noActiveKey(productID: productID, deviceID: deviceID)
            }
            return row
        }
    }

    /// The one way a registration's status changes (`keyline_change_key_status`, 0011): the
    /// function checks the login's binding and the trigger behind it appends the event.
    static func changeStatus(to status: RegistrationStatus, productID: String, deviceID: String, reason: String,
                             ticket: String?, station: String, replacedBy: String?,
                             in transaction: PostgresTransaction) throws -> KeyRegistration? {
        try transaction.queryOne("""
            SELECT \(registrationColumns(prefix: "")) FROM keyline_change_key_status($1, $2, $3, $4, $5, $6, $7)
            """, [productID, deviceID, status.rawValue, reason, ticket, station, replacedBy])
            .map { try keyRegistration($0, prefix: "") }
    }

    /// Registrations of a product with the escrow object backing each, oldest first.
    public func registrations(productID: String, status: RegistrationStatus? = nil) async throws -> [AuditedRegistration] {
        try await run("read key registrations") { transaction in
            try transaction.query("""
                SELECT \(Self.registrationColumns(prefix: "r.")), \(Self.escrowColumns(prefix: "e.", alias: "e_"))
                FROM key_registrations r JOIN escrow_objects e ON e.id = r.escrow_object_id
                WHERE r.product_id = $1 AND ($2::text IS NULL OR r.status = $2)
                ORDER BY r.registered_at, r.id
                """, [productID, status?.rawValue]).map { row in
                AuditedRegistration(registration: try Self.keyRegistration(row, prefix: ""),
                                    escrowObject: try Self.escrowObject(row, prefix: "e_"))
            }
        }
    }

}
