import ArgumentParser
import Foundation
import Registry
import CommandReporting

/// `keyline db …`: the registry's PostgreSQL schema.
struct DatabaseCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "db",
        abstract: "Set up and inspect the registry database (PostgreSQL).",
        discussion: """
            keyline connects with DATABASE_URL (a postgresql:// URI or a "host=… dbname=…" string) when \
            it is set; otherwise with libpq's own PGHOST/PGPORT/PGUSER/PGDATABASE/PGSERVICE variables; \
            otherwise with the private cluster `make db-up` runs in .pgdata/ of the project (found from \
            the current folder upwards). Passwords come from the URL, PGPASSWORD or ~/.pgpass; keyline \
            never prints them.

            \(DatabaseFailure.helpText)
            """,
        subcommands: [Migrate.self, Status.self, Grant.self, Revoke.self, Logins.self]
    )
}

/// Options `db migrate` and `db status` share.
struct SchemaOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "Read migrations from DIR (NNNN_name.sql files) instead of the ones built into keyline.",
        valueName: "DIR"))
    var schema: String?

    func migrations() throws -> [Migration] {
        guard let schema else { return Migration.embedded }
        return try Migration.load(directory: schema)
    }

    func connect() async throws -> PostgresConnection {
        try await PostgresConnection.connect(ConnectionSettings.fromEnvironment(), label: "keyline.db")
    }
}

extension DatabaseCommand {
    struct Migrate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Apply the pending schema migrations, each in its own transaction.",
            discussion: """
                Migrations are the numbered files of schema/ (built into keyline; --schema reads a \
                folder instead). Each applied migration is recorded in schema_migrations with the \
                SHA-256 of its SQL; running migrate again applies nothing. Several stations may run it \
                at once: an advisory lock applies each migration exactly once. A migration that was \
                edited after it was applied, or one the database has and this keyline does not know, \
                stops migrate before it changes anything. The login needs to own the schema (the \
                first migration also creates the roles keyline_station, keyline_rma, keyline_auditor).

                \(KeylineExit.helpText)

                \(DatabaseFailure.helpText)
                """)

        @OptionGroup var schema: SchemaOptions
        @OptionGroup var output: OutputOptions

        func run() async throws {
            try await DatabaseCommand.run(json: output.json) {
                let migrations = try schema.migrations()
                let connection = try await schema.connect()
                let applied = try await MigrationRunner(connection: connection, migrations: migrations).migrate()
                if output.json {
                    CLI.printJSON([
                        "database": connection.settings.description,
                        "applied": applied.map { ["version": $0.version, "name": $0.name] },
                        "upToDate": true,
                    ])
                } else if applied.isEmpty {
                    print("\(connection.settings.description): up to date (\(migrations.count) migrations)")
                } else {
                    print("\(connection.settings.description):")
                    for migration in applied { print("  applied \(migration.fileName)") }
                }
            }
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show applied and pending schema migrations.",
            discussion: """
                Lists every migration with its state: applied (when, by whom, SHA-256), pending, \
                changed (applied, but the SQL differs now) or unknown (applied, but not known to this \
                keyline). Exits 0 when nothing is changed or unknown, pending or not; 78 otherwise.

                \(KeylineExit.helpText)

                \(DatabaseFailure.helpText)
                """)

        @OptionGroup var schema: SchemaOptions
        @OptionGroup var output: OutputOptions

        func run() async throws {
            try await DatabaseCommand.run(json: output.json) {
                let migrations = try schema.migrations()
                let connection = try await schema.connect()
                let status = try await MigrationRunner(connection: connection, migrations: migrations).status()
                let rows = Self.rows(status, migrations: migrations)
                if output.json {
                    CLI.printJSON([
                        "database": connection.settings.description,
                        "migrations": rows.map { $0.json },
                        "pending": status.pending.count,
                        "upToDate": status.isUpToDate,
                    ])
                } else {
                    print(connection.settings.description)
                    for row in rows { print("  " + row.line) }
                    print(status.pending.isEmpty ? "no pending migrations" : "\(status.pending.count) pending: run `keyline db migrate`")
                }
                try status.checkConsistent()
            }
        }

        struct Row {
            var version: Int
            var name: String
            var state: String
            var applied: AppliedMigration?

            var json: [String: Any] {
                var object: [String: Any] = ["version": version, "name": name, "state": state]
                if let applied {
                    object["appliedAt"] = ISO8601DateFormatter().string(from: applied.appliedAt)
                    object["appliedBy"] = applied.appliedBy
                    object["sha256"] = applied.sha256
                }
                return object
            }

            var line: String {
                let fileName = String(format: "%04d_%@", version, name)
                guard let applied else { return "\(fileName.padding(toLength: 32, withPad: " ", startingAt: 0)) \(state)" }
                let when = ISO8601DateFormatter().string(from: applied.appliedAt)
                return "\(fileName.padding(toLength: 32, withPad: " ", startingAt: 0)) \(state.padding(toLength: 8, withPad: " ", startingAt: 0)) \(when) by \(applied.appliedBy)  sha256 \(applied.sha256.prefix(12))…"
            }
        }

        static func rows(_ status: MigrationStatus, migrations: [Migration]) -> [Row] {
            let changed = Set(status.changedSinceApplied.map(\.version))
            let unknown = Set(status.unknownApplied.map(\.version))
            var rows = status.applied.map { applied in
                Row(version: applied.version, name: applied.name,
                    state: changed.contains(applied.version) ? "changed" : unknown.contains(applied.version) ? "unknown" : "applied",
                    applied: applied)
            }
            rows += status.pending.map { Row(version: $0.version, name: $0.name, state: "pending", applied: nil) }
            return rows.sorted { $0.version < $1.version }
        }
    }
}

extension DatabaseCommand {
    /// Runs a `db` command body, turning PostgreSQL errors into reportable ones.
    static func run(json: Bool, _ body: () async throws -> Void) async throws {
        try await CLI.run(json: json) {
            do {
                try await body()
            } catch let error as PostgresError {
                throw DatabaseFailure(error)
            }
        }
    }
}
