import Foundation

/// What an audit covers: a product (or all), registrations since a time, one job.
public struct AuditScope: Sendable, Hashable {
    public var productID: String?
    public var since: Date?
    public var jobID: Int64?

    public init(productID: String? = nil, since: Date? = nil, jobID: Int64? = nil) {
        self.productID = productID
        self.since = since
        self.jobID = jobID
    }
}

/// How bad a finding is. An `error` makes `keyline audit` exit non-zero.
public enum AuditSeverity: String, Sendable, Hashable, Codable, Comparable, CaseIterable {
    case info, warning, error

    private var rank: Int { Self.allCases.firstIndex(of: self)! }
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rank < rhs.rank }
}

/// One thing an audit found. Carries IDs, fingerprints and object keys, never key material.
public struct AuditFinding: Sendable, Hashable, Codable {
    public var severity: AuditSeverity
    /// Stable, for scripts: `no_escrow_object`, `escrow_object_missing`, … (see `keyline audit --help`).
    public var code: String
    public var productID: String?
    public var deviceID: String?
    public var fingerprint: String?
    public var jobID: Int64?
    public var objectKey: String?
    public var message: String

    public init(_ severity: AuditSeverity, _ code: String, productID: String? = nil, deviceID: String? = nil,
                fingerprint: String? = nil, jobID: Int64? = nil, objectKey: String? = nil, message: String) {
        self.severity = severity
        self.code = code
        self.productID = productID
        self.deviceID = deviceID
        self.fingerprint = fingerprint
        self.jobID = jobID
        self.objectKey = objectKey
        self.message = message
    }
}

/// A registered key as the audit lists it, with the escrow object that backs it (if any).
public struct AuditedKey: Sendable, Hashable {
    public var registrationID: Int64
    public var productID: String
    public var deviceID: String
    public var platform: String?
    public var algorithm: String
    public var fingerprint: String
    /// ISO 8601 in UTC to the second (`2026-11-21T10:30:00Z`), formatted by the server.
    public var registeredAt: String
    public var jobID: Int64?
    public var station: String
    public var status: String
    public var statusReason: String?
    public var escrowObjectID: Int64
    /// nil when no escrow object with the registration's ID exists.
    public var storeURI: String?
    public var objectKey: String?
    public var ciphertextSHA256: String?
}

/// An escrow object's place in a store, as `--check-store` compares it with the store.
public struct AuditedObject: Sendable, Hashable {
    public var id: Int64
    public var productID: String
    public var deviceID: String
    public var publicKeySHA256: String
    public var objectKey: String
    public var ciphertextSHA256: String
}

/// The rights the audit's login has beyond reading (an auditor needs none of them).
public struct AuditPrivileges: Sendable, Hashable {
    public var user: String
    public var superuser: Bool
    public var bypassesRowSecurity: Bool
    /// `table: PRIVILEGE` pairs the login holds on registry tables beyond SELECT.
    public var writes: [String]
    /// Registry tables the login cannot read.
    public var unreadable: [String]

    public var isReadOnly: Bool { !superuser && !bypassesRowSecurity && writes.isEmpty }
}

/// The audit's queries, all in one read-only snapshot and each streamed through a cursor, so a
/// product of millions of registrations is read with memory of one batch.
public struct RegistryAudit: Sendable {
    public let snapshot: PostgresSnapshot
    public let scope: AuditScope
    public var batchSize = 2_000

    public init(snapshot: PostgresSnapshot, scope: AuditScope) {
        self.snapshot = snapshot
        self.scope = scope
    }

    static let tables = ["products", "jobs", "job_devices", "job_device_steps", "escrow_objects", "escrow_intents",
                         "key_registrations", "restorations", "events"]

    /// What the login may do beyond reading.
    public func privileges() async throws -> AuditPrivileges {
        let role = try await snapshot.query("""
            SELECT current_user AS name, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user
            """)
        let rights = try await snapshot.query("""
            SELECT t.name || ': ' || p.name AS grant_text FROM unnest($1::text[]) t(name)
            CROSS JOIN unnest(ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) p(name)
            WHERE to_regclass(t.name) IS NOT NULL AND CASE WHEN p.name IN ('INSERT', 'UPDATE')
                THEN has_any_column_privilege(t.name, p.name) ELSE has_table_privilege(t.name, p.name) END
            ORDER BY 1
            """, [Self.tables])
        let unreadable = try await snapshot.query("""
            SELECT t.name FROM unnest($1::text[]) t(name)
            WHERE to_regclass(t.name) IS NULL OR NOT has_table_privilege(t.name, 'SELECT') ORDER BY 1
            """, [Self.tables])
        let row = role.first
        return AuditPrivileges(user: try row?.decode("name") ?? "?", superuser: try row?.decode("rolsuper") ?? false,
                               bypassesRowSecurity: try row?.decode("rolbypassrls") ?? false,
                               writes: try rights.map { try $0.decode("grant_text") },
                               unreadable: try unreadable.map { try $0.decode("name") })
    }

