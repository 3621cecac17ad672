import Foundation

/// The registry's operations on one connection: jobs and per-device workflow state, escrow
/// objects, key registrations, restorations and the audit trail.
///
/// Every operation is one transaction. Conflicts the database detects (a second active key for a
/// device, a public key registered twice, an escrow object of another key) come back as
/// `RegistryError` cases naming the device and fingerprint; everything else as `.database` with
/// the server's SQLSTATE and message.
///
/// Over a single connection, operations run one after another; over a `PostgresConnectionPool`
/// (`connect(settings, connections:)`), concurrent device tasks run theirs side by side.
public struct RegistryDatabase: Sendable {
    public let client: any PostgresClient

    public init(client: any PostgresClient) {
        self.client = client
    }

    /// Connects with `settings` (by default `DATABASE_URL`, libpq's `PG*`, or the local cluster).
    /// With `connections` > 1 the registry uses a pool of up to that many connections.
    public static func connect(_ settings: ConnectionSettings = .fromEnvironment(),
                               connections: Int = 1) async throws -> RegistryDatabase {
        if connections > 1 {
            let pool = PostgresConnectionPool(settings: settings, size: connections)
            _ = try await pool.query("SELECT 1", [])  // fail now, not at first use, if unreachable
            return RegistryDatabase(client: pool)
        }
        return RegistryDatabase(client: try await PostgresConnection.connect(settings, label: "keyline.registry"))
    }

    // MARK: Products and jobs

    public func createProduct(id: String, name: String, platform: String? = nil) async throws -> Product {
        try await run("create product \(id)") { transaction in
            let row = try transaction.queryOne(
                "INSERT INTO products (id, name, platform) VALUES ($1, $2, $3) RETURNING \(Self.productColumns)",
                [id, name, platform])
            return try Self.product(row!)
        } mapping: { error in
            error.isUniqueViolation ? .productExists(id) : nil
        }
    }

    public func product(id: String) async throws -> Product? {
        try await run("read products") { transaction in
            try transaction.queryOne("SELECT \(Self.productColumns) FROM products WHERE id = $1", [id]).map(Self.product)
        }
    }

    public func createJob(productID: String, station: String, pipeline: String) async throws -> Job {
        try await run("create jobs") { transaction in
            let row = try transaction.queryOne(
                "INSERT INTO jobs (product_id, station, pipeline) VALUES ($1, $2, $3) RETURNING \(Self.jobColumns)",
                [productID, station, pipeline])
            return try Self.job(row!)
        } mapping: { error in
            error.sqlState == "23503" ? .unknownProduct(productID) : nil
        }
    }

    public func finishJob(id: Int64, status: JobStatus) async throws -> Job {
        try await run("finish jobs") { transaction in
            guard let row = try transaction.queryOne(
                "UPDATE jobs SET status = $2, finished_at = CASE WHEN $2 = 'running' THEN NULL ELSE now() END "
                    + "WHERE id = $1 RETURNING \(Self.jobColumns)", [id, status.rawValue]) else {
                throw RegistryError.unknownJob(id)
            }
            return try Self.job(row)
        }
    }

    public func job(id: Int64) async throws -> Job? {
        try await run("read jobs") { transaction in
            try transaction.queryOne("SELECT \(Self.jobColumns) FROM jobs WHERE id = $1", [id]).map(Self.job)
        }
    }

    // MARK: Job devices

