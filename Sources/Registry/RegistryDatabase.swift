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
    /// The job lease this registry's writes present (`fenced(by:)`): the database refuses a leased
    /// job's state writes that do not present its current lease (schema 0010).
    public private(set) var fence: JobLeaseFence?

    public init(client: any PostgresClient) {
        self.client = client
    }

    /// The same registry, presenting `lease` on every transaction: a run that lost its lease (a
    /// second `--resume` took the job, e.g. after a database restart) has its next write refused
    /// with `JobLeaseError.lost`.
    public func fenced(by lease: JobLease) -> RegistryDatabase {
        var fenced = self
        fenced.fence = lease.fence
        return fenced
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

    /// The newest schema migration applied (nil on a database never migrated). A station checks
    /// it before touching devices: an older schema lacks what the workflow records.
    public func schemaVersion() async throws -> Int? {
        try await run("read schema_migrations") { transaction in
            guard let present = try transaction.queryOne("SELECT to_regclass('schema_migrations') IS NOT NULL AS present"),
                  try present.decode("present", as: Bool.self) else { return nil }
            return try transaction.queryOne("SELECT max(version) AS version FROM schema_migrations")?
                .decode("version", as: Int?.self)
        }
    }

    /// The schema version this build of keyline needs (its newest embedded migration).
    public static var requiredSchemaVersion: Int { Migration.embedded.map(\.version).max() ?? 0 }

    /// Refuses a registry whose schema is older than this keyline needs: checked before any
    /// device is touched (provision, restore, the bench's key commands) and before an audit reads.
    public func requireCurrentSchema() async throws {
        try Self.requireCurrent(schemaVersion: try await schemaVersion())
    }

    /// `RegistryError.schemaBehind` unless `version` is at least `requiredSchemaVersion`.
    public static func requireCurrent(schemaVersion version: Int?) throws(RegistryError) {
        guard let version, version >= requiredSchemaVersion else {
            throw .schemaBehind(have: version, need: requiredSchemaVersion)
        }
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

    /// The station's jobs still running (interrupted by a crash or power cut), oldest first.
    public func unfinishedJobs(station: String) async throws -> [Job] {
        try await run("read jobs") { transaction in
            try transaction.query("""
                SELECT \(Self.jobColumns) FROM jobs WHERE station = $1 AND status = 'running' ORDER BY started_at, id
                """, [station]).map(Self.job)
        }
    }

    // MARK: Restorations

    /// Records an attempt to restore registration `registrationID`'s key from its escrow object,
    /// and appends a `key.restored` or `key.restore_failed` event.
    public func recordRestoration(registrationID: Int64, station: String, outcome: RestorationOutcome,
                                  detail: String? = nil) async throws -> Restoration {
        try await recordRestoration(NewRestoration(registrationID: registrationID, station: station,
                                                   outcome: outcome, detail: detail))
    }

    /// Records a restore attempt (operator = the database login, set by the database) and appends
    /// a `key.restored` or `key.restore_failed` event with its reason, ticket, outcome and duration.
    public func recordRestoration(_ new: NewRestoration) async throws -> Restoration {
        try await run("record restorations", { transaction in
            // Re-read in this transaction: a key superseded or revoked since the restore read it is
            // not recorded restored (the database's trigger holds the same rule under a lock).
            if new.outcome == .restored,
               let current = try transaction.queryOne("SELECT status FROM key_registrations WHERE id = $1",
                                                      [new.registrationID]) {
                let status: String = try current.decode("status")
                guard status == RegistrationStatus.active.rawValue else {
                    throw RegistryError.registrationNotActive(registrationID: new.registrationID, status: status)
                }
            }
            guard let row = try transaction.queryOne("""
                INSERT INTO restorations (registration_id, product_id, device_id, escrow_object_id, station, outcome,
                                          detail, reason, ticket, duration_ms, found_key, superseded_escrow_object_id)
                SELECT id, product_id, device_id, keyline_current_escrow_object(id), $2, $3, $4, $5, $6, $7, $8, $9
                FROM key_registrations WHERE id = $1
                RETURNING \(Self.restorationColumns)
                """, [new.registrationID, new.station, new.outcome.rawValue, new.detail, new.reason, new.ticket,
                      new.durationMilliseconds, new.foundKey, new.supersededEscrowObjectID]) else {
                throw RegistryError.unknownRegistration(new.registrationID)
            }
            let restoration = try Self.restoration(row)
            var detail = ["registration_id": String(new.registrationID), "restoration_id": String(restoration.id),
                          "outcome": new.outcome.rawValue]
            detail["detail"] = new.detail
            detail["reason"] = new.reason
            detail["ticket"] = new.ticket
            detail["duration_ms"] = new.durationMilliseconds.map(String.init)
            detail["found_key"] = new.foundKey
            detail["superseded_escrow_object_id"] = new.supersededEscrowObjectID.map(String.init)
            try Self.appendEvent(kind: new.outcome == .restored ? "key.restored" : "key.restore_failed", station: new.station,
                                 productID: restoration.productID, deviceID: restoration.deviceID, jobID: nil,
                                 detail: detail, in: transaction)
            return restoration
        }, mapping: { error in
            error.constraint == "restorations_registration_active"
                ? .registrationNotActive(registrationID: new.registrationID, status: nil) : nil
        })
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
    func run<T: Sendable>(_ action: String, _ body: @escaping @Sendable (PostgresTransaction) throws -> T,
                                  mapping: @Sendable (PostgresError) -> RegistryError? = { _ in nil }) async throws -> T {
        do {
            return try await transaction(body)
        } catch let error as PostgresError {
            if let lost = JobLeaseError(error, fence: fence) { throw lost }
            if let mapped = mapping(error) { throw mapped }
            if error.isInsufficientPrivilege { throw RegistryError.permissionDenied(action: action, error) }
            throw RegistryError.database(error)
        }
    }

    /// One read-committed transaction that first presents the fence, if any.
    func transaction<T: Sendable>(_ body: @escaping @Sendable (PostgresTransaction) throws -> T) async throws -> T {
        let fence = self.fence
        return try await client.transaction(isolation: .readCommitted) { transaction in
            try fence?.present(in: transaction)
            return try body(transaction)
        }
    }
}
