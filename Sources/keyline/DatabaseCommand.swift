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
                let migration = try await RegistryAdministration.migrate(schemaDirectory: schema.schema)
                if output.json {
                    CLI.printJSON([
                        "database": migration.database,
                        "applied": migration.applied.map { ["version": $0.version, "name": $0.name] },
                        "upToDate": true,
                    ])
                } else if migration.applied.isEmpty {
                    print("\(migration.database): up to date (\(migration.known) migrations)")
                } else {
                    print("\(migration.database):")
                    for applied in migration.applied { print("  applied \(applied.fileName)") }
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
                let report = try await RegistryAdministration.status(schemaDirectory: schema.schema)
                if output.json {
                    CLI.printJSON([
                        "database": report.database,
                        "migrations": report.rows.map(\.json),
                        "pending": report.status.pending.count,
                        "upToDate": report.status.isUpToDate,
                    ])
                } else {
                    print(report.database)
                    for row in report.rows { print("  " + row.line) }
                    print(report.status.pending.isEmpty ? "no pending migrations" : "\(report.status.pending.count) pending: run `keyline db migrate`")
                }
                try report.checkConsistent()
            }
        }
    }
}

extension MigrationStatusRow {
    var json: [String: Any] {
        var object: [String: Any] = ["version": version, "name": name, "state": state.rawValue]
        if let applied {
            object["appliedAt"] = ISO8601DateFormatter().string(from: applied.appliedAt)
            object["appliedBy"] = applied.appliedBy
            object["sha256"] = applied.sha256
        }
        return object
    }

    var line: String {
        let fileName = String(format: "%04d_%@", version, name)
        guard let applied else { return "\(fileName.padding(toLength: 32, withPad: " ", startingAt: 0)) \(state.rawValue)" }
        let when = ISO8601DateFormatter().string(from: applied.appliedAt)
        return "\(fileName.padding(toLength: 32, withPad: " ", startingAt: 0)) \(state.rawValue.padding(toLength: 8, withPad: " ", startingAt: 0)) \(when) by \(applied.appliedBy)  sha256 \(applied.sha256.prefix(12))…"
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
