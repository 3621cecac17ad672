import Foundation
import Testing
@testable import Registry

@Suite("Migrations")
struct MigrationTests {
    static let tables = ["bench_escrow_intents", "cloud_uploads", "custody_ceremonies", "custody_ceremony_restorations", "custody_ceremony_shares",
                         "custody_rotation_intents", "custody_share_losses", "custody_share_sets", "custody_shares", "escrow_epochs",
                         "escrow_intents", "escrow_object_generations", "escrow_objects", "events", "job_device_steps",
                         "job_devices", "jobs", "key_doctor_intents", "key_registrations", "products",
                         "restorations", "schema_migrations", "station_logins", "station_status"]

    @Test("the migrations compiled into keyline equal schema/*.sql (run `make schema-embed` if not)")
    func embeddedMigrationsEqualTheFiles() throws {
        let files = try Migration.load(directory: TestCluster.packageRoot.appendingPathComponent("schema").path)
        #expect(!files.isEmpty)
        #expect(files.map(\.fileName) == Migration.embedded.map(\.fileName))
        for (file, embedded) in zip(files, Migration.embedded) {
            #expect(file.sql == embedded.sql, "\(file.fileName) differs from EmbeddedMigrations.swift")
        }
        #expect(files.map(\.version) == Array(1...files.count), "migrations are numbered 0001, 0002, … without gaps")
    }

    @Test("file names are NNNN_name.sql")
    func fileNames() {
        #expect(Migration.parse(fileName: "0001_registry_tables.sql")! == (1, "registry_tables"))
        #expect(Migration.parse(fileName: "0012_x.sql")! == (12, "x"))
        #expect(Migration.parse(fileName: "1_registry.sql") == nil)
        #expect(Migration.parse(fileName: "0001-registry.sql") == nil)
        #expect(Migration.parse(fileName: "0001_Registry.sql") == nil)
        #expect(Migration.parse(fileName: "0000_zero.sql") == nil)
        #expect(Migration.parse(fileName: "0001_.sql") == nil)
    }

