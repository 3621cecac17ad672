import Foundation

/// What the RMA bench asks of the registry: a device's active registrations in any product,
/// escrow objects by where they are stored, and re-keying a device outside a job (the old key
/// superseded and the new one registered in one transaction).
extension RegistryDatabase {
    /// The device's active registrations, one per product it is registered in (usually one).
    public func activeRegistrations(deviceID: String) async throws -> [KeyRegistration] {
        try await run("read key registrations") { transaction in
            try transaction.query("""
                SELECT \(Self.registrationColumns(prefix: "")) FROM key_registrations
                WHERE device_id = $1 AND status = 'active' ORDER BY product_id
                """, [deviceID]).map { try Self.keyRegistration($0, prefix: "") }
        }
    }

    /// Any registration (active or not) of the public key with this fingerprint.
    public func registration(fingerprint: String) async throws -> KeyRegistration? {
        try await run("read key registrations") { transaction in
            try transaction.queryOne("""
                SELECT \(Self.registrationColumns(prefix: "")) FROM key_registrations WHERE fingerprint = $1
                """, [fingerprint]).map { try Self.keyRegistration($0, prefix: "") }
        }
    }

    /// The escrow object recorded at this store and object key, if any.
    public func escrowObject(storeURI: String, objectKey: String) async throws -> EscrowObject? {
        try await run("read escrow objects") { transaction in
            try transaction.queryOne("""
                SELECT \(Self.escrowColumns(prefix: "")) FROM escrow_objects WHERE store_uri = $1 AND object_key = $2
                """, [storeURI, objectKey]).map { try Self.escrowObject($0, prefix: "") }
        }
    }

    /// Every escrow object recorded for a device (registered keys and superseded ones), oldest first.
    public func escrowObjects(deviceID: String) async throws -> [EscrowObject] {
        try await run("read escrow objects") { transaction in
            try transaction.query("""
                SELECT \(Self.escrowColumns(prefix: "")) FROM escrow_objects WHERE device_id = $1 ORDER BY id
                """, [deviceID]).map { try Self.escrowObject($0, prefix: "") }
        }
    }

    /// Registers a key outside a job (`keys send`, `keys doctor`). With `superseding`, the device's
    /// active key in the product (if any) is superseded first, in the same transaction, with a
    /// `key.superseded` event naming `reason`; without it an active key is a conflict. A key
    /// registered to another device is always refused (`fingerprintConflict`).
    /// `doctorIntent`: the `keys doctor` intent this registration finishes (closed in the same transaction).
    public func registerKey(_ registration: NewKeyRegistration, superseding: Bool, reason: String,
                            ticket: String? = nil, doctorIntent: Int64? = nil) async throws -> (registered: KeyRegistration, superseded: KeyRegistration?) {
        precondition(registration.jobID == nil, "re-keys outside a job only")
        do {
            return try await transaction { transaction in
                var superseded: KeyRegistration?
                if superseding {
                    superseded = try Self.changeStatus(to: .superseded, productID: registration.productID,
                                                       deviceID: registration.deviceID, reason: reason, ticket: ticket,
                                                       station: registration.station,
                                                       replacedBy: registration.fingerprint, in: transaction)
                }
                if let same = try transaction.queryOne("""
                    SELECT \(Self.registrationColumns(prefix: "")) FROM key_registrations
                    WHERE fingerprint = $1 AND device_id = $2 AND product_id = $3 AND status = 'active'
                    """, [registration.fingerprint, registration.deviceID, registration.productID]) {
                    let registered = try Self.keyRegistration(same, prefix: "")  // already registered: a replay
                    if let doctorIntent { try Self.closeKeyDoctorIntent(doctorIntent, registrationID: registered.id, in: transaction) }
                    return (registered, superseded)
                }
                let registered = try Self.insertRegistration(registration, in: transaction)
                if let doctorIntent { try Self.closeKeyDoctorIntent(doctorIntent, registrationID: registered.id, in: transaction) }
                return (registered, superseded)
            }
        } catch let error as PostgresError {
            throw try await conflict(error, registrations: [registration])
        }
    }
}