    /// Records a device's workflow state in a job, inserting the row on first sight.
    ///
    /// - Parameters:
    ///   - newAttempt: counts a new attempt (a retry after a failure); the first sighting is attempt 1.
    ///   - error: the reason, required for `.failed`; kept as `last_error` until a newer one.
    ///   - portPath: the USB bus/port path; kept when nil.
    /// The database refuses `registered`/`done` without an active registration from this job and
    /// `escrowed` without an escrow object (use `registerKey` to reach `registered`).
    @discardableResult
    public func recordJobDevice(jobID: Int64, deviceID: String, state: JobDeviceState, station: String,
                                portPath: String? = nil, error: String? = nil,
                                newAttempt: Bool = false) async throws -> JobDevice {
        try await run("record job devices") { transaction in
            let row = try transaction.queryOne("""
                INSERT INTO job_devices (job_id, device_id, state, attempts, last_error, port_path, station)
                VALUES ($1, $2, $3, 1, $4, $5, $6)
                ON CONFLICT (job_id, device_id) DO UPDATE SET
                    state = EXCLUDED.state,
                    attempts = job_devices.attempts + CASE WHEN $7::boolean THEN 1 ELSE 0 END,
                    last_error = COALESCE(EXCLUDED.last_error, job_devices.last_error),
                    port_path = COALESCE(EXCLUDED.port_path, job_devices.port_path),
                    station = EXCLUDED.station,
                    updated_at = now()
                RETURNING \(Self.jobDeviceColumns)
                """, [jobID, deviceID, state.rawValue, error, portPath, station, newAttempt])
            return try Self.jobDevice(row!)
        } mapping: { error in
            error.sqlState == "23503" ? .unknownJob(jobID) : nil
        }
    }

    public func jobDevice(jobID: Int64, deviceID: String) async throws -> JobDevice? {
        try await run("read job devices") { transaction in
            try transaction.queryOne("SELECT \(Self.jobDeviceColumns) FROM job_devices WHERE job_id = $1 AND device_id = $2",
                                     [jobID, deviceID]).map(Self.jobDevice)
        }
    }

    public func jobDevices(jobID: Int64) async throws -> [JobDevice] {
        try await run("read job devices") { transaction in
            try transaction.query("SELECT \(Self.jobDeviceColumns) FROM job_devices WHERE job_id = $1 ORDER BY device_id",
                                  [jobID]).map(Self.jobDevice)
        }
    }

    // MARK: Escrow objects

