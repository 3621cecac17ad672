import Foundation
import Testing
@testable import Registry
import TestSupport

@Suite("Connection")
struct ConnectionTests {
    @Test("parameters, typed decoding and NULLs round-trip exactly")
    func typedRoundTrip() async throws {
        try await withTestDatabase(migrated: false) { database in
            let connection = try await database.connect()
            let bytes = (0...255).map(UInt8.init) + [0, 0]
            let text = "Robert'); DROP TABLE products; -- \\ \" ü 🔑"
            let date = Date(timeIntervalSince1970: 1_789_012_345.123456)
            let array = ["age1abc", "with \"quotes\"", "comma,inside", "back\\slash", "NULL", ""]
            let rows = try await connection.query("""
                SELECT $1::bytea AS bytes, $2::text AS text, $3::bigint AS big, $4::boolean AS flag,
                       $5::double precision AS number, $6::timestamptz AS at, $7::text AS nothing,
                       $8::text[] AS list, octet_length($1::bytea) AS length, $9::integer AS small
                """, [PostgresValue.bytea(bytes), text, Int64.max, true, 0.125, date, String?.none, array, Int32(-7)])
            let row = try #require(rows.first)
            #expect(try row.decode("bytes", as: [UInt8].self) == bytes)
            #expect(try row.decode("length", as: Int.self) == bytes.count)
            #expect(try row.decode("text", as: String.self) == text)
            #expect(try row.decode("big", as: Int64.self) == .max)
            #expect(try row.decode("flag", as: Bool.self))
            #expect(try row.decode("number", as: Double.self) == 0.125)
            #expect(try row.decode("small", as: Int32.self) == -7)
            let decodedDate = try row.decode("at", as: Date.self)
            #expect(abs(decodedDate.timeIntervalSince1970 - date.timeIntervalSince1970) < 0.000_001)
            #expect(try row.decode("nothing", as: String?.self) == nil)
            #expect(row.isNull("nothing"))
            #expect(try row.decode("list", as: PostgresTextArray.self).elements == array)
            #expect(try row.decode(at: 1, as: String.self) == text)

            #expect(throws: PostgresError.self) { try row.decode("nothing", as: String.self) }
            #expect(throws: PostgresError.self) { try row.decode("text", as: Int.self) }
            #expect {
                _ = try row.decode("missing", as: String.self)
            } throws: { error in
                guard let error = error as? PostgresError else { return false }
                return error.message.contains("missing") && error.message.contains("bytes")
            }
            // Timestamps from the server come back right whatever zone the session asked for.
            let epoch = try await connection.query("SELECT '2001-02-03 04:05:06.5+02'::timestamptz AS at")
            #expect(try epoch[0].decode("at", as: Date.self).timeIntervalSince1970 == 981_165_906.5)
        }
    }

    @Test("server errors keep SQLSTATE, message, detail and constraint")
    func serverErrors() async throws {
        try await withTestDatabase(migrated: false) { database in
            let connection = try await database.connect()
            let division = await expectServerError("22012") { try await connection.query("SELECT 1 / $1::integer", [0]) }
            #expect(division?.message == "division by zero")
            #expect(division?.kind == .server)
            let syntax = await expectServerError("42601") { try await connection.query("SELEC 1") }
            #expect(syntax?.description.contains("SELEC 1") == true)
            try await connection.execute("CREATE TABLE t (x integer CONSTRAINT t_x_unique UNIQUE)")
            try await connection.execute("INSERT INTO t VALUES ($1)", [1])
            let unique = await expectServerError("23505") { try await connection.execute("INSERT INTO t VALUES ($1)", [1]) }
            #expect(unique?.constraint == "t_x_unique")
            #expect(unique?.table == "t")
            #expect(unique?.detail?.contains("(x)=(1)") == true)
            // The connection is still usable after errors.
            #expect(try await connection.query("SELECT 1 AS one")[0].decode("one", as: Int.self) == 1)
        }
    }

    @Test("a transaction commits on return, rolls back on throw, and refuses a swallowed error")
    func transactions() async throws {
        try await withTestDatabase(migrated: false) { database in
            let connection = try await database.connect()
            try await connection.execute("CREATE TABLE t (x integer PRIMARY KEY)")
            let inserted = try await connection.transaction { transaction in
                try transaction.execute("INSERT INTO t VALUES ($1), ($2)", [1, 2])
            }
            #expect(inserted == 2)
            struct Abort: Error {}
            await #expect(throws: Abort.self) {
                try await connection.transaction { transaction in
                    try transaction.execute("INSERT INTO t VALUES ($1)", [3])
                    throw Abort()
                }
            }
            await #expect {
                try await connection.transaction { transaction in
                    try transaction.execute("INSERT INTO t VALUES ($1)", [4])
                    _ = try? transaction.execute("INSERT INTO t VALUES ($1)", [1])
                }
            } throws: { error in
                (error as? PostgresError)?.kind == .transactionAborted
            }
            // A savepoint lets the transaction go on after a failed statement.
            try await connection.transaction { transaction in
                _ = try? transaction.savepoint { try transaction.execute("INSERT INTO t VALUES ($1)", [1]) }
                try transaction.execute("INSERT INTO t VALUES ($1)", [5])
            }
            let rows = try await connection.query("SELECT x FROM t ORDER BY x")
            #expect(try rows.map { try $0.decode("x", as: Int.self) } == [1, 2, 5])
        }
    }

    @Test("libpq calls run on the connection's own serial queue, never on Swift's cooperative pool")
    func runsOnOwnQueue() async throws {
        try await withTestDatabase(migrated: false) { database in
            let connection = try await PostgresConnection.connect(database.settings, label: "test.own-queue")
            #expect(DispatchQueue.getSpecific(key: PostgresConnection.queueKey) == nil)
            let label = try await connection.transaction { transaction in
                try transaction.execute("SELECT 1")
                return DispatchQueue.getSpecific(key: PostgresConnection.queueKey)
            }
            #expect(label == "test.own-queue")
        }
    }

    @Test("an idle connection killed with pg_terminate_backend is re-established on next use")
    func idleConnectionKilled() async throws {
        try await withTestDatabase { database in
            let registry = try await database.registry()
            let admin = try await database.connect()
            let before: Int = try await registry.connection.query("SELECT pg_backend_pid() AS pid")[0].decode("pid")
            let killed = try await admin.query("SELECT pg_terminate_backend($1::integer) AS killed", [before])
            #expect(try killed[0].decode("killed", as: Bool.self))
            try await waitUntilGone(pid: before, admin: admin)

            let after: Int = try await registry.connection.query("SELECT pg_backend_pid() AS pid")[0].decode("pid")
            #expect(after != before)
            #expect(await registry.connection.reconnects == 1)
            // And the registry works on it.
            let product = try await registry.createProduct(id: "after-kill", name: "After the kill")
            #expect(product.id == "after-kill")

            // Once more, with a registry call as the first use after the kill.
            _ = try await admin.query("SELECT pg_terminate_backend($1::integer)", [after])
            try await waitUntilGone(pid: after, admin: admin)
            #expect(try await registry.product(id: "after-kill")?.name == "After the kill")
            #expect(await registry.connection.reconnects == 2)
        }
    }

    @Test("a transaction whose connection is killed before COMMIT runs again on a new connection")
    func transactionConnectionKilled() async throws {
        try await withTestDatabase { database in
            let connection = try await database.connect()
            let attempts = LockedBox(0)
            let pids = LockedBox<[Int]>([])
            try await connection.transaction { transaction in
                let attempt = attempts.withValue { value -> Int in
                    value += 1
                    return value
                }
                let pid: Int = try transaction.queryOne("SELECT pg_backend_pid() AS pid")!.decode("pid")
                pids.withValue { $0.append(pid) }
                try transaction.execute("INSERT INTO products (id, name) VALUES ($1, $2)", ["retried", "Retried"])
                if attempt == 1 {
                    // The backend terminates itself mid-transaction, as a crash or failover would.
                    try transaction.execute("SELECT pg_terminate_backend(pg_backend_pid())")
                }
            }
            #expect(attempts.withValue { $0 } == 2)
            #expect(Set(pids.withValue { $0 }).count == 2)
            let rows = try await connection.query("SELECT count(*) AS n FROM products WHERE id = $1", ["retried"])
            #expect(try rows[0].decode("n", as: Int.self) == 1)
        }
    }

    @Test("a connection lost during COMMIT is reported as an unknown outcome and not run again")
    func commitOutcomeUnknown() async throws {
        try await withTestDatabase(migrated: false) { database in
            let connection = try await database.connect()
            // A deferred constraint trigger runs inside COMMIT; this one kills its own backend there.
            try await connection.execute("CREATE TABLE t (x integer)")
            try await connection.execute("""
                CREATE FUNCTION die_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NULL; END $$
                """)
            try await connection.execute("""
                CREATE CONSTRAINT TRIGGER t_die_at_commit AFTER INSERT ON t DEFERRABLE INITIALLY DEFERRED
                FOR EACH ROW EXECUTE FUNCTION die_at_commit()
                """)
            let attempts = LockedBox(0)
            await #expect {
                try await connection.transaction { transaction in
                    attempts.withValue { $0 += 1 }
                    try transaction.execute("INSERT INTO t VALUES ($1)", [1])
                }
            } throws: { error in
                guard let error = error as? PostgresError else { return false }
                return error.kind == .commitOutcomeUnknown && error.description.contains("may have committed")
            }
            #expect(attempts.withValue { $0 } == 1)
            // The connection comes back; here the transaction did not commit.
            #expect(try await connection.query("SELECT count(*) AS n FROM t")[0].decode("n", as: Int.self) == 0)
        }
    }

    @Test("a statement in flight when the connection dies reports the loss; the next call reconnects")
    func statementConnectionKilled() async throws {
        try await withTestDatabase(migrated: false) { database in
            let connection = try await database.connect()
            await #expect {
                try await connection.query("SELECT pg_terminate_backend(pg_backend_pid())")
            } throws: { error in
                guard let error = error as? PostgresError else { return false }
                return error.kind == .connectionLost && error.isConnectionLoss
            }
            #expect(try await connection.query("SELECT 1 AS one")[0].decode("one", as: Int.self) == 1)
        }
    }

    @Test("every connection asks the server to drop its session soon after the station goes silent (server-side keepalives)")
    func serverSideKeepalives() async throws {
        try await withTestDatabase(migrated: false) { database in
            let connection = try await database.connect()
            // On a Unix socket the server ignores them (SHOW says 0), but the session's own values
            // are recorded as set: over TCP they are what drops a powered-off station's session.
            let rows = try await connection.query("""
                SELECT name, setting FROM pg_catalog.pg_settings
                WHERE name IN ('tcp_keepalives_idle', 'tcp_keepalives_interval', 'tcp_keepalives_count', 'tcp_user_timeout')
                  AND source = 'session' ORDER BY name
                """)
            #expect(try rows.map { try $0.decode("name", as: String.self) }
                    == ["tcp_keepalives_count", "tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_user_timeout"])
        }
    }

    @Test("an error libpq makes itself on a live connection (too many parameters) is the statement's, not a lost connection")
    func libpqOwnErrorOnLiveConnection() async throws {
        try await withTestDatabase(migrated: false) { database in
            let connection = try await database.connect()
            // The protocol carries at most 65535 parameters: libpq refuses more before sending, with
            // no SQLSTATE. Taken for a lost connection, it would be retried and held for as an outage.
            let parameters: [any PostgresEncodable] = Array(repeating: 1, count: 70_000)
            await #expect {
                try await connection.query("SELECT $1::int AS one", parameters)
            } throws: { error in
                guard let error = error as? PostgresError else { return false }
                return error.kind == .server && !error.isConnectionLoss && error.sqlState == nil
            }
            #expect(try await connection.query("SELECT 1 AS one")[0].decode("one", as: Int.self) == 1)
        }
    }

    @Test("a refused connection says where it tried and what to do, and never shows the password")
    func connectionRefused() async throws {
        let settings = ConnectionSettings(connectionString: "postgresql://keyline:s3cr3t-pw@localhost/keyline?host=/nonexistent-socket-dir&connect_timeout=2")
        await #expect {
            _ = try await PostgresConnection.connect(settings)
        } throws: { error in
            guard let error = error as? PostgresError, error.kind == .connectionFailed else { return false }
            let text = error.description
            return text.contains("/nonexistent-socket-dir") && text.contains("make db-up") && !text.contains("s3cr3t-pw")
        }
        let malformed = ConnectionSettings(connectionString: "postgresql://user:pw@host:notaport:x/db", source: .databaseURL)
        await #expect {
            _ = try await PostgresConnection.connect(malformed)
        } throws: { error in
            guard let error = error as? PostgresError else { return false }
            return error.kind == .invalidSettings && error.description.contains("DATABASE_URL") && !error.description.contains("pw@")
        }
        #expect(!settings.description.contains("s3cr3t-pw"))
        #expect(settings.description.contains("user=keyline"))
    }

    @Test("DATABASE_URL wins, then libpq's own PG* variables; a checkout's cluster only when asked for by name")
    func settingsResolution() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("kl-settings-" + TestDatabase.randomSuffix())
        let socket = directory.appendingPathComponent(".pgdata/socket")
        try FileManager.default.createDirectory(at: socket, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let nested = directory.appendingPathComponent("Sources/keyline")
        try FileManager.default.createDirectory(at: nested, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: socket.appendingPathComponent(".s.PGSQL.5432").path, contents: Data())

        let url = ConnectionSettings.fromEnvironment(["DATABASE_URL": "postgresql:///x", "PGHOST": "/h"])
        #expect(url.source == .databaseURL && url.connectionString == "postgresql:///x")
        let libpq = ConnectionSettings.fromEnvironment(["PGHOST": "/h"])
        #expect(libpq.source == .libpqEnvironment && libpq.connectionString.isEmpty && libpq.overrides.isEmpty)
        // A station started from inside a checkout must not pick up the development cluster's
        // superuser socket (fromEnvironment no longer looks at folders): libpq's own defaults.
        let nothingSet = ConnectionSettings.fromEnvironment([:])
        #expect(nothingSet.source == .libpqEnvironment && nothingSet.overrides.isEmpty)
        // Asked for by its folder, and only that folder: not from a subfolder.
        #expect(ConnectionSettings.localCluster(in: nested.path) == nil)
        let local = try #require(ConnectionSettings.localCluster(in: directory.path))
        #expect(local.source == .localCluster(socketDirectory: socket.resolvingSymlinksInPath().path))
        #expect(local.overrides.map(\.keyword) == ["host", "port", "user", "dbname"])
    }

    @Test("the tests use their own cluster or KEYLINE_TEST_DATABASE_URL, never DATABASE_URL or PGHOST")
    func testsNeverUseTheShellsServer() throws {
        let foreign = ["DATABASE_URL": "postgresql://prod.example/keyline", "PGHOST": "prod.example"]
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("kl-testpg-" + TestDatabase.randomSuffix())
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        #expect(throws: TestPostgresUnavailable.self) { try TestPostgres.server(environment: foreign, packageRoot: directory) }
        let explicit = foreign.merging([TestPostgres.urlVariable: "postgresql://test.example/t"]) { _, new in new }
        #expect(try TestPostgres.server(environment: explicit, packageRoot: directory) == .url("postgresql://test.example/t"))
        let child = try TestPostgres.environment(database: "kl_x", environment: explicit)
        #expect(child["DATABASE_URL"] == "postgresql://test.example/t?dbname=kl_x")
        if case .localCluster? = try? TestPostgres.server(environment: foreign) {
            // make test's own cluster: the child's DATABASE_URL is blanked, not inherited.
            let local = try TestPostgres.environment(database: "kl_y", environment: foreign)
            #expect(local["DATABASE_URL"] == "" && local["PGHOST"] != "prod.example" && local["PGDATABASE"] == "kl_y")
        }
    }

    @Test("a URI and a conninfo string both connect")
    func uriAndConninfo() async throws {
        let base = TestCluster.settings
        let admin = try await PostgresConnection.connect(base)
        let facts = try await admin.query("SELECT current_user AS login, current_database() AS db, current_setting('unix_socket_directories') AS sockets, current_setting('port') AS port")
        let login: String = try facts[0].decode("login")
        let db: String = try facts[0].decode("db")
        let port: String = try facts[0].decode("port")
        let socketDirectory = try facts[0].decode("sockets", as: String.self).split(separator: ",").first.map(String.init) ?? ""
        guard case .localCluster(let localSocket) = base.source else {
            // With DATABASE_URL or PG* set, that configuration just connected; nothing more to build.
            return
        }
        #expect(localSocket == socketDirectory.trimmingCharacters(in: .whitespaces))
        let encoded = localSocket.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? localSocket
        for string in ["postgresql://\(login)@\(encoded):\(port)/\(db)",
                       "host='\(localSocket)' port=\(port) user=\(login) dbname=\(db) application_name=kl-test"] {
            let connection = try await PostgresConnection.connect(ConnectionSettings(connectionString: string, source: .databaseURL))
            let rows = try await connection.query("SELECT current_database() AS db")
            #expect(try rows[0].decode("db", as: String.self) == db)
        }
    }

    private func waitUntilGone(pid: Int, admin: PostgresConnection) async throws {
        for _ in 0..<100 {
            let rows = try await admin.query("SELECT count(*) AS n FROM pg_stat_activity WHERE pid = $1::integer", [pid])
            if try rows[0].decode("n", as: Int.self) == 0 { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        Issue.record("backend \(pid) did not exit")
    }
}