    private var scopeParameters: [any PostgresEncodable] { [scope.productID, scope.since, scope.jobID] }

    /// Registrations in scope, oldest first, with their escrow object and the platform the job
    /// recorded for the device.
    public func forEachKey(_ body: ([AuditedKey]) async throws -> Void) async throws {
        try await snapshot.forEachBatch("""
            SELECT r.id, r.product_id, r.device_id, d.platform, r.algorithm, r.fingerprint,
                   to_char(r.registered_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), r.job_id,
                   r.station, r.status, r.status_reason, r.escrow_object_id, e.store_uri, e.object_key, e.ciphertext_sha256
            FROM key_registrations r
            LEFT JOIN escrow_objects e ON e.id = r.escrow_object_id
            LEFT JOIN job_devices d ON d.job_id = r.job_id AND d.device_id = r.device_id
            WHERE ($1::text IS NULL OR r.product_id = $1) AND ($2::timestamptz IS NULL OR r.registered_at >= $2)
              AND ($3::bigint IS NULL OR r.job_id = $3)
            ORDER BY r.registered_at, r.id
            """, scopeParameters, batchSize: batchSize) { rows in
            try await body(rows.map { row in
                AuditedKey(registrationID: try row.decode(at: 0), productID: try row.decode(at: 1),
                           deviceID: try row.decode(at: 2), platform: try row.decode(at: 3),
                           algorithm: try row.decode(at: 4), fingerprint: try row.decode(at: 5),
                           registeredAt: try row.decode(at: 6), jobID: try row.decode(at: 7),
                           station: try row.decode(at: 8), status: try row.decode(at: 9),
                           statusReason: try row.decode(at: 10), escrowObjectID: try row.decode(at: 11),
                           storeURI: try row.decode(at: 12), objectKey: try row.decode(at: 13),
                           ciphertextSHA256: try row.decode(at: 14))
            })
        }
    }

    /// Findings that need the whole registry rather than one row: a public key on two devices,
    /// more than one active key for a device, keys a stopped job left unregistered, restorations.
    public func forEachCrossCheckFinding(_ body: (AuditFinding) async throws -> Void) async throws {
        // Every registration's key is also an escrow object's (a foreign key), so escrow objects
        // hold every (key, device) pair; grouped in index order, nothing is hashed in memory.
        try await snapshot.forEachBatch("""
            SELECT public_key_sha256, string_agg(DISTINCT device_id, ' ') AS devices, min(product_id) AS product
            FROM escrow_objects GROUP BY public_key_sha256
            HAVING min(device_id) <> max(device_id) AND bool_or($1::text IS NULL OR product_id = $1)
            """, [scope.productID], batchSize: batchSize) { rows in
            for row in rows {
                let fingerprint: String = try row.decode(at: 0)
                let devices: String = try row.decode(at: 1)
                try await body(AuditFinding(.error, "public_key_on_two_devices", productID: try row.decode(at: 2),
                                            fingerprint: fingerprint,
                                            message: "public key \(fingerprint) belongs to more than one device: \(devices)"))
            }
        }
        try await snapshot.forEachBatch("""
            SELECT product_id, device_id, string_agg(fingerprint, ' ' ORDER BY id) AS keys
            FROM key_registrations WHERE status = 'active' AND ($1::text IS NULL OR product_id = $1)
            GROUP BY product_id, device_id HAVING count(*) > 1
            """, [scope.productID], batchSize: batchSize) { rows in
            for row in rows {
                let (product, device, keys): (String, String, String) = (try row.decode(at: 0), try row.decode(at: 1), try row.decode(at: 2))
                try await body(AuditFinding(.error, "several_active_keys", productID: product, deviceID: device,
                                            message: "device \(device) has more than one active key: \(keys)"))
            }
        }
        try await snapshot.forEachBatch("""
            SELECT d.job_id, d.device_id, j.product_id, d.state, d.last_good_state, d.key_fingerprint, j.status
            FROM job_devices d JOIN jobs j ON j.id = d.job_id
            WHERE (d.state IN ('key_ready', 'escrowed')
                   OR (d.state = 'failed' AND d.last_good_state IN ('key_ready', 'escrowed')))
              AND ($1::text IS NULL OR j.product_id = $1) AND ($2::timestamptz IS NULL OR d.updated_at >= $2)
              AND ($3::bigint IS NULL OR d.job_id = $3)
              AND NOT EXISTS (SELECT 1 FROM key_registrations r WHERE r.product_id = j.product_id
                              AND r.device_id = d.device_id AND r.status = 'active')
            ORDER BY d.job_id, d.device_id
            """, scopeParameters, batchSize: batchSize) { rows in
            for row in rows {
                let (job, device, product): (Int64, String, String) = (try row.decode(at: 0), try row.decode(at: 1), try row.decode(at: 2))
                let state: String = try row.decode(at: 3)
                let lastGood: String? = try row.decode(at: 4)
                let jobStatus: String = try row.decode(at: 6)
                let reached = lastGood ?? state
                try await body(AuditFinding(.warning, "key_never_registered", productID: product, deviceID: device,
                                            fingerprint: try row.decode(at: 5), jobID: job,
                                            message: "device \(device) reached \(reached) in job \(job) (\(jobStatus)) but its key was never registered; `keyline provision --resume \(job)` finishes it"))
            }
        }
        try await snapshot.forEachBatch("""
            SELECT s.product_id, s.device_id, s.outcome, s.station, s.operator, s.restored_at, s.detail, r.fingerprint, r.job_id
            FROM restorations s JOIN key_registrations r ON r.id = s.registration_id
            WHERE ($1::text IS NULL OR s.product_id = $1) AND ($2::timestamptz IS NULL OR s.restored_at >= $2)
              AND ($3::bigint IS NULL OR r.job_id = $3)
            ORDER BY s.restored_at, s.id
            """, scopeParameters, batchSize: batchSize) { rows in
            for row in rows {
                let (product, device, outcome): (String, String, String) = (try row.decode(at: 0), try row.decode(at: 1), try row.decode(at: 2))
                let (station, person): (String, String) = (try row.decode(at: 3), try row.decode(at: 4))
                let at: Date = try row.decode(at: 5)
                let detail: String? = try row.decode(at: 6)
                let failed = outcome != "restored"
                try await body(AuditFinding(failed ? .warning : .info, failed ? "restoration_failed" : "restored",
                                            productID: product, deviceID: device, fingerprint: try row.decode(at: 7),
                                            jobID: try row.decode(at: 8),
                                            message: "key of device \(device) \(failed ? "failed to restore" : "restored") at \(station) by \(person), \(at.formatted(.iso8601))" + (detail.map { ": \($0)" } ?? "")))
            }
        }
    }