    @Test("a schema folder with a badly named or duplicate migration is refused")
    func badSchemaFolders() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("kl-schema-" + TestDatabase.randomSuffix())
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try "SELECT 1;\n".write(to: directory.appendingPathComponent("0001_a.sql"), atomically: true, encoding: .utf8)
        try "SELECT 2;\n".write(to: directory.appendingPathComponent("0001_b.sql"), atomically: true, encoding: .utf8)
        #expect(throws: MigrationError.duplicateVersion(1, "0001_a.sql", "0001_b.sql")) {
            try Migration.load(directory: directory.path)
        }
        try FileManager.default.removeItem(at: directory.appendingPathComponent("0001_b.sql"))
        try "SELECT 2;\n".write(to: directory.appendingPathComponent("2_b.sql"), atomically: true, encoding: .utf8)
        #expect(throws: MigrationError.badFileName("2_b.sql", directory: directory.path)) {
            try Migration.load(directory: directory.path)
        }
        #expect(throws: MigrationError.unreadableDirectory("/nonexistent/schema")) {
            try Migration.load(directory: "/nonexistent/schema")
        }
    }

    @Test("from an empty database every migration is applied; running again applies nothing")
    func migrateFromEmptyThenNoOp() async throws {
        try await withTestDatabase(migrated: false) { database in
            let connection = try await database.connect()
            let runner = MigrationRunner(connection: connection)

            let before = try await runner.status()
            #expect(before.applied.isEmpty)
            #expect(before.pending.map(\.version) == Migration.embedded.map(\.version))

            let applied = try await runner.migrate()
            #expect(applied.map(\.version) == Migration.embedded.map(\.version))

            let after = try await runner.status()
            #expect(after.pending.isEmpty)
            #expect(after.isUpToDate)
            #expect(after.applied.map(\.version) == Migration.embedded.map(\.version))
            #expect(after.applied.allSatisfy { $0.sha256.count == 64 && !$0.appliedBy.isEmpty })

            let tables = try await connection.query(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name")
            #expect(try tables.map { try $0.decode("table_name", as: String.self) } == Self.tables)

            let again = try await runner.migrate()
            #expect(again.isEmpty)
            let count = try await connection.query("SELECT count(*) AS n FROM schema_migrations")
            #expect(try count[0].decode("n", as: Int.self) == Migration.embedded.count)
            await connection.close()
        }
    }

    @Test("two stations migrating the same database at once apply each migration exactly once")
    func concurrentMigrate() async throws {
        try await withTestDatabase(migrated: false) { database in
            let first = try await database.connect()
            let second = try await database.connect()
            async let a = MigrationRunner(connection: first).migrate()
            async let b = MigrationRunner(connection: second).migrate()
            let (appliedA, appliedB) = try await (a, b)
            #expect((appliedA + appliedB).map(\.version).sorted() == Migration.embedded.map(\.version))
            let count = try await first.query("SELECT count(*) AS n FROM schema_migrations")
            #expect(try count[0].decode("n", as: Int.self) == Migration.embedded.count)
        }
    }

    @Test("a migration that was edited after it was applied is refused")
    func editedMigrationIsRefused() async throws {
        try await withTestDatabase { database in
            let connection = try await database.connect()
            var edited = Migration.embedded
            edited[0] = Migration(version: edited[0].version, name: edited[0].name, sql: edited[0].sql + "-- edited\n")
            let runner = MigrationRunner(connection: connection, migrations: edited)
            let status = try await runner.status()
            #expect(status.changedSinceApplied.map(\.version) == [1])
            #expect(!status.isUpToDate)
            await #expect {
                try await runner.migrate()
            } throws: { error in
                guard case MigrationError.checksumMismatch(version: 1, _, _, _) = error else { return false }
                return "\(error)".contains("never change")
            }
        }
    }

    @Test("a database newer than this keyline is reported")
    func unknownAppliedMigration() async throws {
        try await withTestDatabase { database in
            let connection = try await database.connect()
            let runner = MigrationRunner(connection: connection, migrations: Array(Migration.embedded.dropLast()))
            let status = try await runner.status()
            #expect(status.unknownApplied.map(\.version) == [Migration.embedded.last!.version])
            await #expect(throws: MigrationError.self) { try await runner.migrate() }
        }
    }

    @Test("a failing migration is rolled back whole and not recorded")
    func failingMigrationRollsBack() async throws {
        try await withTestDatabase { database in
            let connection = try await database.connect()
            let broken = Migration(version: 99, name: "broken",
                                   sql: "CREATE TABLE half_done (x integer);\nSELECT no_such_column FROM products;\n")
            let runner = MigrationRunner(connection: connection, migrations: Migration.embedded + [broken])
            await #expect {
                try await runner.migrate()
            } throws: { error in
                guard case MigrationError.failed(version: 99, name: "broken", let postgres) = error else { return false }
                return postgres.sqlState == "42703"
            }
            let table = try await connection.query("SELECT to_regclass('half_done') IS NULL AS gone")
            #expect(try table[0].decode("gone", as: Bool.self))
            let status = try await runner.status()
            #expect(status.pending.map(\.version) == [99])
        }
    }

    @Test("roles are created by the migration and exist once per cluster")
    func rolesExist() async throws {
        try await withTestDatabase { database in
            let connection = try await database.connect()
            let rows = try await connection.query(
                "SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname = ANY($1::text[]) ORDER BY rolname",
                [["keyline_auditor", "keyline_rma", "keyline_station"]])
            #expect(try rows.map { try $0.decode("rolname", as: String.self) } == ["keyline_auditor", "keyline_rma", "keyline_station"])
            #expect(try rows.allSatisfy { try !$0.decode("rolcanlogin", as: Bool.self) })
        }
    }
}
