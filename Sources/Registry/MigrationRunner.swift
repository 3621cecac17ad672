import Foundation

/// Applies `schema/` migrations in order, each in its own transaction, and records them in
/// `schema_migrations` with the SHA-256 of their SQL. Running it again applies nothing.
///
/// Several stations may start at once: each migration takes a transaction-scoped advisory lock and
/// re-checks whether it was applied meanwhile, so every migration is applied exactly once.
public struct MigrationRunner: Sendable {
    public let connection: PostgresConnection
    public let migrations: [Migration]

    public init(connection: PostgresConnection, migrations: [Migration] = Migration.embedded) {
        self.connection = connection
        self.migrations = migrations.sorted { $0.version < $1.version }
    }

    /// Arbitrary constant: the advisory lock key that serializes keyline migrations in a database.
    static let advisoryLockKey: Int64 = 0x6B65_796C_696E_65

    static let bootstrapSQL = """
        CREATE TABLE IF NOT EXISTS schema_migrations (
            version     integer PRIMARY KEY CHECK (version > 0),
            name        text NOT NULL,
            sha256      text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
            applied_at  timestamptz NOT NULL DEFAULT now(),
            applied_by  text NOT NULL DEFAULT session_user
        )
        """

    /// Applies every pending migration. Returns the ones it applied (empty when up to date).
    @discardableResult
    public func migrate() async throws -> [Migration] {
        try await bootstrap()
        let status = try await status()
        try status.checkConsistent()
        var applied: [Migration] = []
        for migration in status.pending {
            let didApply = try await connection.transaction { transaction in
                try transaction.execute("SELECT pg_advisory_xact_lock($1)", [Self.advisoryLockKey])
                let checksum = try Self.checksum(of: migration, in: transaction)
                if let row = try transaction.queryOne("SELECT sha256 FROM schema_migrations WHERE version = $1",
                                                      [migration.version]) {
                    // Another station applied it while we waited for the lock.
                    let recorded: String = try row.decode("sha256")
                    guard recorded == checksum else {
                        throw MigrationError.checksumMismatch(version: migration.version, name: migration.name,
                                                              applied: recorded, file: checksum)
                    }
                    return false
                }
                do {
                    try transaction.runScript(migration.sql)
                } catch let error as PostgresError where !error.isConnectionLoss {
                    throw MigrationError.failed(version: migration.version, name: migration.name, error)
                }
                try transaction.execute("INSERT INTO schema_migrations (version, name, sha256) VALUES ($1, $2, $3)",
                                        [migration.version, migration.name, checksum])
                return true
            }
            if didApply { applied.append(migration) }
        }
        return applied
    }

    /// Applied and pending migrations, and any inconsistency between the database and the files.
    public func status() async throws -> MigrationStatus {
        let tableExists = try await connection.query("SELECT to_regclass('schema_migrations') IS NOT NULL AS present")
        var appliedRows: [AppliedMigration] = []
        if try tableExists.first?.decode("present", as: Bool.self) == true {
            let rows = try await connection.query(
                "SELECT version, name, sha256, applied_at, applied_by FROM schema_migrations ORDER BY version")
            appliedRows = try rows.map { row in
                AppliedMigration(version: try row.decode("version"), name: try row.decode("name"),
                                 sha256: try row.decode("sha256"), appliedAt: try row.decode("applied_at"),
                                 appliedBy: try row.decode("applied_by"))
            }
        }
        // The server computes the files' checksums the same way it recorded them.
        var checksums: [Int: String] = [:]
        for migration in migrations {
            let rows = try await connection.query("SELECT encode(sha256(convert_to($1, 'UTF8')), 'hex') AS sha256",
                                                  [migration.sql])
            checksums[migration.version] = try rows.first?.decode("sha256", as: String.self)
        }
        let appliedVersions = Set(appliedRows.map(\.version))
        return MigrationStatus(
            applied: appliedRows,
            pending: migrations.filter { !appliedVersions.contains($0.version) },
            fileChecksums: checksums,
            knownVersions: Set(migrations.map(\.version)))
    }

    private func bootstrap() async throws {
        try await connection.transaction { transaction in
            try transaction.execute("SELECT pg_advisory_xact_lock($1)", [Self.advisoryLockKey])
            try transaction.execute(Self.bootstrapSQL)
        }
    }

    static func checksum(of migration: Migration, in transaction: PostgresTransaction) throws -> String {
        let row = try transaction.queryOne("SELECT encode(sha256(convert_to($1, 'UTF8')), 'hex') AS sha256",
                                           [migration.sql])
        return try row!.decode("sha256")
    }
}

/// A row of `schema_migrations`.
public struct AppliedMigration: Sendable, Hashable, Codable {
    public let version: Int
    public let name: String
    public let sha256: String
    public let appliedAt: Date
    public let appliedBy: String
}

/// What `keyline db status` shows.
public struct MigrationStatus: Sendable {
    public let applied: [AppliedMigration]
    public let pending: [Migration]
    /// SHA-256 of each known migration's SQL, by version.
    public let fileChecksums: [Int: String]
    let knownVersions: Set<Int>

    /// Applied migrations whose SQL differs from the file of the same version.
    public var changedSinceApplied: [AppliedMigration] {
        applied.filter { applied in fileChecksums[applied.version].map { $0 != applied.sha256 } ?? false }
    }

    /// Applied migrations with no file of the same version.
    public var unknownApplied: [AppliedMigration] {
        applied.filter { !knownVersions.contains($0.version) }
    }

    public var isUpToDate: Bool { pending.isEmpty && changedSinceApplied.isEmpty && unknownApplied.isEmpty }

    /// Throws the first inconsistency, if any.
    public func checkConsistent() throws(MigrationError) {
        if let changed = changedSinceApplied.first {
            throw .checksumMismatch(version: changed.version, name: changed.name, applied: changed.sha256,
                                    file: fileChecksums[changed.version] ?? "")
        }
        if let unknown = unknownApplied.first {
            throw .unknownAppliedVersion(unknown.version, name: unknown.name)
        }
    }
}
