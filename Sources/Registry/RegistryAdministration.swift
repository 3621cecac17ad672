/// `keyline db …`: the administrator's operations on the registry, each over a connection of its
/// own made from the environment (DATABASE_URL, libpq's PG* variables or the project's cluster).
/// Each result names the database (`database`: its settings, never a password).
public enum RegistryAdministration {
    /// The migrations built into keyline, or the NNNN_name.sql files of `directory`.
    public static func migrations(in directory: String?) throws(MigrationError) -> [Migration] {
        guard let directory else { return Migration.embedded }
        return try Migration.load(directory: directory)
    }

    /// Applies the pending migrations (`schemaDirectory`: instead of the built-in ones).
    public static func migrate(schemaDirectory: String?) async throws -> SchemaMigration {
        let migrations = try migrations(in: schemaDirectory)
        let connection = try await connect()
        let applied = try await MigrationRunner(connection: connection, migrations: migrations).migrate()
        return SchemaMigration(database: connection.settings.description, applied: applied, known: migrations.count)
    }

    /// Every migration's state; `checkConsistent()` on the result says whether that is fine.
    public static func status(schemaDirectory: String?) async throws -> SchemaStatus {
        let migrations = try migrations(in: schemaDirectory)
        let connection = try await connect()
        let status = try await MigrationRunner(connection: connection, migrations: migrations).status()
        return SchemaStatus(database: connection.settings.description, status: status)
    }

    public static func grant(_ login: String, role: LoginRole, station: String?) async throws -> (database: String, binding: LoginBinding) {
        let connection = try await connect()
        let binding = try await RegistryDatabase(client: connection).grantLogin(login, role: role, station: station)
        return (connection.settings.description, binding)
    }

    /// Returns the binding that was removed.
    public static func revoke(_ login: String) async throws -> (database: String, binding: LoginBinding) {
        let connection = try await connect()
        let removed = try await RegistryDatabase(client: connection).revokeLogin(login)
        return (connection.settings.description, removed)
    }

    public static func logins() async throws -> (database: String, bound: [LoginBinding], unbound: [UnboundLogin]) {
        let connection = try await connect()
        let (bound, unbound) = try await RegistryDatabase(client: connection).loginBindings()
        return (connection.settings.description, bound, unbound)
    }

    private static func connect() async throws -> PostgresConnection {
        try await PostgresConnection.connect(ConnectionSettings.fromEnvironment(), label: "keyline.db")
    }
}

/// What `migrate` did.
public struct SchemaMigration: Sendable {
    public let database: String
    /// In the order they were applied; empty when the schema was up to date.
    public let applied: [Migration]
    /// How many migrations keyline (or the schema folder) has.
    public let known: Int
}

/// What `status` found.
public struct SchemaStatus: Sendable {
    public let database: String
    public let status: MigrationStatus
    /// Every migration, applied or pending, by version.
    public var rows: [MigrationStatusRow] { status.rows }

    /// Throws the first migration changed since it was applied, or unknown to this keyline.
    public func checkConsistent() throws(MigrationError) { try status.checkConsistent() }
}
