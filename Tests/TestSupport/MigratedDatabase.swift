import Registry

extension TestPostgres {
    /// A migrated database of its own, created and dropped with psql (as the CLI tests do).
    public static func withMigratedDatabase(_ body: (RegistryDatabase) async throws -> Void) async throws {
        let name = "kl_pipe_" + String((0..<10).map { _ in "abcdefghijklmnopqrstuvwxyz0123456789".randomElement()! })
        let settings = TestPostgres.settings
        let admin = try await PostgresConnection.connect(settings)
        try await admin.execute("CREATE DATABASE \(name)")
        await admin.close()
        let connection = try await PostgresConnection.connect(settings.with(database: name))
        try await MigrationRunner(connection: connection).migrate()
        do {
            try await body(RegistryDatabase(client: connection))
        } catch {
            await connection.close()
            try? await Self.drop(name, settings)
            throw error
        }
        await connection.close()
        try await Self.drop(name, settings)
    }

    static func drop(_ name: String, _ settings: ConnectionSettings) async throws {
        let admin = try await PostgresConnection.connect(settings)
        try await admin.execute("DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
        await admin.close()
    }
}