    /// Records an escrow object after it was written durably (design.md, workflow step 5).
    public func recordEscrowObject(_ object: NewEscrowObject) async throws -> EscrowObject {
        try await run("record escrow objects") { transaction in
            let row = try transaction.queryOne("""
                INSERT INTO escrow_objects (product_id, device_id, public_key_sha256, store_uri, object_key,
                                            ciphertext_sha256, size_bytes, recipients, job_id, station)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                RETURNING \(Self.escrowColumns(prefix: ""))
                """, [object.productID, object.deviceID, object.publicKeySHA256, object.storeURI, object.objectKey,
                      object.ciphertextSHA256, object.sizeBytes, object.recipients, object.jobID, object.station])
            return try Self.escrowObject(row!, prefix: "")
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

    // MARK: Key registrations

    /// Registers a public key whose escrow object is recorded, and in the same transaction moves
    /// the job device from `escrowed` to `registered` and appends a `key.registered` event.
    public func registerKey(_ registration: NewKeyRegistration) async throws -> KeyRegistration {
        try await registerKeys([registration])[0]
    }

    /// Registers several keys in one transaction (all or none), as `registerKey` does for one.
    public func registerKeys(_ registrations: [NewKeyRegistration]) async throws -> [KeyRegistration] {
        guard !registrations.isEmpty else { return [] }
        do {
            return try await client.transaction(isolation: .readCommitted) { transaction in
                try registrations.map { try Self.insertRegistration($0, in: transaction) }
            }
        } catch let error as PostgresError {
            // The transaction was rolled back; find out what the failed insert collided with.
            throw try await conflict(error, registrations: registrations)
        } catch let error as RegistryError {
            throw error
        }
    }

    private static func insertRegistration(_ registration: NewKeyRegistration,
                                           in transaction: PostgresTransaction) throws -> KeyRegistration {
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
            let moved = try transaction.execute("""
                UPDATE job_devices SET state = 'registered', updated_at = now()
                WHERE job_id = $1 AND device_id = $2 AND state = 'escrowed'
                """, [jobID, registration.deviceID])
            if moved == 0 {
                let state = try transaction.queryOne(
                    "SELECT state FROM job_devices WHERE job_id = $1 AND device_id = $2", [jobID, registration.deviceID])
                    .map { try $0.decode("state", as: String.self) }
                throw RegistryError.notEscrowed(jobID: jobID, deviceID: registration.deviceID,
                                                state: state.flatMap(JobDeviceState.init(rawValue:)))
            }
        }
        try appendEvent(kind: "key.registered", station: registration.station, productID: registration.productID,
                        deviceID: registration.deviceID, jobID: registration.jobID,
                        detail: ["fingerprint": registration.fingerprint,
                                 "registration_id": String(registered.id),
                                 "escrow_object_id": String(registration.escrowObjectID),
                                 "algorithm": registration.algorithm.rawValue],
                        in: transaction)
        return registered
    }

    /// Turns a failed registration into the conflict it names, looking up the existing key.
    private func conflict(_ error: PostgresError, registrations: [NewKeyRegistration]) async throws -> RegistryError {
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

    /// Marks the device's active key superseded (RMA: a new key replaces it).
    public func supersedeKey(productID: String, deviceID: String, reason: String,
                             station: String) async throws -> KeyRegistration {
        try await changeStatus(to: .superseded, productID: productID, deviceID: deviceID, reason: reason, station: station)
    }

    /// Marks the device's active key revoked (compromised or retired); the device then has none.
    public func revokeKey(productID: String, deviceID: String, reason: String,
                          station: String) async throws -> KeyRegistration {
        try await changeStatus(to: .revoked, productID: productID, deviceID: deviceID, reason: reason, station: station)
    }

    private func changeStatus(to status: RegistrationStatus, productID: String, deviceID: String, reason: String,
                              station: String) async throws -> KeyRegistration {
        try await run(status == .revoked ? "revoke keys" : "supersede keys") { transaction in
            guard let row = try transaction.queryOne("""
                UPDATE key_registrations SET status = $3, status_reason = $4
                WHERE product_id = $1 AND device_id = $2 AND status = 'active'
                RETURNING \(Self.registrationColumns(prefix: ""))
                """, [productID, deviceID, status.rawValue, reason]) else {
                throw RegistryError.noActiveKey(productID: productID, deviceID: deviceID)
            }
            let registration = try Self.keyRegistration(row, prefix: "")
            try Self.appendEvent(kind: "key.\(status.rawValue)", station: station, productID: productID,
                                 deviceID: deviceID, jobID: nil,
                                 detail: ["fingerprint": registration.fingerprint, "reason": reason,
                                          "registration_id": String(registration.id)],
                                 in: transaction)
            return registration
        }
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

    // MARK: Restorations

    /// Records an attempt to restore registration `registrationID`'s key from its escrow object,
    /// and appends a `key.restored` or `key.restore_failed` event.
    public func recordRestoration(registrationID: Int64, station: String, outcome: RestorationOutcome,
                                  detail: String? = nil) async throws -> Restoration {
        try await run("record restorations") { transaction in
            guard let row = try transaction.queryOne("""
                INSERT INTO restorations (registration_id, product_id, device_id, escrow_object_id, station, outcome, detail)
                SELECT id, product_id, device_id, escrow_object_id, $2, $3, $4
                FROM key_registrations WHERE id = $1
                RETURNING \(Self.restorationColumns)
                """, [registrationID, station, outcome.rawValue, detail]) else {
                throw RegistryError.unknownRegistration(registrationID)
            }
            let restoration = try Self.restoration(row)
            try Self.appendEvent(kind: outcome == .restored ? "key.restored" : "key.restore_failed", station: station,
                                 productID: restoration.productID, deviceID: restoration.deviceID, jobID: nil,
                                 detail: ["registration_id": String(registrationID),
                                          "restoration_id": String(restoration.id)].merging(
                                            detail.map { ["detail": $0] } ?? [:]) { first, _ in first },
                                 in: transaction)
            return restoration
        }
    }

    public func restorations(productID: String, deviceID: String? = nil) async throws -> [Restoration] {
        try await run("read restorations") { transaction in
            try transaction.query("""
                SELECT \(Self.restorationColumns) FROM restorations
                WHERE product_id = $1 AND ($2::text IS NULL OR device_id = $2) ORDER BY restored_at, id
                """, [productID, deviceID]).map(Self.restoration)
        }
    }

    // MARK: Events

    /// Appends an event to the audit trail. `detail` holds small string facts, never key material.
    @discardableResult
    public func appendEvent(kind: String, station: String?, productID: String? = nil, deviceID: String? = nil,
                            jobID: Int64? = nil, detail: [String: String] = [:]) async throws -> AuditEvent {
        try await run("append events") { transaction in
            try Self.appendEvent(kind: kind, station: station, productID: productID, deviceID: deviceID,
                                 jobID: jobID, detail: detail, in: transaction)
        }
    }

    /// Events for a device or a job (or all), oldest first.
    public func events(deviceID: String? = nil, jobID: Int64? = nil) async throws -> [AuditEvent] {
        try await run("read events") { transaction in
            try transaction.query("""
                SELECT \(Self.eventColumns) FROM events
                WHERE ($1::text IS NULL OR device_id = $1) AND ($2::bigint IS NULL OR job_id = $2)
                ORDER BY id
                """, [deviceID, jobID]).map(Self.event)
        }
    }

    @discardableResult
    static func appendEvent(kind: String, station: String?, productID: String?, deviceID: String?, jobID: Int64?,
                            detail: [String: String], in transaction: PostgresTransaction) throws -> AuditEvent {
        let json = String(decoding: try JSONSerialization.data(withJSONObject: detail, options: [.sortedKeys]),
                          as: UTF8.self)
        let row = try transaction.queryOne("""
            INSERT INTO events (kind, station, product_id, device_id, job_id, detail)
            VALUES ($1, $2, $3, $4, $5, $6::jsonb) RETURNING \(eventColumns)
            """, [kind, station, productID, deviceID, jobID, json])
        return try event(row!)
    }

    // MARK: Running and error mapping

    /// One transaction; PostgreSQL errors become `RegistryError` (`mapping` first, then privilege
    /// refusals, then `.database`).
    private func run<T: Sendable>(_ action: String, _ body: @escaping @Sendable (PostgresTransaction) throws -> T,
                                  mapping: @Sendable (PostgresError) -> RegistryError? = { _ in nil }) async throws -> T {
        do {
            return try await client.transaction(isolation: .readCommitted, body)
        } catch let error as PostgresError {
            if let mapped = mapping(error) { throw mapped }
            if error.isInsufficientPrivilege { throw RegistryError.permissionDenied(action: action, error) }
            throw RegistryError.database(error)
        }
    }

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

    static let jobDeviceColumns =
        "job_id, device_id, state, attempts, last_error, port_path, station, created_at, updated_at"

    static func jobDevice(_ row: PostgresRow) throws -> JobDevice {
        JobDevice(jobID: try row.decode("job_id"), deviceID: try row.decode("device_id"),
                  state: try enumValue(row, "state"), attempts: try row.decode("attempts"),
                  lastError: try row.decode("last_error"), portPath: try row.decode("port_path"),
                  station: try row.decode("station"), createdAt: try row.decode("created_at"),
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
        "id, registration_id, product_id, device_id, escrow_object_id, station, operator, outcome, detail, restored_at"

    static func restoration(_ row: PostgresRow) throws -> Restoration {
        Restoration(id: try row.decode("id"), registrationID: try row.decode("registration_id"),
                    productID: try row.decode("product_id"), deviceID: try row.decode("device_id"),
                    escrowObjectID: try row.decode("escrow_object_id"), station: try row.decode("station"),
                    operator: try row.decode("operator"), outcome: try enumValue(row, "outcome"),
                    detail: try row.decode("detail"), restoredAt: try row.decode("restored_at"))
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
