import Foundation
import Testing
import TestSupport

/// `keyline db migrate|status` against a fresh database of the test cluster (created with psql).
@Suite("keyline db")
struct DatabaseCLITests {
    /// Environment that points libpq (psql and keyline) at the test cluster's database `name`.
    static func environment(database name: String) throws -> [String: String] {
        try TestPostgres.environment(database: name)
    }

    static func psql(_ sql: String) async throws {
        let environment = try Self.environment(database: "keyline")
        var arguments = ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql]
        if let url = environment["DATABASE_URL"], !url.isEmpty { arguments.insert(url, at: 0) }
        let result = try await ChildProcess.run("psql", arguments, environment: environment, timeout: .seconds(120))
        guard result.status == 0 else { throw CLITestFailure("psql failed: \(sql)\n\(result.stderr)") }
    }

    static func withFreshDatabase(_ body: ([String: String]) async throws -> Void) async throws {
        let name = "kl_cli_" + String((0..<10).map { _ in "abcdefghijklmnopqrstuvwxyz0123456789".randomElement()! })
        try await psql("CREATE DATABASE \(name)")
        do {
            var environment = try Self.environment(database: name)
            if environment["DATABASE_URL"] == nil { environment["DATABASE_URL"] = "" }
            try await body(environment)
        } catch {
            try? await psql("DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
            throw error
        }
        try? await psql("DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
    }

    @Test("status shows pending migrations, migrate applies them once, then status is up to date")
    func migrateAndStatus() async throws {
        try await Self.withFreshDatabase { environment in
            let before = try await KeylineBinary.run(["db", "status", "--json"], environment: environment)
            #expect(before.status == 0, "\(before.stderr)")
            let beforeJSON = try before.json()
            #expect(beforeJSON["upToDate"] as? Bool == false)
            let states = (beforeJSON["migrations"] as? [[String: Any]])?.compactMap { $0["state"] as? String }
            #expect(states?.isEmpty == false && states?.allSatisfy { $0 == "pending" } == true)

            let first = try await KeylineBinary.run(["db", "migrate", "--json"], environment: environment)
            #expect(first.status == 0, "\(first.stderr)")
            let applied = try first.json()["applied"] as? [[String: Any]]
            #expect(applied?.compactMap { $0["name"] as? String }.first == "registry_tables")

            let second = try await KeylineBinary.run(["db", "migrate", "--json"], environment: environment)
            #expect(second.status == 0)
            #expect((try second.json()["applied"] as? [Any])?.isEmpty == true)

            let after = try await KeylineBinary.run(["db", "status"], environment: environment)
            #expect(after.status == 0)
            #expect(after.stdout.contains("0001_registry_tables") && after.stdout.contains("applied"))
            #expect(after.stdout.contains("no pending migrations"))
        }
    }

    @Test("a schema folder whose applied migration was edited is refused with exit 78")
    func editedSchemaFolder() async throws {
        try await Self.withFreshDatabase { environment in
            #expect(try await KeylineBinary.run(["db", "migrate"], environment: environment).status == 0)
            let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent()
            let folder = FileManager.default.temporaryDirectory.appendingPathComponent("kl-cli-schema-\(UUID().uuidString)")
            try FileManager.default.copyItem(at: root.appendingPathComponent("schema"), to: folder)
            defer { try? FileManager.default.removeItem(at: folder) }
            let first = folder.appendingPathComponent("0001_registry_tables.sql")
            try (try String(contentsOf: first, encoding: .utf8) + "-- edited\n").write(to: first, atomically: true, encoding: .utf8)

            let status = try await KeylineBinary.run(["db", "status", "--schema", folder.path, "--json"], environment: environment)
            #expect(status.status == 78)
            let migrate = try await KeylineBinary.run(["db", "migrate", "--schema", folder.path, "--json"], environment: environment)
            #expect(migrate.status == 78)
            let error = try migrate.json()["error"] as? [String: Any]
            #expect(error?["kind"] as? String == "migrationChanged")
        }
    }

    @Test("an unreachable database exits 75 and never shows the password")
    func unreachable() async throws {
        let result = try await KeylineBinary.run(["db", "status"], environment: [
            "DATABASE_URL": "postgresql://keyline:hunter2-secret@/keyline?host=/nonexistent-socket-folder",
        ])
        #expect(result.status == 75)
        #expect(result.stderr.contains("/nonexistent-socket-folder"))
        #expect(!result.stderr.contains("hunter2-secret") && !result.stdout.contains("hunter2-secret"))
        let json = try await KeylineBinary.run(["db", "status", "--json"], environment: [
            "DATABASE_URL": "postgresql://keyline:hunter2-secret@/keyline?host=/nonexistent-socket-folder",
        ])
        #expect(json.status == 75)
        #expect(json.stdout.contains("databaseUnreachable"))
        #expect(!json.stderr.contains("hunter2-secret") && !json.stdout.contains("hunter2-secret"))
    }

    @Test("a malformed DATABASE_URL exits 78 and shows it only with the password replaced by ***")
    func malformedURL() async throws {
        for arguments in [["db", "status", "--json"], ["db", "status"], ["db", "migrate"]] {
            let result = try await KeylineBinary.run(arguments, environment: ["DATABASE_URL": "postgresql://u:hunter2@[bad"])
            #expect(result.status == 78, "\(arguments): \(result.stderr)")
            let output = result.stdout + result.stderr
            #expect(!output.contains("hunter2"), "\(arguments) printed the password")
            #expect(output.contains("DATABASE_URL is not a valid URI or key=value conninfo"))
            #expect(output.contains("postgresql://u:***@[bad"))
        }
        let json = try await KeylineBinary.run(["db", "status", "--json"], environment: ["DATABASE_URL": "postgresql://u:hunter2@[bad"])
        #expect((try json.json()["error"] as? [String: Any])?["kind"] as? String == "databaseSettingsInvalid")
    }

    @Test("a missing database or an unknown login exits 78, not 75")
    func refusedByServer() async throws {
        var missing = try Self.environment(database: "kl_cli_missing_db")
        if missing["DATABASE_URL"] == nil { missing["DATABASE_URL"] = "" }
        let noDatabase = try await KeylineBinary.run(["db", "status", "--json"], environment: missing)
        #expect(noDatabase.status == 78, "\(noDatabase.stdout)")
        let noDatabaseError = try noDatabase.json()["error"] as? [String: Any]
        #expect(noDatabaseError?["kind"] as? String == "databaseMissing")
        #expect((noDatabaseError?["context"] as? [String: Any])?["sqlState"] as? String == "3D000")

        var unknownLogin = try Self.environment(database: "keyline")
        if let url = unknownLogin["DATABASE_URL"], !url.isEmpty {
            unknownLogin["DATABASE_URL"] = url + "&user=kl_cli_no_such_role&password=role-pw-secret"
        } else {
            unknownLogin["DATABASE_URL"] = ""
            unknownLogin["PGUSER"] = "kl_cli_no_such_role"
            unknownLogin["PGPASSWORD"] = "role-pw-secret"
        }
        let refused = try await KeylineBinary.run(["db", "status", "--json"], environment: unknownLogin)
        #expect(refused.status == 78, "\(refused.stdout)")
        #expect((try refused.json()["error"] as? [String: Any])?["kind"] as? String == "databaseLoginRefused")
        #expect(!(refused.stdout + refused.stderr).contains("role-pw-secret"))
    }

    @Test("db help documents the database exit codes")
    func helpDocumentsExitCodes() async throws {
        for arguments in [["db", "--help"], ["db", "status", "--help"], ["db", "migrate", "--help"]] {
            let help = try await KeylineBinary.run(arguments)
            #expect(help.status == 0)
            #expect(help.stdout.contains("DATABASE EXIT CODES"))
            #expect(help.stdout.contains("fingerprintConflict") && help.stdout.contains("3D000"))
        }
    }
}