    /// How many escrow objects each store holds (in the product, if the scope names one).
    public func objectCounts() async throws -> [(storeURI: String, count: Int)] {
        try await snapshot.query("""
            SELECT store_uri, count(*) AS n FROM escrow_objects WHERE ($1::text IS NULL OR product_id = $1)
            GROUP BY store_uri ORDER BY store_uri
            """, [scope.productID]).map { (try $0.decode(at: 0), try $0.decode(at: 1)) }
    }

    /// The escrow objects recorded in `storeURI` (in the scope's product), in byte order of their
    /// object keys: the order a sorted walk of the store produces, so the two merge.
    public func forEachObject(inStore storeURI: String, _ body: ([AuditedObject]) async throws -> Void) async throws {
        try await snapshot.forEachBatch("""
            SELECT id, product_id, device_id, public_key_sha256, object_key, ciphertext_sha256
            FROM escrow_objects WHERE store_uri = $1 AND ($2::text IS NULL OR product_id = $2)
            ORDER BY object_key COLLATE "C"
            """, [storeURI, scope.productID], batchSize: batchSize) { rows in
            try await body(rows.map { row in
                AuditedObject(id: try row.decode(at: 0), productID: try row.decode(at: 1), deviceID: try row.decode(at: 2),
                              publicKeySHA256: try row.decode(at: 3), objectKey: try row.decode(at: 4),
                              ciphertextSHA256: try row.decode(at: 5))
            })
        }
    }
}

extension RegistryDatabase {
    /// Opens a dedicated connection for an audit and runs `body` with the audit's queries in one
    /// read-only snapshot.
    public static func audit<T: Sendable>(_ settings: ConnectionSettings = .fromEnvironment(), scope: AuditScope,
                                          _ body: (RegistryAudit) async throws -> T) async throws -> T {
        let connection = try await PostgresConnection.connect(settings, label: "keyline.audit")
        defer { Task { await connection.close() } }
        do {
            return try await connection.withReadOnlySnapshot { snapshot in
                try await body(RegistryAudit(snapshot: snapshot, scope: scope))
            }
        } catch let error as PostgresError {
            if error.isInsufficientPrivilege { throw RegistryError.permissionDenied(action: "audit the registry", error) }
            throw RegistryError.database(error)
        }
    }
}
