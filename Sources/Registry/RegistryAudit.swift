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
    /// The device, product and public key the escrow object was recorded for (nil without one):
    /// a registration naming another device's object shows here, without decrypting anything.
    public var objectDeviceID: String? = nil
    public var objectProductID: String? = nil
    public var objectPublicKeySHA256: String? = nil
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

    /// The newest migration applied (nil on a database never migrated), read in the snapshot.
    public func schemaVersion() async throws -> Int? {
        guard try await snapshot.query("SELECT to_regclass('schema_migrations') IS NOT NULL AS present")
            .first?.decode("present", as: Bool.self) == true else { return nil }
        return try await snapshot.query("SELECT max(version) AS version FROM schema_migrations").first?
            .decode("version", as: Int?.self)
    }

    /// Refuses a snapshot of a schema older than this keyline needs (`RegistryError.schemaBehind`):
    /// an older schema lacks what the audit reads (step timings, the audit's indexes).
    public func requireCurrentSchema() async throws {
        try RegistryDatabase.requireCurrent(schemaVersion: try await schemaVersion())
    }

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
    /// recorded for the device. The time comes as epoch seconds, formatted here: the server's
    /// to_char costs more than the rest of the row (measured at 1M rows).
    public func forEachKey(_ body: ([AuditedKey]) async throws -> Void) async throws {
        try await snapshot.forEachBatch("""
            SELECT r.id, r.product_id, r.device_id, d.platform, r.algorithm, r.fingerprint,
                   trunc(extract(epoch FROM r.registered_at))::bigint, r.job_id,
                   r.station, r.status, r.status_reason, coalesce(g.escrow_object_id, r.escrow_object_id),
                   e.store_uri, e.object_key, e.ciphertext_sha256,
                   e.device_id, e.product_id, e.public_key_sha256
            FROM key_registrations r
            -- The registration's current object: its latest generation after a custody rotation (0012).
            LEFT JOIN LATERAL (SELECT escrow_object_id FROM escrow_object_generations
                               WHERE registration_id = r.id ORDER BY generation DESC LIMIT 1) g ON true
            LEFT JOIN escrow_objects e ON e.id = coalesce(g.escrow_object_id, r.escrow_object_id)
            LEFT JOIN job_devices d ON d.job_id = r.job_id AND d.device_id = r.device_id
            WHERE ($1::text IS NULL OR r.product_id = $1) AND ($2::timestamptz IS NULL OR r.registered_at >= $2)
              AND ($3::bigint IS NULL OR r.job_id = $3)
            ORDER BY r.registered_at, r.id
            """, scopeParameters, batchSize: batchSize) { rows in
            try await body(rows.map { row in
                AuditedKey(registrationID: try row.decode(at: 0), productID: try row.decode(at: 1),
                           deviceID: try row.decode(at: 2), platform: try row.decode(at: 3),
                           algorithm: try row.decode(at: 4), fingerprint: try row.decode(at: 5),
                           registeredAt: Self.utcTimestamp(epochSeconds: try row.decode(at: 6)), jobID: try row.decode(at: 7),
                           station: try row.decode(at: 8), status: try row.decode(at: 9),
                           statusReason: try row.decode(at: 10), escrowObjectID: try row.decode(at: 11),
                           storeURI: try row.decode(at: 12), objectKey: try row.decode(at: 13),
                           ciphertextSHA256: try row.decode(at: 14), objectDeviceID: try row.decode(at: 15),
                           objectProductID: try row.decode(at: 16), objectPublicKeySHA256: try row.decode(at: 17))
            })
        }
    }

    /// Findings that need the whole registry rather than one row: a public key on two devices,
    /// more than one active key for a device, keys a stopped job left unregistered, restorations.
    public func forEachCrossCheckFinding(_ body: (AuditFinding) async throws -> Void) async throws {
        // Every registration's key is also an escrow object's (a foreign key), so escrow objects
        // hold every (key, device) pair. The pairs sharing a key are found by merging the
        // (public_key_sha256, device_id) index with itself (no sort, no aggregate over every key);
        // only those few keys are then grouped.
        try await snapshot.forEachBatch("""
            WITH shared AS MATERIALIZED (
                SELECT DISTINCT a.public_key_sha256 AS key FROM escrow_objects a
                JOIN escrow_objects b ON b.public_key_sha256 = a.public_key_sha256 AND b.device_id > a.device_id)
            SELECT e.public_key_sha256, string_agg(DISTINCT e.device_id, ' ') AS devices, min(e.product_id) AS product
            FROM shared JOIN escrow_objects e ON e.public_key_sha256 = shared.key
            GROUP BY e.public_key_sha256 HAVING bool_or($1::text IS NULL OR e.product_id = $1)
            """, [scope.productID], batchSize: batchSize) { rows in
            for row in rows {
                let fingerprint: String = try row.decode(at: 0)
                let devices: String = try row.decode(at: 1)
                try await body(AuditFinding(.error, "public_key_on_two_devices", productID: try row.decode(at: 2),
                                            fingerprint: fingerprint,
                                            message: "public key \(fingerprint) belongs to more than one device: \(devices)"))
            }
        }
        // The unique partial index key_registrations_one_active_per_device makes two active keys
        // for a device impossible while it is in place and valid: then there is nothing to scan
        // (a full pass over every registration at 1M). Without it, the scan runs.
        let oneActiveKeyEnforced = try await hasIndex("key_registrations_one_active_per_device", unique: true)
        if !oneActiveKeyEnforced {
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

    /// Whether index `name` exists and is valid (built, not left broken by a failed concurrent build).
    func hasIndex(_ name: String, unique: Bool) async throws -> Bool {
        try await snapshot.query("""
            SELECT EXISTS (SELECT 1 FROM pg_index i WHERE i.indexrelid = to_regclass($1) AND i.indisvalid
                           AND (i.indisunique OR NOT $2::boolean)) AS present
            """, [name, unique]).first?.decode("present", as: Bool.self) == true
    }

    /// `2026-11-21T10:30:00Z` for seconds since 1970 (UTC; days to civil date by Howard Hinnant's
    /// algorithm, so a million rows need no calendar or formatter object).
    static func utcTimestamp(epochSeconds: Int64) -> String {
        let days = epochSeconds >= 0 ? epochSeconds / 86_400 : (epochSeconds - 86_399) / 86_400
        let seconds = epochSeconds - days * 86_400
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1_460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let shiftedMonth = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * shiftedMonth + 2) / 5 + 1
        let month = shiftedMonth < 10 ? shiftedMonth + 3 : shiftedMonth - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(20)
        func digits(_ value: Int64, _ count: Int) {
            var divisor: Int64 = 1
            for _ in 1..<count { divisor *= 10 }
            var value = value
            while divisor > 0 {
                bytes.append(UInt8(ascii: "0") + UInt8(value / divisor % 10))
                value %= divisor
                divisor /= 10
            }
        }
        digits(year, 4); bytes.append(UInt8(ascii: "-")); digits(month, 2); bytes.append(UInt8(ascii: "-")); digits(day, 2)
        bytes.append(UInt8(ascii: "T")); digits(seconds / 3_600, 2); bytes.append(UInt8(ascii: ":"))
        digits(seconds / 60 % 60, 2); bytes.append(UInt8(ascii: ":")); digits(seconds % 60, 2); bytes.append(UInt8(ascii: "Z"))
        return String(decoding: bytes, as: UTF8.self)
    }

    /// How many escrow objects each store holds (in the product, if the scope names one).
    public func objectCounts() async throws -> [(storeURI: String, count: Int)] {
        try await snapshot.query("""
            SELECT store_uri, count(*) AS n FROM escrow_objects WHERE ($1::text IS NULL OR product_id = $1)
            GROUP BY store_uri ORDER BY store_uri
            """, [scope.productID]).map { (try $0.decode(at: 0), try $0.decode(at: 1)) }
    }

    /// The escrow objects recorded in `storeURI` (in the scope's product), in table order.
    public func forEachObject(inStore storeURI: String, _ body: ([AuditedObject]) async throws -> Void) async throws {
        try await snapshot.forEachBatch("""
            SELECT id, product_id, device_id, public_key_sha256, object_key, ciphertext_sha256
            FROM escrow_objects WHERE store_uri = $1 AND ($2::text IS NULL OR product_id = $2)
            """, [storeURI, scope.productID], batchSize: batchSize) { rows in
            try await body(rows.map { row in
                AuditedObject(id: try row.decode(at: 0), productID: try row.decode(at: 1), deviceID: try row.decode(at: 2),
                              publicKeySHA256: try row.decode(at: 3), objectKey: try row.decode(at: 4),
                              ciphertextSHA256: try row.decode(at: 5))
            })
        }
    }

    /// Of `objectKeys` (paths found in the store), those no escrow record of `storeURI` names: one
    /// query per batch of paths, each path an index lookup (the store's unique key).
    public func unrecorded(_ objectKeys: [String], inStore storeURI: String) async throws -> [String] {
        guard !objectKeys.isEmpty else { return [] }
        return try await snapshot.query("""
            SELECT k FROM unnest($2::text[]) WITH ORDINALITY AS t(k, n)
            WHERE NOT EXISTS (SELECT 1 FROM escrow_objects e WHERE e.store_uri = $1 AND e.object_key = t.k)
            ORDER BY n
            """, [storeURI, objectKeys]).map { try $0.decode(at: 0) }
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
                // JIT compiling the million-row queries costs more than it saves (measured: ~1.5 s
                // of a 1M-row listing); the audit's plans are index walks, not expression-heavy.
                _ = try await snapshot.query("SET LOCAL jit = off")
                return try await body(RegistryAudit(snapshot: snapshot, scope: scope))
            }
        } catch let error as PostgresError {
            if error.isInsufficientPrivilege { throw RegistryError.permissionDenied(action: "audit the registry", error) }
            throw RegistryError.database(error)
        }
    }
}
